"""Built-in encoders for vectors, scalars and actions."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from dtkit.encoders.base import Encoder, FieldInfo
from dtkit.encoders.registry import register_encoder

__all__ = ["VectorMLP", "Linear", "Scalar", "DiscreteEmbedding"]


@register_encoder("mlp")
class VectorMLP(Encoder):
    """Flattened vector -> ``n_tokens`` tokens through a small MLP.

    With ``hidden=0`` (the default) it is a single linear map, as in the original
    DT (Chen et al., 2021), which embeds states with one ``nn.Linear``.
    """

    def __init__(self, field: FieldInfo, d_model: int, hidden: int = 0, n_tokens: int = 1) -> None:
        super().__init__(field, d_model)
        self.n_tokens = n_tokens
        in_dim = max(1, math.prod(field.shape))
        out = d_model * n_tokens
        self.net: nn.Module = (
            nn.Linear(in_dim, out) if hidden <= 0 else nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out))
        )

    @classmethod
    def n_tokens_for(cls, field: FieldInfo, params: dict[str, Any]) -> int:
        return int(params.get("n_tokens", 1))

    @classmethod
    def standardize(cls, field: FieldInfo) -> bool:
        # A linear map on raw features learns badly when their scales differ (MuJoCo
        # velocities vs angles), so vectors get the dataset's mean and std first.
        return field.modality == "vector"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, *shape) -> (N, n_tokens, d_model)
        return self.net(x.flatten(1).float()).view(x.shape[0], self.n_tokens, self.d_model)


@register_encoder("linear")
class Linear(VectorMLP):
    """A vector -> one token through one linear map (continuous actions use this)."""

    def __init__(self, field: FieldInfo, d_model: int) -> None:
        super().__init__(field, d_model, hidden=0, n_tokens=1)

    @classmethod
    def n_tokens_for(cls, field: FieldInfo, params: dict[str, Any]) -> int:
        return 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)


@register_encoder("scalar")
class Scalar(Encoder):
    """A scalar (return-to-go, reward) -> one token."""

    def __init__(self, field: FieldInfo, d_model: int) -> None:
        super().__init__(field, d_model)
        self.n_tokens = 1
        self.proj = nn.Linear(1, d_model)

    @classmethod
    def n_tokens_for(cls, field: FieldInfo, params: dict[str, Any]) -> int:
        return 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.reshape(-1, 1).float()).unsqueeze(1)  # (N, 1, D)


@register_encoder("embedding")
class DiscreteEmbedding(Encoder):
    """A discrete id (action or observation) -> one learned token."""

    def __init__(self, field: FieldInfo, d_model: int) -> None:
        super().__init__(field, d_model)
        if field.n is None:
            raise ValueError("the 'embedding' encoder needs a discrete field (FieldInfo.n)")
        self.n_tokens = 1
        self.table = nn.Embedding(field.n, d_model)

    @classmethod
    def n_tokens_for(cls, field: FieldInfo, params: dict[str, Any]) -> int:
        if field.n is None:
            raise ValueError("the 'embedding' encoder needs a discrete field (FieldInfo.n)")
        return 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table(x.reshape(-1).long()).unsqueeze(1)  # (N, 1, D)
