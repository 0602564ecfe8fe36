"""Encoders: one per field of a timestep, each mapping ``(N, *shape)`` to ``(N, n_tokens, d_model)``.

Pure torch: nothing here imports gymnasium, minari or SB3.
"""

from __future__ import annotations

from dtkit.encoders import audio as _audio  # noqa: F401  (registers "audio_conv", "audio_patch", the audio default)
from dtkit.encoders import builtin as _builtin  # noqa: F401  (registers the built-ins)
from dtkit.encoders import image as _image  # noqa: F401  (registers "cnn" and "patch")
from dtkit.encoders.base import MODALITIES, Encoder, EncoderConfig, FieldInfo
from dtkit.encoders.registry import (
    build_encoder,
    default_encoder,
    encoder_class,
    encoder_tokens,
    known_encoders,
    register_encoder,
    set_default_encoder,
)

__all__ = [
    "MODALITIES",
    "Encoder",
    "EncoderConfig",
    "FieldInfo",
    "build_encoder",
    "default_encoder",
    "encoder_class",
    "encoder_tokens",
    "known_encoders",
    "register_encoder",
    "set_default_encoder",
]
