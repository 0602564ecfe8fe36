"""What a timestep holds and how it becomes tokens.

The :class:`Spec` is derived from a dataset's observation and action spaces plus
the model config, never written onto the config (the CORL pitfall), and saved
with every checkpoint so a model can be rebuilt without the dataset. This module
is plain data; :mod:`dtkit.data.spaces` derives a spec from gymnasium spaces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from dtkit.encoders import EncoderConfig, FieldInfo
from dtkit.errors import DtkitError

__all__ = ["ObsField", "ActionSpec", "Spec", "validate_layout"]

# Tokens known before acting come before the readout; the rest are fed with the next step.
PRE_ACT_FIELDS = ("return", "obs")
POST_ACT_FIELDS = ("action", "reward")


@dataclass(frozen=True)
class ObsField:
    """One observation key, its encoder and the tokens it yields per step.

    ``maskable``: the field can be absent at a step (silence, a missing clip). Its
    tokens keep their slots but are hidden from every other token by a per-field
    presence flag (see :class:`~dtkit.batch.Batch`), so the slots per step stay fixed.
    """

    key: str
    info: FieldInfo
    encoder: EncoderConfig
    n_tokens: int = 1
    normalize: bool = True
    maskable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "info": self.info.to_dict(),
            "encoder": self.encoder.to_dict(),
            "n_tokens": self.n_tokens,
            "normalize": self.normalize,
            "maskable": self.maskable,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ObsField:
        return cls(
            key=d["key"],
            info=FieldInfo.from_dict(d["info"]),
            encoder=EncoderConfig.from_dict(d["encoder"]),
            n_tokens=int(d["n_tokens"]),
            normalize=bool(d["normalize"]),
            maskable=bool(d.get("maskable", False)),
        )


@dataclass(frozen=True)
class ActionSpec:
    """Continuous actions live in [-1, 1] inside the model and map affinely onto ``[low, high]``."""

    kind: Literal["continuous", "discrete"]
    dim: int
    n: int | None = None
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None

    @property
    def discrete(self) -> bool:
        return self.kind == "discrete"

    def to_unit(self, a: np.ndarray) -> np.ndarray:
        """Env actions -> [-1, 1]; actions at or past the bounds clip rather than overflow."""
        low, high = np.asarray(self.low, np.float32), np.asarray(self.high, np.float32)
        return np.clip(2.0 * (np.asarray(a, np.float32) - low) / (high - low) - 1.0, -1.0, 1.0)

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """[-1, 1] -> env actions, the exact inverse of :meth:`to_unit` inside the bounds."""
        low, high = np.asarray(self.low, np.float32), np.asarray(self.high, np.float32)
        return low + (np.clip(u, -1.0, 1.0) + 1.0) * 0.5 * (high - low)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "dim": self.dim, "n": self.n,
                "low": None if self.low is None else list(self.low),
                "high": None if self.high is None else list(self.high)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ActionSpec:
        return cls(kind=d["kind"], dim=int(d["dim"]), n=d.get("n"),
                   low=None if d.get("low") is None else tuple(d["low"]),
                   high=None if d.get("high") is None else tuple(d["high"]))


@dataclass(frozen=True)
class Spec:
    """Everything derived from the data that the model and policy need.

    Attributes:
        obs: observation fields in token order (one per Dict key; key "obs" for a plain space). The order is
            configurable; the last field is never maskable, since a_t is read out from its last token.
        action: the action space, as plain data.
        layout: per-step field order, e.g. ``("return", "obs", "action")``.
        context_len: K, the most steps the model attends over.
        max_timestep: largest episode timestep with its own embedding; later steps reuse it.
        return_scale: returns-to-go are divided by this, in training and evaluation alike.
        return_to_go_range: the lowest and highest return-to-go in the training data (env units). A policy
            clamps the return-to-go it feeds the model to this range, so a target the agent has fallen
            behind (a negative-reward task: the return-to-go climbs past 0) never shows the model a
            value it was not trained on. None (checkpoints saved before it was recorded): no clamp.
        block_obs_attention: tokens of one observation attend to each other (Multi-Game DT).
    """

    obs: tuple[ObsField, ...]
    action: ActionSpec
    layout: tuple[str, ...] = ("return", "obs", "action")
    context_len: int = 20
    max_timestep: int = 1000
    return_scale: float = 1.0
    return_to_go_range: tuple[float, float] | None = None
    block_obs_attention: bool = True
    dict_obs: bool = False
    slots: tuple[tuple[str, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate_layout(self.layout)
        if self.return_to_go_range is not None:  # from a list (JSON) or any pair of numbers: kept as two floats
            lo, hi = (float(x) for x in self.return_to_go_range)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise DtkitError(f"return_to_go_range={tuple(self.return_to_go_range)} is invalid; "
                                 "use two finite numbers (lowest, highest)")
            object.__setattr__(self, "return_to_go_range", (lo, hi))
        if self.obs and self.obs[-1].maskable:
            keys = [f.key for f in self.obs]
            fixed = [f.key for f in self.obs if not f.maskable]
            raise DtkitError(
                f"observation key order {keys} ends with {self.obs[-1].key!r}, a field that can be absent, but the action is "
                "read out from the last observation token, which must never be masked; put a field that is always present last"
                + (f" (e.g. {fixed[-1]!r})" if fixed else "")
            )
        slots: list[tuple[str, int]] = []
        for name in self.layout:
            if name == "obs":
                slots.extend((f"obs/{f.key}", i) for f in self.obs for i in range(f.n_tokens))
            else:
                slots.append((name, 0))
        object.__setattr__(self, "slots", tuple(slots))

    @property
    def tokens_per_step(self) -> int:
        return len(self.slots)

    @property
    def pre_fields(self) -> tuple[str, ...]:
        """Fields known before acting at step t (fed with step t)."""
        return self.layout[: self.layout.index("action")]

    @property
    def post_fields(self) -> tuple[str, ...]:
        """Fields known only after acting (fed with step t + 1 during inference)."""
        return self.layout[self.layout.index("action"):]

    @property
    def readout_slot(self) -> int:
        """a_t is predicted from the last observation token of step t: the last pre-act slot."""
        return sum(1 for name, _ in self.slots if name == "return" or name.startswith("obs/")) - 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "obs": [f.to_dict() for f in self.obs],
            "action": self.action.to_dict(),
            "layout": list(self.layout),
            "context_len": self.context_len,
            "max_timestep": self.max_timestep,
            "return_scale": self.return_scale,
            "return_to_go_range": None if self.return_to_go_range is None else list(self.return_to_go_range),
            "block_obs_attention": self.block_obs_attention,
            "dict_obs": self.dict_obs,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Spec:
        return cls(
            obs=tuple(ObsField.from_dict(f) for f in d["obs"]),
            action=ActionSpec.from_dict(d["action"]),
            layout=tuple(d["layout"]),
            context_len=int(d["context_len"]),
            max_timestep=int(d["max_timestep"]),
            return_scale=float(d["return_scale"]),
            return_to_go_range=d.get("return_to_go_range"),
            block_obs_attention=bool(d["block_obs_attention"]),
            dict_obs=bool(d.get("dict_obs", False)),
        )


def validate_layout(layout: tuple[str, ...]) -> None:
    """A layout lists fields known before acting, then the action, then optionally the reward."""
    known = set(PRE_ACT_FIELDS) | set(POST_ACT_FIELDS)
    if len(set(layout)) != len(layout) or not set(layout) <= known or "obs" not in layout or "action" not in layout:
        raise DtkitError(f"layout {list(layout)} is invalid: list each of {sorted(known)} at most once, with 'obs' and 'action'")
    cut = layout.index("action")
    if not set(layout[:cut]) <= set(PRE_ACT_FIELDS) or not set(layout[cut:]) <= set(POST_ACT_FIELDS) or layout[cut - 1] != "obs":
        raise DtkitError(
            f"layout {list(layout)} is invalid: use ['return', 'obs', 'action'] optionally followed by 'reward' "
            "('obs' comes right before 'action', since a_t is read out at the last observation token)"
        )
