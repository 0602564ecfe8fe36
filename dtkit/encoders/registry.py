"""Finding an encoder class by name: registry, class path, or entry point.

Lookup order for ``EncoderConfig.type``:
1. a name registered with :func:`register_encoder`;
2. a class path ``"pkg.mod:Class"``;
3. an installed entry point in the group ``dtkit.encoders`` (looked up only
   when the name is unknown, so startup never scans every installed package).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from importlib.metadata import entry_points

from dtkit.encoders.base import Encoder, EncoderConfig, FieldInfo
from dtkit.errors import DtkitError

__all__ = [
    "build_encoder",
    "default_encoder",
    "encoder_class",
    "encoder_tokens",
    "known_encoders",
    "register_encoder",
    "set_default_encoder",
]

ENTRY_POINT_GROUP = "dtkit.encoders"
_REGISTRY: dict[str, type[Encoder]] = {}

# The encoder a field gets when the user names none, by modality. A new modality
# (e.g. "audio") registers its default with set_default_encoder.
_DEFAULT_BY_MODALITY: dict[str, str] = {"vector": "mlp", "discrete": "embedding", "image": "cnn"}


def set_default_encoder(modality: str, name: str) -> None:
    """Make ``name`` the encoder a field of ``modality`` gets by default.

    Example:
        >>> set_default_encoder("audio", "audio_conv")  # doctest: +SKIP
    """
    _DEFAULT_BY_MODALITY[modality] = name


def default_encoder(field: FieldInfo) -> EncoderConfig:
    """The default encoder for ``field``, chosen by its modality."""
    if field.modality not in _DEFAULT_BY_MODALITY:
        raise DtkitError(
            f"no default encoder for modality {field.modality!r} (field shape {field.shape}, dtype {field.dtype}); "
            f"modalities with a default: {', '.join(sorted(_DEFAULT_BY_MODALITY))}. Name an encoder for this key"
        )
    return EncoderConfig(_DEFAULT_BY_MODALITY[field.modality])


def register_encoder(name: str) -> Callable[[type[Encoder]], type[Encoder]]:
    """Class decorator that makes an encoder available by ``name``.

    Example:
        >>> @register_encoder("my_mean")  # doctest: +SKIP
        ... class MyMean(Encoder): ...
    """

    def wrap(cls: type[Encoder]) -> type[Encoder]:
        if not (isinstance(cls, type) and issubclass(cls, Encoder)):
            raise TypeError(f"@register_encoder({name!r}) needs a subclass of dtkit.encoders.Encoder, got {cls!r}")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"encoder name {name!r} is already registered to {_REGISTRY[name].__qualname__}")
        _REGISTRY[name] = cls
        return cls

    return wrap


def known_encoders() -> list[str]:
    names = set(_REGISTRY)
    names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def encoder_class(name: str) -> type[Encoder]:
    """Resolve ``name`` to an :class:`Encoder` subclass or raise a :class:`DtkitError`."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise DtkitError(
                f"encoder class path {name!r} could not be imported ({exc}); "
                "use the form 'package.module:ClassName' with the module on PYTHONPATH"
            ) from None
        return _check(name, cls)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return _check(name, ep.load())
    raise DtkitError(
        f"unknown encoder {name!r}; known encoders: {', '.join(known_encoders())}. "
        "Register one with @register_encoder, give a class path 'pkg.mod:Class', "
        f"or install an entry point in the group {ENTRY_POINT_GROUP!r}"
    )


def _check(name: str, cls: object) -> type[Encoder]:
    if not (isinstance(cls, type) and issubclass(cls, Encoder)):
        raise DtkitError(f"encoder {name!r} resolved to {cls!r}, which is not a subclass of dtkit.encoders.Encoder")
    return cls


def encoder_tokens(cfg: EncoderConfig, field: FieldInfo) -> int:
    """Tokens the encoder ``cfg`` yields for ``field``, without building it; unknown params fail here."""
    cls = encoder_class(cfg.type)
    try:
        inspect.signature(cls.__init__).bind(None, field, 8, **cfg.params)
    except TypeError as exc:
        raise DtkitError(f"encoder {cfg.type!r} rejected its params {cfg.params}: {exc}") from None
    try:
        n = cls.n_tokens_for(field, dict(cfg.params))
    except (TypeError, ValueError) as exc:
        raise DtkitError(f"encoder {cfg.type!r} cannot encode a field of shape {field.shape} ({field.dtype}) with params {cfg.params}: {exc}") from None
    if not isinstance(n, int) or n < 1:
        raise DtkitError(f"encoder {cfg.type!r} must yield a positive int number of tokens, n_tokens_for gave {n!r}")
    return n


def build_encoder(cfg: EncoderConfig, field: FieldInfo, d_model: int) -> Encoder:
    """Instantiate the encoder ``cfg`` names for ``field`` and check its declared token count."""
    cls = encoder_class(cfg.type)
    try:
        enc = cls(field, d_model, **cfg.params)
    except TypeError as exc:
        raise DtkitError(f"encoder {cfg.type!r} rejected its params {cfg.params}: {exc}") from None
    if not isinstance(getattr(enc, "n_tokens", None), int) or enc.n_tokens < 1:
        raise DtkitError(f"encoder {cfg.type!r} must set self.n_tokens to a positive int in __init__")
    return enc
