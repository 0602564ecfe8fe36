"""The model: trunk, positions, masks, heads and the DecisionTransformer. Pure torch."""

from __future__ import annotations

from dtkit.model.cache import KVCache
from dtkit.model.config import ModelConfig
from dtkit.model.dt import DecisionTransformer

__all__ = ["DecisionTransformer", "KVCache", "ModelConfig"]
