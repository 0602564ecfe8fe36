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

__all__ = ["IMAGE_LAYOUTS", "MODALITIES", "Encoder", "EncoderConfig", "FieldInfo", "infer_image_layout", "infer_modality"]


MODALITIES = ("vector", "discrete", "image", "audio")
"""Known modalities. "audio" is reserved for the audio encoders; an encoder may define others."""
IMAGE_LAYOUTS = ("HW", "HWC", "CHW", "SHWC", "SCHW")
"""Image layouts: grey (H, W); one frame channels-last or -first; a stack of S frames of either."""


@dataclass(frozen=True)
class FieldInfo:
    """What an encoder needs to know about its input field; plain data, no gymnasium.

    Attributes:
        shape: shape of one element, e.g. ``(11,)`` for a Hopper state, ``()`` for a discrete id.
        dtype: numpy dtype name of the stored values.
        n: number of categories for a discrete field, else None.
        modality: "vector", "discrete", "image" or "audio"; inferred when left empty
            (a discrete id, a uint8 array of rank 2 to 4 is an image, the rest vectors).
        layout: how an image's axes are laid out (one of :data:`IMAGE_LAYOUTS`); inferred
            for images when left empty, "" for other modalities.

    Example:
        >>> FieldInfo((84, 84, 3), "uint8").modality, FieldInfo((4, 84, 84), "uint8").layout
        ('image', 'CHW')
    """

    shape: tuple[int, ...]
    dtype: str = "float32"
    n: int | None = None
    modality: str = ""
    layout: str = ""

    def __post_init__(self) -> None:
        modality = self.modality or infer_modality(self.shape, self.dtype, self.n)
        object.__setattr__(self, "modality", modality)
        if modality == "image":
            layout = self.layout or infer_image_layout(self.shape)
            if layout not in IMAGE_LAYOUTS or len(layout) != len(self.shape):
                raise ValueError(f"image layout {layout!r} does not fit shape {self.shape}; use one of {IMAGE_LAYOUTS} of matching rank")
            object.__setattr__(self, "layout", layout)

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype, "n": self.n, "modality": self.modality, "layout": self.layout}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FieldInfo:
        # Specs saved before modality/layout existed lack both keys: infer them.
        return cls(shape=tuple(d["shape"]), dtype=d["dtype"], n=d.get("n"), modality=d.get("modality", ""), layout=d.get("layout", ""))


def infer_modality(shape: tuple[int, ...], dtype: str, n: int | None) -> str:
    """The modality a field most likely has: discrete ids, uint8 rank-2..4 arrays as images, int16 rank-1 arrays as
    audio waveforms, else vectors."""
    if n is not None:
        return "discrete"
    if dtype == "uint8" and 2 <= len(shape) <= 4:
        return "image"
    if dtype == "int16" and len(shape) == 1:
        return "audio"  # a mono PCM waveform: int16 is how clips are stored (DESIGN: compact dtypes)
    return "vector"


def infer_image_layout(shape: tuple[int, ...]) -> str:
    """Guess an image layout from its shape: channels-first when the first axis is small
    (<= 4: grey frame stacks, RGB(A)) and the last is not; otherwise channels-last (gymnasium's default)."""
    if len(shape) == 2:
        return "HW"
    if len(shape) == 3:
        return "CHW" if shape[0] <= 4 < shape[-1] else "HWC"
    if len(shape) == 4:
        return "SCHW" if shape[1] <= 4 < shape[-1] else "SHWC"
    raise ValueError(f"an image has rank 2 to 4, got shape {shape}")


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
    ``(N, *field.shape)`` to ``(N, n_tokens, d_model)``. They should also
    override the classmethod :meth:`n_tokens_for` (the token count without
    building) and, if they want per-dataset standardised input, :meth:`standardize`.

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

    @classmethod
    def n_tokens_for(cls, field: FieldInfo, params: dict[str, Any]) -> int:
        """Tokens this encoder yields for ``field`` with ``params``, without building it.

        Override it: the spec is derived before any model exists. This fallback
        (for encoders that do not override it) builds the encoder at width 8.
        """
        return cls(field, 8, **params).n_tokens

    @classmethod
    def standardize(cls, field: FieldInfo) -> bool:
        """Whether the model should standardise this field with per-dataset mean and std
        before the encoder. Normalisation is the encoder's business: an image encoder
        scales its own pixels, so the default is False."""
        return False

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
