"""SB3's evaluate_policy runs a dtkit policy through its predict()."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from dtkit.data import spec_from_spaces
from dtkit.model import DecisionTransformer, ModelConfig
from dtkit.policy import DTPolicy


def test_evaluate_policy_runs_a_dtkit_policy():
    env = gym.make("CartPole-v1")
    spec = spec_from_spaces(env.observation_space, env.action_space, context_len=4, return_scale=100.0, max_timestep=500)
    policy = DTPolicy(DecisionTransformer(spec, ModelConfig(d_model=16, n_layer=1)), num_envs=1, target_return=100.0)
    returns, lengths = evaluate_policy(policy, Monitor(policy.wrap_env(env)), n_eval_episodes=3, return_episode_rewards=True)
    assert len(returns) == 3 and all(r == n for r, n in zip(returns, lengths))
    # rewards reached the policy: its clock and return-to-go follow the last episode
    assert policy._t[0].item() == lengths[-1]
    assert policy._rtg[0].item() == 100.0 - returns[-1]


def test_predict_resets_rows_on_episode_start():
    env = gym.make("CartPole-v1")
    spec = spec_from_spaces(env.observation_space, env.action_space, context_len=4, return_scale=100.0)
    policy = DTPolicy(DecisionTransformer(spec, ModelConfig(d_model=16, n_layer=1)), num_envs=2, target_return=50.0)
    obs = np.zeros((2, 4), np.float32)
    actions, state = policy.predict(obs, episode_start=np.array([True, True]))
    assert actions.shape == (2,) and state is None
    policy.record(np.array([1.0, 1.0]))
    policy.predict(obs, episode_start=np.array([False, True]))
    assert policy._t.tolist() == [1, 0] and policy._rtg.tolist() == [49.0, 50.0]


def _policy(num_envs: int) -> DTPolicy:
    env = gym.make("CartPole-v1")
    spec = spec_from_spaces(env.observation_space, env.action_space, context_len=4, return_scale=100.0, max_timestep=500)
    return DTPolicy(DecisionTransformer(spec, ModelConfig(d_model=16, n_layer=1)), num_envs=num_envs, target_return=100.0)


def test_sb3_without_wrap_env_is_refused():
    """Without wrap_env no reward reaches the policy, which would then act on one step of context for ever."""
    import pytest

    from dtkit.errors import DtkitError

    with pytest.raises(DtkitError, match="wrap_env"):
        evaluate_policy(_policy(1), Monitor(gym.make("CartPole-v1")), n_eval_episodes=2)


def test_vec_env_larger_than_the_policy_is_refused():
    import pytest
    from stable_baselines3.common.env_util import make_vec_env

    from dtkit.errors import DtkitError

    policy = _policy(2)
    venv = make_vec_env("CartPole-v1", n_envs=3)
    with pytest.raises(DtkitError, match="3 envs but this policy drives num_envs=2"):
        evaluate_policy(policy, venv, n_eval_episodes=3)
