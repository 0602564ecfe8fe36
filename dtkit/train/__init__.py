"""The trainer: loop, optimiser, schedule, AMP, DDP, TensorBoard and checkpoints."""

from __future__ import annotations

from dtkit.train.checkpoint import Checkpoint, find_checkpoint, load_checkpoint, save_checkpoint
from dtkit.train.config import TrainConfig
from dtkit.train.loop import TrainResult, build_spec, train

__all__ = ["Checkpoint", "TrainConfig", "TrainResult", "build_spec", "find_checkpoint", "load_checkpoint", "save_checkpoint", "train"]
