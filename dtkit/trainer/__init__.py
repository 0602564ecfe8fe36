"""The trainer: loop, optimiser, schedule, AMP, DDP, TensorBoard and checkpoints."""

from __future__ import annotations

from dtkit.trainer.checkpoint import Checkpoint, find_checkpoint, load_checkpoint, save_checkpoint
from dtkit.trainer.config import TrainConfig
from dtkit.trainer.loop import TrainResult, build_spec, train

__all__ = ["Checkpoint", "TrainConfig", "TrainResult", "build_spec", "find_checkpoint", "load_checkpoint", "save_checkpoint", "train"]
