"""The spec: derived from spaces, round-trips through JSON, validates layouts."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

from dtkit.data import spec_from_spaces
from dtkit.encoders import EncoderConfig
from dtkit.errors import DtkitError
from dtkit.model import ModelConfig
from dtkit.spec import Spec
from dtkit.trainer import TrainConfig


def test_spec_json_round_trip():
    obs = gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (3,)), "b": gym.spaces.Discrete(4)})
    spec = spec_from_spaces(obs, gym.spaces.Box(-1, 2, (2,)), obs_encoders={"a": EncoderConfig("mlp", {"n_tokens": 2})},
                            layout=("return", "obs", "action", "reward"), context_len=7, return_scale=3.0,
                            return_to_go_range=(-2.5, 40.0))
    again = Spec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert spec.slots == (("return", 0), ("obs/a", 0), ("obs/a", 1), ("obs/b", 0), ("action", 0), ("reward", 0))
    assert spec.readout_slot == 3 and spec.tokens_per_step == 6


def test_spec_saved_before_the_return_to_go_range_reads_as_none():
    d = spec_from_spaces(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), return_to_go_range=(0.0, 5.0)).to_dict()
    assert Spec.from_dict(d).return_to_go_range == (0.0, 5.0)
    del d["return_to_go_range"]
    assert Spec.from_dict(d).return_to_go_range is None


@pytest.mark.parametrize("bad", [(5.0, 1.0), (float("nan"), 1.0), (0.0, float("inf"))])
def test_bad_return_to_go_range_is_named(bad):
    with pytest.raises(DtkitError, match="return_to_go_range"):
        spec_from_spaces(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), return_to_go_range=bad)


def test_configs_round_trip():
    cfg = TrainConfig(steps=5, target_returns=(1.0, 2.0), model=ModelConfig(d_model=8))
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("layout", [("obs", "return", "action"), ("return", "action", "obs"), ("return", "obs"), ("return", "obs", "action", "action")])
def test_bad_layouts_are_rejected(layout):
    with pytest.raises(DtkitError, match="layout"):
        spec_from_spaces(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), layout=layout)


def test_unknown_obs_encoder_key():
    with pytest.raises(DtkitError, match="unknown observation key"):
        spec_from_spaces(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), obs_encoders={"pixels": EncoderConfig("mlp")})
