"""Checkpoints that describe themselves and never unpickle arbitrary objects.

Layout of ``<run_dir>/checkpoints/step_00001000/``:

- ``model.safetensors``: weights;
- ``meta.json``: config, spec, observation statistics, env id and version,
  dataset and reference scores, dtkit and library versions;
- ``trainer.pt``: optimizer, schedule and RNG state for ``--resume``, loaded
  with ``torch.load(weights_only=True)``.

A checkpoint folder is staged under a hidden name and renamed into place, and
``latest`` is replaced atomically, so a killed run leaves the previous one intact.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from dtkit.errors import DtkitError
from dtkit.io import atomic_dir, atomic_write_json, atomic_write_text
from dtkit.model import DecisionTransformer, ModelConfig
from dtkit.spec import Spec

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "find_checkpoint", "FORMAT"]

FORMAT = "dtkit-checkpoint/1"
KEEP = 2


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model plus everything needed to use it."""

    model: DecisionTransformer
    spec: Spec
    meta: dict[str, Any]
    path: Path

    @property
    def env_id(self) -> str | None:
        return self.meta.get("env_id")


def save_checkpoint(run_dir: Path, step: int, model: DecisionTransformer, meta: dict[str, Any],
                    trainer_state: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint for ``step`` atomically and point ``latest`` at it."""
    root = Path(run_dir) / "checkpoints"
    final = root / f"step_{step:08d}"
    if final.exists():
        shutil.rmtree(final)
    with atomic_dir(final) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        atomic_write_json(tmp / "meta.json", {**meta, "format": FORMAT, "step": step})
        if trainer_state is not None:
            torch.save(trainer_state, tmp / "trainer.pt")
    atomic_write_text(root / "latest", final.name + "\n")
    for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(path: str | Path) -> Path:
    """Resolve a run folder, its ``checkpoints`` folder, or a ``step_*`` folder to one checkpoint folder."""
    p = Path(path)
    if (p / "meta.json").is_file() and (p / "model.safetensors").is_file():
        return p
    root = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    latest = root / "latest"
    if latest.is_file():
        cand = root / latest.read_text().strip()
        if (cand / "meta.json").is_file():
            return cand
    steps = sorted(q for q in root.glob("step_*") if (q / "meta.json").is_file() and (q / "model.safetensors").is_file())
    if steps:
        return steps[-1]
    raise DtkitError(f"no checkpoint found at {str(path)!r}; pass a run folder made by `dtkit train` or one of its checkpoints/step_* folders")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model from a checkpoint folder (or a run folder: its latest checkpoint).

    Example:
        >>> ckpt = load_checkpoint("runs/cartpole")  # doctest: +SKIP
        >>> policy = DTPolicy(ckpt.model, num_envs=4, target_return=500)  # doctest: +SKIP
    """
    folder = find_checkpoint(path)
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except json.JSONDecodeError as exc:
        raise DtkitError(f"{folder / 'meta.json'} is not valid JSON ({exc}); the checkpoint is damaged, use an earlier one") from None
    if meta.get("format") != FORMAT:
        raise DtkitError(f"{folder} has format {meta.get('format')!r}, expected {FORMAT!r}; it was not written by this dtkit")
    spec = Spec.from_dict(meta["spec"])
    model = DecisionTransformer(spec, ModelConfig.from_dict(meta["model"]), meta.get("obs_stats"))
    model.load_state_dict(load_file(str(folder / "model.safetensors"), device=str(device)))
    return Checkpoint(model=model.to(device), spec=spec, meta=meta, path=folder)


def load_trainer_state(folder: Path) -> dict[str, Any] | None:
    f = Path(folder) / "trainer.pt"
    return torch.load(f, weights_only=True) if f.is_file() else None
