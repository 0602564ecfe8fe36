"""The training batch: plain tensors shared by the data pipeline and the model."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

__all__ = ["Batch"]


@dataclass
class Batch:
    """A batch of K-step windows, right-padded.

    Attributes:
        returns: (B, T) returns-to-go, already divided by the spec's return scale.
        obs: key -> (B, T, *shape) observations (raw; the model normalises).
        actions: (B, T, act_dim) float in [-1, 1] for Box, or (B, T) long for Discrete.
        rewards: (B, T) rewards.
        timesteps: (B, T) long episode timesteps.
        mask: (B, T) bool, True at real steps; padding follows the real steps.
    """

    returns: torch.Tensor
    obs: dict[str, torch.Tensor]
    actions: torch.Tensor
    rewards: torch.Tensor
    timesteps: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=non_blocking)

        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return Batch(**{k: ({kk: move(vv) for kk, vv in v.items()} if isinstance(v, dict) else move(v)) for k, v in out.items()})

    def pin_memory(self) -> Batch:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return Batch(**{k: ({kk: vv.pin_memory() for kk, vv in v.items()} if isinstance(v, dict) else v.pin_memory()) for k, v in out.items()})
