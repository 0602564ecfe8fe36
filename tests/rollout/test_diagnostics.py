"""Evaluation diagnostics: episode lengths, achieved return vs target, actions at the bounds."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from dtkit.data import spec_from_spaces
from dtkit.model import DecisionTransformer, ModelConfig
from dtkit.policy import DTPolicy
from dtkit.rollout import TargetResult, evaluate
from dtkit.rollout.evaluate import _rises


def _policy(num_envs, env_id):
    env = gym.make(env_id)
    spec = spec_from_spaces(env.observation_space, env.action_space, context_len=4, return_scale=100.0, max_timestep=500)
    return DTPolicy(DecisionTransformer(spec, ModelConfig(d_model=16, n_layer=1)), num_envs=num_envs, target_return=100.0)


def test_lengths_and_return_against_target():
    report = evaluate(_policy(2, "CartPole-v1"), "CartPole-v1", [100.0, 20.0], num_episodes=4, progress=False)
    for r in report.per_target:
        assert r.mean_length == pytest.approx(np.mean(r.episode_lengths))
        assert r.return_minus_target == pytest.approx(r.mean_return - r.target_return)
        assert r.action_at_bounds_fraction is None  # Discrete actions have no bounds
    text = report.summary()
    assert "vs target" in text and "length" in text and "at bounds" not in text
    assert report.to_dict()["per_target"][1]["mean_length"] == report.per_target[1].mean_length


@pytest.mark.parametrize("actions, expected", [((2.0, 2.0), 1.0), ((0.0, 0.0), 0.0), ((-2.0, 0.5), 0.5)])
def test_fraction_of_actions_at_the_bounds(actions, expected):
    """Pendulum's torque is in [-2, 2]; env 0 and env 1 always apply the given torques (equal-length episodes)."""
    policy = _policy(2, "Pendulum-v1")
    real_act = policy.act

    def fixed(obs):
        real_act(obs)  # keeps the policy's bookkeeping as in a real rollout
        return np.array([[actions[0]], [actions[1]]], dtype=np.float32)

    policy.act = fixed
    report = evaluate(policy, "Pendulum-v1", [-200.0], num_episodes=2, progress=False)
    assert report.per_target[0].action_at_bounds_fraction == pytest.approx(expected)
    assert "actions at bounds" in report.summary()


def _result(target, mean):
    return TargetResult(target, [mean], [1], mean, 0.0, None)


@pytest.mark.parametrize("pairs, rises", [
    ([(10, 5), (50, 20), (100, 40)], True),
    ([(100, 40), (10, 5), (50, 20)], True),  # order of the targets does not matter
    ([(10, 5), (50, 30), (100, 30)], False),  # flat at the top
    ([(10, 50), (100, 20)], False),
    ([(10, 5)], None),  # one target: nothing to compare
])
def test_rises_with_target(pairs, rises):
    assert _rises([_result(t, m) for t, m in pairs]) is rises
