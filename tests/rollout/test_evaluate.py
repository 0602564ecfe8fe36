"""Evaluation: vectorised rollouts, per-episode returns, honest normalised scores (invariant 5)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from dtkit.data import spec_from_spaces
from dtkit.errors import DtkitError
from dtkit.model import DecisionTransformer, ModelConfig
from dtkit.policy import DTPolicy
from dtkit.rollout import evaluate, normalized_score


def _policy(num_envs, env_id="CartPole-v1"):
    env = gym.make(env_id)
    spec = spec_from_spaces(env.observation_space, env.action_space, context_len=4, return_scale=100.0, max_timestep=500)
    return DTPolicy(DecisionTransformer(spec, ModelConfig(d_model=16, n_layer=1)), num_envs=num_envs, target_return=100.0)


def test_normalized_score_formula_and_missing_metadata():
    assert normalized_score(60.0, 10.0, 110.0) == (50.0, None)
    score, reason = normalized_score(60.0, None, 110.0)
    assert score is None and "ref_min_score" in reason
    score, reason = normalized_score(5.0, 3.0, 3.0)
    assert score is None and "undefined" in reason


def test_report_fields_and_episode_quota():
    report = evaluate(_policy(3), "CartPole-v1", [100.0, 20.0], num_episodes=5, progress=False)
    d = report.to_dict()
    for key in ("env_id", "target_returns", "episode_returns", "mean_return", "normalized_score", "num_envs", "env_steps_per_s"):
        assert key in d
    assert d["normalized_score"] is None and "ref_min_score" in d["normalized_score_reason"]
    assert d["num_envs"] == 3 and d["target_returns"] == [100.0, 20.0]
    assert [len(r["episode_returns"]) for r in d["per_target"]] == [5, 5]
    assert d["mean_return"] == pytest.approx(np.mean(d["episode_returns"]))
    # CartPole pays 1 per step, so returns equal lengths
    assert d["per_target"][0]["episode_returns"] == [float(n) for n in d["per_target"][0]["episode_lengths"]]
    assert report.env_steps_per_s > 0


def test_normalized_score_uses_reference_scores():
    report = evaluate(_policy(2), "CartPole-v1", [50.0], num_episodes=2, ref_min_score=0.0, ref_max_score=200.0, progress=False)
    assert report.normalized_score == pytest.approx(100 * report.mean_return / 200.0)
    assert report.normalized_score_reason is None


def test_bad_targets_and_env_ids():
    with pytest.raises(DtkitError, match="not finite"):
        evaluate(_policy(1), "CartPole-v1", [float("nan")], progress=False)
    with pytest.raises(DtkitError, match="not registered"):
        evaluate(_policy(1), "NoSuchEnv-v9", [1.0], progress=False)
