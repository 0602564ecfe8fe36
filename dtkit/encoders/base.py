"""The encoder contract: one field of a timestep in, ``n_tokens`` vectors out.

An encoder is built from the field it reads (shape, dtype, and ``n`` for a
discrete field) plus its own config params, and maps ``(N, *shape)`` to
``(N, n_tokens, d_model)``. Keeping the contract this small is what lets images,
audio and user sensors plug into the same trunk.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["FieldInfo", "EncoderConfig", "Encoder"]


@dataclass(frozen=True)
class FieldInfo:
    """What an encoder needs to know about its input field; plain data, no gymnasium.

    Attributes:
        shape: shape of one element, e.g. ``(11,)`` for a Hopper state, ``()`` for a discrete id.
        dtype: numpy dtype name of the stored values.
        n: number of categories for a discrete field, else None.
    """

    shape: tuple[int, ...]
    dtype: str = "float32"
    n: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype, "n": self.n}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FieldInfo:
        return cls(shape=tuple(d["shape"]), dtype=d["dtype"], n=d.get("n"))


@dataclass(frozen=True)
class EncoderConfig:
    """Serialisable choice of encoder: ``{"type": ..., "params": {...}}`` (d3rlpy style).

    ``type`` is a registered name, a class path ``"pkg.mod:Class"``, or the name
    of an entry point in the ``dtkit.encoders`` group.
    """

    type: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderConfig:
        return cls(type=d["type"], params=dict(d.get("params", {})))


class Encoder(nn.Module):
    """Base class for every encoder.

    Subclasses take ``(field: FieldInfo, d_model: int, **params)``, set
    ``self.n_tokens`` in ``__init__``, and implement ``forward`` mapping
    ``(N, *field.shape)`` to ``(N, n_tokens, d_model)``.

    Example:
        >>> class Mean(Encoder):
        ...     def __init__(self, field, d_model):
        ...         super().__init__(field, d_model)
        ...         self.n_tokens = 1
        ...         self.proj = nn.Linear(1, d_model)
        ...     def forward(self, x):
        ...         return self.proj(x.float().mean(-1, keepdim=True)).unsqueeze(1)
    """

    n_tokens: int

    def __init__(self, field: FieldInfo, d_model: int) -> None:
        super().__init__()
        self.field = field
        self.d_model = d_model

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Fail when the class is defined, not deep inside a training run.
        if cls.forward is Encoder.forward:
            raise TypeError(f"encoder {cls.__qualname__} must implement forward(x) -> (N, n_tokens, d_model)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
