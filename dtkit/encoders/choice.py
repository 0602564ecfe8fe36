"""Choosing an encoder per observation key from command-line strings (``--encoder image=patch``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dtkit.encoders.base import EncoderConfig
from dtkit.errors import DtkitError

__all__ = ["json_object", "per_key_encoders"]


def json_object(text: str, flag: str, example: str) -> dict[str, Any]:
    """A flag's JSON object, or one clear error (parsing JSON also guarantees the params can be saved)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DtkitError(f"{flag}: {text!r} is not valid JSON ({exc}); write e.g. {example}") from None
    if not isinstance(value, dict):
        raise DtkitError(f"{flag} must be a JSON object, got {text!r}; write e.g. {example}")
    return value


def _split(item: str, flag: str, example: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise DtkitError(f"{flag} {item!r} is not KEY=VALUE; write e.g. {flag} {example}")
    return key.strip(), value.strip()


def per_key_encoders(encoders: Sequence[str], params: Sequence[str], keys: Sequence[str]) -> dict[str, EncoderConfig]:
    """``KEY=NAME`` and ``KEY=JSON`` strings -> one :class:`EncoderConfig` per named key.

    Args:
        encoders: e.g. ``["image=patch", "state=mlp"]`` (``--encoder``).
        params: e.g. ``['image={"patch": 8}']`` (``--encoder-params``); a key here needs a name in ``encoders``.
        keys: the dataset's observation keys ("obs" for a plain space).

    Example:
        >>> per_key_encoders(["image=patch"], ['image={"patch": 8}'], ["image", "state"])
        {'image': EncoderConfig(type='patch', params={'patch': 8})}
    """
    names: dict[str, str] = {}
    for item in encoders:
        key, name = _split(item, "--encoder", "image=patch")
        names[key] = name
    kwargs: dict[str, dict[str, Any]] = {}
    for item in params:
        key, text = _split(item, "--encoder-params", "image='{\"patch\": 8}'")
        kwargs[key] = json_object(text, f"--encoder-params for key {key!r}", f"{key}='{{\"patch\": 8}}'")
    unknown = sorted((set(names) | set(kwargs)) - set(keys))
    if unknown:
        raise DtkitError(f"--encoder/--encoder-params name observation key(s) {unknown} that the dataset lacks; its keys are {list(keys)}")
    unnamed = sorted(set(kwargs) - set(names))
    if unnamed:
        raise DtkitError(f"--encoder-params given for key(s) {unnamed} without an encoder; add --encoder {unnamed[0]}=NAME (e.g. patch)")
    return {key: EncoderConfig(name, kwargs.get(key, {})) for key, name in names.items()}
