"""The training batch: plain tensors shared by the data pipeline and the model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
        present: key -> (B, T) bool, False where a maskable field (see ``ObsField.maskable``) is
            absent at that step. Keys left out (or None) are derived by the model from the
            observation itself: an all-zero clip is a missing one.
    """

    returns: torch.Tensor
    obs: dict[str, torch.Tensor]
    actions: torch.Tensor
    rewards: torch.Tensor
    timesteps: torch.Tensor
    mask: torch.Tensor
    present: dict[str, torch.Tensor] | None = None

    def apply(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        """A new batch with ``fn`` applied to every tensor."""
        return Batch(returns=fn(self.returns), obs={k: fn(v) for k, v in self.obs.items()}, actions=fn(self.actions),
                     rewards=fn(self.rewards), timesteps=fn(self.timesteps), mask=fn(self.mask),
                     present=None if self.present is None else {k: fn(v) for k, v in self.present.items()})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return self.apply(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        return self.apply(lambda t: t.pin_memory())
