"""Deriving a :class:`~dtkit.spec.Spec` from gymnasium spaces, and checking spaces match."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import gymnasium as gym
import numpy as np

from dtkit.encoders import EncoderConfig, FieldInfo
from dtkit.errors import DtkitError
from dtkit.spec import ActionSpec, ObsField, Spec

__all__ = ["spec_from_spaces", "check_supported", "check_env_spaces", "check_obs_arrays", "SUPPORTED_SPACES"]

SUPPORTED_SPACES = "Box or Discrete observations (or a Dict of them) and Box or Discrete actions"


def _obs_info(key: str, space: gym.Space, where: str) -> FieldInfo:
    if isinstance(space, gym.spaces.Discrete):
        return FieldInfo(shape=(), dtype="int64", n=int(space.n))
    if isinstance(space, gym.spaces.Box):
        return FieldInfo(shape=tuple(int(s) for s in space.shape), dtype=str(space.dtype))
    raise DtkitError(f"{where}: observation key {key!r} has unsupported space {space}; dtkit supports {SUPPORTED_SPACES}")


def spec_from_spaces(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    obs_encoders: dict[str, EncoderConfig] | None = None,
    layout: tuple[str, ...] = ("return", "obs", "action"),
    context_len: int = 20,
    max_timestep: int = 1000,
    return_scale: float = 1.0,
    return_to_go_range: tuple[float, float] | None = None,
    block_obs_attention: bool = True,
    obs_order: tuple[str, ...] | None = None,
    modalities: dict[str, str] | None = None,
    where: str = "dataset",
) -> Spec:
    """Derive a :class:`Spec` from gymnasium spaces.

    Args:
        obs_encoders: encoder per observation key ("obs" for a plain space); keys left
            out get their modality's default ("mlp" for vectors, "embedding" for Discrete,
            "cnn" for uint8 images).
        obs_order: the order of the observation keys' tokens within a step (every key once).
            By default fields that can be absent (audio) come first and the rest follow in
            the space's order, so the action is read out from a token that is never masked.
        modalities: modality per observation key where the inferred one is wrong (a uint8
            array of rank 2 to 4 is taken for an image, the rest for vectors), e.g.
            ``{"camera": "image"}`` for float frames in [0, 1].
        where: names the source of the spaces in error messages.

    Example:
        >>> spec = spec_from_spaces(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2))
        >>> spec.tokens_per_step
        3
    """
    from dtkit.encoders import default_encoder, encoder_class, encoder_tokens  # resolve names now so a typo fails before training

    if context_len < 1:
        raise DtkitError(f"context length K={context_len} is invalid; use K >= 1 (the original DT uses K=20)")
    obs_encoders = dict(obs_encoders or {})
    dict_obs = isinstance(observation_space, gym.spaces.Dict)
    items = list(observation_space.spaces.items()) if isinstance(observation_space, gym.spaces.Dict) else [("obs", observation_space)]
    unknown = set(obs_encoders) - {k for k, _ in items}
    if unknown:
        raise DtkitError(f"obs encoder given for unknown observation key(s) {sorted(unknown)}; keys are {[k for k, _ in items]}")
    modalities = dict(modalities or {})
    unknown = set(modalities) - {k for k, _ in items}
    if unknown:
        raise DtkitError(f"modality given for unknown observation key(s) {sorted(unknown)}; keys are {[k for k, _ in items]}")
    fields = []
    for key, sub in items:
        info = _obs_info(key, sub, where)
        if key in modalities:
            try:
                info = FieldInfo(info.shape, info.dtype, info.n, modalities[key])
            except ValueError as exc:
                raise DtkitError(f"{where}: observation key {key!r} cannot be a {modalities[key]!r} field: {exc}") from None
        enc_cfg = obs_encoders.get(key) or default_encoder(info)
        n_tokens = encoder_tokens(enc_cfg, info)
        # The encoder decides whether it wants standardised input; pixels and audio never
        # get per-dataset statistics (their encoders scale them).
        normalize = info.modality not in ("image", "audio") and encoder_class(enc_cfg.type).standardize(info)
        fields.append(ObsField(key=key, info=info, encoder=enc_cfg, n_tokens=n_tokens, normalize=normalize,
                               maskable=info.modality == "audio"))
    fields = _order_fields(fields, obs_order)

    if isinstance(action_space, gym.spaces.Discrete):
        action = ActionSpec(kind="discrete", dim=1, n=int(action_space.n))
    elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
            raise DtkitError(f"{where}: Box action space {action_space} has infinite bounds; dtkit needs finite bounds to map actions onto [-1, 1]")
        action = ActionSpec(kind="continuous", dim=int(action_space.shape[0]),
                            low=tuple(float(x) for x in action_space.low), high=tuple(float(x) for x in action_space.high))
    else:
        raise DtkitError(f"{where}: action space {action_space} is unsupported; dtkit supports {SUPPORTED_SPACES}")
    if not math.isfinite(return_scale) or return_scale <= 0:
        raise DtkitError(f"return_scale={return_scale} is invalid; use a positive finite number")
    return Spec(obs=tuple(fields), action=action, layout=tuple(layout), context_len=context_len,
                max_timestep=max_timestep, return_scale=return_scale, return_to_go_range=return_to_go_range,
                block_obs_attention=block_obs_attention,
                dict_obs=dict_obs)


def _order_fields(fields: list[ObsField], obs_order: tuple[str, ...] | None) -> list[ObsField]:
    """Fields in token order: ``obs_order`` when given, else maskable (audio) fields first.

    A field that can be absent is maskable only while some field that is always
    present exists to carry the readout; an all-audio observation has no maskable field.
    """
    if not any(not f.maskable for f in fields):
        fields = [replace(f, maskable=False) for f in fields]
    if obs_order is None or not list(obs_order):
        return sorted(fields, key=lambda f: not f.maskable)  # stable: keeps the space's order otherwise
    keys = [f.key for f in fields]
    if sorted(obs_order) != sorted(keys):
        raise DtkitError(f"observation key order {list(obs_order)} must list every observation key exactly once: {keys}")
    by_key = {f.key: f for f in fields}
    return [by_key[k] for k in obs_order]


def check_supported(observation_space: gym.Space, action_space: gym.Space, where: str) -> None:
    """Raise a :class:`DtkitError` naming ``where`` unless dtkit can model these spaces."""
    items = observation_space.spaces.items() if isinstance(observation_space, gym.spaces.Dict) else [("obs", observation_space)]
    for key, sub in items:
        _obs_info(key, sub, where)
    ok_action = isinstance(action_space, gym.spaces.Discrete) or (isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1)
    if not ok_action:
        raise DtkitError(f"{where}: action space {action_space} is unsupported; dtkit supports {SUPPORTED_SPACES}")


def check_env_spaces(spec: Spec, observation_space: gym.Space, action_space: gym.Space, env_id: str, source: str,
                     metadata: dict | None = None) -> None:
    """Raise a :class:`DtkitError` when an environment's spaces differ from what ``source`` (a checkpoint) was trained on.

    ``metadata``: the env's ``metadata``; an ``audio_sample_rate`` there must match the audio encoders' rate,
    since a waveform's shape alone cannot tell 16 kHz from 22.05 kHz.
    """
    if metadata is not None:
        check_audio_rate(spec, metadata, env_id, source)
    items = observation_space.spaces.items() if isinstance(observation_space, gym.spaces.Dict) else [("obs", observation_space)]
    got = {k: _obs_info(k, s, f"environment {env_id!r}") for k, s in items}
    want = {f.key: f.info for f in spec.obs}
    # Compare what the model consumes; modality and layout are derived from these.
    if {k: (v.shape, v.dtype, v.n) for k, v in got.items()} != {k: (v.shape, v.dtype, v.n) for k, v in want.items()}:
        raise DtkitError(
            f"{source} was trained on observations {_fmt(want)} but environment {env_id!r} gives {_fmt(got)}; "
            "evaluate on the environment the dataset came from (see `env_id` in the checkpoint's meta.json)"
        )
    a = spec.action
    if isinstance(action_space, gym.spaces.Discrete):
        ok = a.discrete and a.n == int(action_space.n) and int(action_space.start) == 0  # actions are indices from 0
    elif isinstance(action_space, gym.spaces.Box):
        ok = (not a.discrete and a.low is not None and a.high is not None and action_space.shape == (a.dim,)
              and np.allclose(action_space.low, a.low) and np.allclose(action_space.high, a.high))
    else:
        ok = False
    if not ok:
        raise DtkitError(
            f"{source} was trained on actions {a.to_dict()} but environment {env_id!r} has {action_space}; "
            "evaluate on the environment the dataset came from"
        )


def check_obs_arrays(spec: Spec, obs: Mapping[str, Any], source: str) -> None:
    """Raise one clear line when stored images or audio differ in shape or dtype from what the spec's encoders take.

    Vectors are cast to float by their encoder, so only compact-dtype fields (image,
    audio) are checked: for them dtype decides scaling (uint8 pixels are divided by 255).

    Args:
        obs: key -> (N, *shape) array-like with ``shape`` and ``dtype`` (numpy, memmap or lazy).
        source: names where the arrays came from, e.g. "dataset 'dtkit/doorkey/mixed-v0'".
    """
    for f in spec.obs:
        if f.info.modality not in ("image", "audio") or f.key not in obs:
            continue
        arr = obs[f.key]
        got_shape, got_dtype = tuple(int(n) for n in arr.shape[1:]), str(np.dtype(arr.dtype))
        if got_shape != tuple(f.info.shape) or got_dtype != f.info.dtype:
            raise DtkitError(
                f"{source} stores {f.info.modality} observations {f.key!r} of shape {got_shape} dtype {got_dtype}, "
                f"but the model's {f.encoder.type!r} encoder takes shape {tuple(f.info.shape)} dtype {f.info.dtype}; "
                "rebuild the dataset so its frames match its observation space, or train a new model on this data"
            )


def check_audio_rate(spec: Spec, metadata: dict, env_id: str, source: str) -> None:
    """Raise one line when the env's declared ``audio_sample_rate`` differs from an audio encoder's ``sample_rate``."""
    from dtkit.encoders.audio import DEFAULT_SAMPLE_RATE

    rate = metadata.get("audio_sample_rate")
    if rate is None:
        return
    for f in spec.obs:
        if f.info.modality != "audio":
            continue
        want = int(f.encoder.params.get("sample_rate", DEFAULT_SAMPLE_RATE))
        if int(rate) != want:
            n = f.info.shape[0]
            raise DtkitError(
                f"{source} expects audio {f.key!r} at {want} Hz ({n} samples = {n / want:g} s per clip) but environment "
                f"{env_id!r} gives audio at {rate} Hz; resample the clips to {want} Hz (scipy.signal.resample_poly) "
                "or train on data recorded at the env's rate"
            )


def _fmt(fields: dict[str, FieldInfo]) -> str:
    return ", ".join(f"{k}: shape {tuple(v.shape)} dtype {v.dtype}" + (f" n={v.n}" if v.n is not None else "") for k, v in fields.items())
