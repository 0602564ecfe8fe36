"""Dict observations with every modality in one step: one encoder per key, a configurable key order
saved in the spec, and the action read out from a token that is never masked."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from dtkit.data import spec_from_spaces
from dtkit.encoders import EncoderConfig
from dtkit.errors import DtkitError
from dtkit.spec import Spec

SPACE = gym.spaces.Dict({
    "image": gym.spaces.Box(0, 255, (42, 42, 3), np.uint8),
    "audio": gym.spaces.Box(-32768, 32767, (9600,), np.int16),
    "state": gym.spaces.Box(-1, 1, (2,), np.float32),
})
ACT = gym.spaces.Discrete(4)


def test_each_key_gets_its_modality_default_and_audio_comes_first():
    spec = spec_from_spaces(SPACE, ACT)
    assert [(f.key, f.info.modality, f.encoder.type) for f in spec.obs] == [
        ("audio", "audio", "audio_conv"), ("image", "image", "cnn"), ("state", "vector", "mlp")]
    assert [f.maskable for f in spec.obs] == [True, False, False]
    # Slots: return, 4 audio tokens, 1 image token, 1 state token, action; fixed whatever is absent.
    assert [name for name, _ in spec.slots] == ["return"] + ["obs/audio"] * 4 + ["obs/image", "obs/state", "action"]
    assert spec.slots[spec.readout_slot] == ("obs/state", 0)


def test_key_order_and_per_key_encoders_are_configurable_and_saved():
    encoders = {"audio": EncoderConfig("audio_patch"), "image": EncoderConfig("patch", {"patch": 14})}
    spec = spec_from_spaces(SPACE, ACT, obs_encoders=encoders, obs_order=("state", "audio", "image"))
    assert [f.key for f in spec.obs] == ["state", "audio", "image"]
    assert spec.obs[1].encoder.type == "audio_patch" and spec.obs[2].encoder.type == "patch"
    again = Spec.from_dict(spec.to_dict())
    assert again == spec and [f.key for f in again.obs] == ["state", "audio", "image"]
    assert again.slots == spec.slots and again.obs[1].maskable


def test_audio_last_is_refused_since_the_readout_must_never_be_masked():
    with pytest.raises(DtkitError, match=r"ends with 'audio'.*never be masked.*'image'"):
        spec_from_spaces(SPACE, ACT, obs_order=("state", "image", "audio"))


@pytest.mark.parametrize("order", [("state", "audio"), ("state", "audio", "image", "image"), ("state", "audio", "pixels")])
def test_order_must_list_every_key_once(order):
    with pytest.raises(DtkitError, match="every observation key exactly once"):
        spec_from_spaces(SPACE, ACT, obs_order=order)


def test_audio_only_observation_is_not_maskable():
    spec = spec_from_spaces(gym.spaces.Dict({"audio": SPACE["audio"]}), ACT)
    assert not spec.obs[0].maskable
