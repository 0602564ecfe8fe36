"""`evaluate` runs in any env a user brings: an id, a wrapped vector env, or a factory; the spaces check still runs."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from dtkit.data import spec_from_spaces
from dtkit.errors import DtkitError
from dtkit.model import DecisionTransformer, ModelConfig
from dtkit.policy import DTPolicy
from dtkit.rollout import evaluate


def _policy(num_envs: int) -> DTPolicy:
    env = gym.make("CartPole-v1")
    spec = spec_from_spaces(env.observation_space, env.action_space, context_len=4, return_scale=100.0, max_timestep=500)
    torch.manual_seed(0)
    return DTPolicy(DecisionTransformer(spec, ModelConfig(d_model=16, n_layer=1)), num_envs=num_envs, target_return=100.0)


class ScaledReward(gym.RewardWrapper):
    """A user's wrapper that the registry knows nothing about."""

    def reward(self, reward):
        return 2.0 * reward


def test_wrapped_factory_and_vector_env_give_the_wrapped_returns():
    by_id = evaluate(_policy(2), "CartPole-v1", [50.0], num_episodes=4, seed=3, progress=False)
    by_factory = evaluate(_policy(2), lambda: ScaledReward(gym.make("CartPole-v1")), [50.0], num_episodes=4, seed=3,
                          progress=False)
    vec = gym.vector.SyncVectorEnv([lambda: ScaledReward(gym.make("CartPole-v1")) for _ in range(2)])
    by_vector = evaluate(_policy(2), vec, [50.0], num_episodes=4, seed=3, progress=False)
    # Same deterministic policy and seeds, so the wrapper's doubling is the only difference.
    assert by_factory.episode_returns == [2 * r for r in by_id.episode_returns]
    assert by_vector.episode_returns == by_factory.episode_returns
    assert by_vector.seed == 3


@pytest.mark.skipif(not hasattr(gym.vector, "AutoresetMode"), reason="gymnasium 1.0 has only next-step resets")
def test_next_step_autoreset_gives_the_same_episodes_as_same_step():
    """gymnasium 1.0's only mode (and 1.1+'s default) resets on the following step; the accounting must not change."""
    mode = gym.vector.AutoresetMode
    same = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(2)], autoreset_mode=mode.SAME_STEP)
    nxt = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(2)], autoreset_mode=mode.NEXT_STEP)
    a = evaluate(_policy(2), same, [50.0], num_episodes=6, seed=1, progress=False)
    b = evaluate(_policy(2), nxt, [50.0], num_episodes=6, seed=1, progress=False)
    assert a.per_target[0].episode_lengths == b.per_target[0].episode_lengths
    assert a.episode_returns == b.episode_returns


def test_wrong_action_space_is_refused():
    """Right observation shape, Discrete(3) actions: refused, not run silently."""

    class ThreeActions(gym.Wrapper):
        def __init__(self, env):
            super().__init__(env)
            self.action_space = gym.spaces.Discrete(3)

    with pytest.raises(DtkitError, match="Discrete\\(3\\)"):
        evaluate(_policy(2), lambda: ThreeActions(gym.make("CartPole-v1")), [50.0], num_episodes=2, progress=False)


def test_vector_env_size_must_match_the_policy():
    vec = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(3)])
    with pytest.raises(DtkitError, match="3 envs but the policy drives num_envs=2"):
        evaluate(_policy(2), vec, [50.0], num_episodes=2, progress=False)


class NaNReward(gym.RewardWrapper):
    def reward(self, reward):
        return float("nan")


def test_nan_rewards_give_valid_json_with_a_reason():
    report = evaluate(_policy(1), lambda: NaNReward(gym.make("CartPole-v1")), [50.0], num_episodes=1, progress=False)
    text = json.dumps(report.to_dict(), allow_nan=False)  # raises on NaN
    d = json.loads(text)
    assert d["mean_return"] is None and "non-finite" in d["non_finite_reason"]
    assert np.isnan(report.mean_return)
