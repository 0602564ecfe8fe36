"""Bad speech input: a clip of the wrong length or sample rate, or a missing Dict key, is one clear line naming
what was expected, and nothing is written (the policy's state is untouched)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import dtkit.envs  # noqa: F401  (registers dtkit/...)
from dtkit.data import check_env_spaces, spec_from_spaces
from dtkit.errors import DtkitError
from dtkit.model import DecisionTransformer, ModelConfig
from dtkit.policy import DTPolicy


def _policy() -> DTPolicy:
    env = gym.make("dtkit/SpokenGoal-v0")
    spec = spec_from_spaces(env.observation_space, env.action_space, context_len=4, return_scale=1.0, max_timestep=20)
    return DTPolicy(DecisionTransformer(spec, ModelConfig(d_model=16, n_layer=1, n_head=1)), num_envs=2, target_return=1.0)


def _state(policy: DTPolicy) -> list[torch.Tensor]:
    return [policy._t.clone(), policy._obs["audio"].clone(), policy._ret.clone()]


@pytest.mark.parametrize("obs, words", [
    ({"audio": np.zeros((2, 8000), np.int16), "state": np.zeros((2, 2), np.float32)},
     [r"'audio' has shape \(2, 8000\), expected \(2, 9600\)", "9600 samples at 16000 Hz"]),
    ({"state": np.zeros((2, 2), np.float32)}, [r"lacks key\(s\) \['audio'\]", r"keys \['audio', 'state'\]"]),
])
def test_policy_refuses_in_one_line_and_writes_nothing(obs, words):
    policy = _policy()
    before = _state(policy)
    with pytest.raises(DtkitError) as err:
        policy.act(obs)
    msg = str(err.value)
    assert "\n" not in msg and all(__import__("re").search(w, msg) for w in words)
    assert all(torch.equal(a, b) for a, b in zip(before, _state(policy)))


def test_env_at_another_sample_rate_is_refused():
    env = gym.make("dtkit/SpokenGoal-v0")
    spec = spec_from_spaces(env.observation_space, env.action_space)
    check_env_spaces(spec, env.observation_space, env.action_space, "dtkit/SpokenGoal-v0", "checkpoint x", metadata=env.metadata)
    with pytest.raises(DtkitError, match=r"expects audio 'audio' at 16000 Hz \(9600 samples = 0.6 s.*gives audio at 22050 Hz"):
        check_env_spaces(spec, env.observation_space, env.action_space, "my-env", "checkpoint x",
                         metadata={**env.metadata, "audio_sample_rate": 22050})


def test_clip_of_another_length_between_env_and_checkpoint_names_both_shapes():
    env = gym.make("dtkit/SpokenGoal-v0")
    spec = spec_from_spaces(env.observation_space, env.action_space)
    other = gym.spaces.Dict({"audio": gym.spaces.Box(-32768, 32767, (16000,), np.int16), "state": env.observation_space["state"]})
    with pytest.raises(DtkitError, match=r"audio: shape \(9600,\).*audio: shape \(16000,\)"):
        check_env_spaces(spec, other, env.action_space, "my-env", "checkpoint x")
