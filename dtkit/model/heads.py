"""Action heads: tanh onto [-1, 1] for Box actions, logits for Discrete."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dtkit.spec import ActionSpec

__all__ = ["ActionHead"]


class ActionHead(nn.Module):
    """Continuous: ``tanh(Wx)`` in [-1, 1]; the spec maps it affinely onto the Box bounds.
    Discrete: unnormalised logits of a categorical distribution."""

    def __init__(self, action: ActionSpec, d_model: int) -> None:
        super().__init__()
        self.discrete = action.discrete
        out = action.n if action.discrete else action.dim
        assert out is not None, "a discrete ActionSpec needs n"
        self.proj = nn.Linear(d_model, out)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.proj(h)
        return out if self.discrete else torch.tanh(out)

    def loss(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean loss over real steps. pred (B, T, A); target (B, T, A) float or (B, T) long; mask (B, T)."""
        m = mask.float()
        if self.discrete:
            per_step = F.cross_entropy(pred.float().flatten(0, 1), target.flatten().long(), reduction="none").view_as(m)
        else:
            per_step = ((pred.float() - target.float()) ** 2).mean(-1)
        return (per_step * m).sum() / m.sum().clamp_min(1.0)

    def act(self, pred: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Pick actions from head outputs: argmax or a sample for Discrete, the mean for Box."""
        if not self.discrete:
            return pred
        if deterministic:
            return pred.argmax(-1)
        return torch.distributions.Categorical(logits=pred.float()).sample()
