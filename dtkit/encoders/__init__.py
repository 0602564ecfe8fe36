"""Encoders: one per field of a timestep, each mapping ``(N, *shape)`` to ``(N, n_tokens, d_model)``.

Pure torch: nothing here imports gymnasium, minari or SB3.
"""

from __future__ import annotations

from dtkit.encoders import builtin as _builtin  # noqa: F401  (registers the built-ins)
from dtkit.encoders.base import Encoder, EncoderConfig, FieldInfo
from dtkit.encoders.registry import build_encoder, encoder_class, known_encoders, register_encoder

__all__ = [
    "Encoder",
    "EncoderConfig",
    "FieldInfo",
    "build_encoder",
    "encoder_class",
    "known_encoders",
    "register_encoder",
]
