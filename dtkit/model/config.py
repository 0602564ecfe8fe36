"""The model's hyperparameters: a small frozen dataclass (nanoGPT style)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ModelConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """Trunk size. Defaults are the original DT's (Chen et al., 2021): 128 wide, 3 layers, 1 head."""

    d_model: int = 128
    """Width of every token."""
    n_layer: int = 3
    """Number of Transformer blocks."""
    n_head: int = 1
    """Attention heads per block."""
    dropout: float = 0.1
    """Dropout on embeddings, attention and residuals."""
    mlp_ratio: int = 4
    """Hidden width of each block's MLP, as a multiple of d_model."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        return cls(**d)
