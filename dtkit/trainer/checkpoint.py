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
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from dtkit.errors import DtkitError
from dtkit.io import atomic_dir, atomic_write_json, atomic_write_text
from dtkit.model import DecisionTransformer, ModelConfig
from dtkit.spec import Spec

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "find_checkpoint", "read_checkpoint", "FORMAT"]

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
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:  # never write (let alone name as latest) weights nobody can use
        raise DtkitError(f"the weights at step {step} hold NaN or inf (first: {bad[0]}); no checkpoint was written. "
                         "Lower --lr, raise --warmup-steps or try --amp fp32, and resume from the last good checkpoint")
    if final.exists():
        shutil.rmtree(final)
    with atomic_dir(final) as tmp:
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
    steps = _candidates(root)
    if steps:
        return steps[-1]
    raise DtkitError(f"no checkpoint found at {str(path)!r}; pass a run folder made by `dtkit train` or one of its checkpoints/step_* folders")


def _candidates(root: Path) -> list[Path]:
    return sorted(q for q in root.glob("step_*") if (q / "meta.json").is_file() and (q / "model.safetensors").is_file())


def read_checkpoint(folder: Path, device: str | torch.device = "cpu",
                    with_trainer: bool = False) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any] | None]:
    """meta.json, the weights and (optionally) trainer.pt of one folder, or a :class:`DtkitError` naming the damaged file."""
    meta_file, weights, trainer = folder / "meta.json", folder / "model.safetensors", folder / "trainer.pt"
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DtkitError(f"{meta_file} could not be read ({exc}); the checkpoint is damaged, use an earlier one") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise DtkitError(f"{folder} has format {got!r}, expected {FORMAT!r}; it was not written by this dtkit")
    try:
        state = load_file(str(weights), device=str(device))
    except Exception as exc:  # safetensors raises its own error type for truncated or zeroed files
        raise DtkitError(f"{weights} could not be read ({type(exc).__name__}: {exc}); the file is truncated or damaged, "
                         "use an earlier checkpoint") from None
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise DtkitError(f"{weights} holds NaN or inf weights (first: {bad[0]}); this checkpoint cannot act, use an earlier one")
    trainer_state = None
    if with_trainer:
        if not trainer.is_file():
            raise DtkitError(f"{trainer} is missing, so --resume cannot restore the optimiser, schedule and RNG "
                             "(it would silently restart AdamW and warm-up); start a new run from scratch instead")
        try:
            trainer_state = torch.load(trainer, weights_only=True)
        except Exception as exc:  # truncated zip, or a pickle that weights_only refuses
            raise DtkitError(f"{trainer} could not be read ({type(exc).__name__}); the checkpoint is damaged, "
                             "use an earlier one") from None
    return meta, state, trainer_state


def read_latest_intact(path: str | Path, device: str | torch.device = "cpu", with_trainer: bool = False
                       ) -> tuple[Path, dict[str, Any], dict[str, torch.Tensor], dict[str, Any] | None]:
    """Like :func:`read_checkpoint` on :func:`find_checkpoint`'s answer, but a damaged newest checkpoint of a
    run folder falls back to the previous intact one with a warning line (an explicit step folder never does)."""
    folder = find_checkpoint(path)
    explicit = Path(path).resolve() == folder.resolve()
    try:
        return (folder, *read_checkpoint(folder, device, with_trainer))
    except DtkitError as first_error:
        if explicit:
            raise
        for older in reversed([q for q in _candidates(folder.parent) if q.name < folder.name]):
            try:
                found = read_checkpoint(older, device, with_trainer)
            except DtkitError:
                continue
            print(f"dtkit: warning: {first_error}; using the previous intact checkpoint {older}", file=sys.stderr)
            return (older, *found)
        raise


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model from a checkpoint folder (or a run folder: its latest intact checkpoint).

    Example:
        >>> ckpt = load_checkpoint("runs/cartpole")  # doctest: +SKIP
        >>> policy = DTPolicy(ckpt.model, num_envs=4, target_return=500)  # doctest: +SKIP
    """
    folder, meta, state, _ = read_latest_intact(path, device)
    spec = Spec.from_dict(meta["spec"])
    model = DecisionTransformer(spec, ModelConfig.from_dict(meta["model"]), meta.get("obs_stats"))
    model.load_state_dict(state)
    return Checkpoint(model=model.to(device), spec=spec, meta=meta, path=folder)
