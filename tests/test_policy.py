"""DESIGN invariants 3 and 4: return-to-go bookkeeping and safe actions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from dtkit.data import SegmentSampler, Trajectories, spec_from_spaces
from dtkit.errors import DtkitError
from dtkit.model import DecisionTransformer, ModelConfig
from dtkit.policy import DTPolicy


def test_eval_return_to_go_matches_sampler():
    """Replaying an episode with target = its return feeds exactly the sampler's returns-to-go."""
    rng = np.random.default_rng(0)
    n = 12
    ep = dict(observations=rng.normal(size=(n + 1, 3)).astype(np.float32), actions=rng.integers(0, 2, n),
              rewards=rng.normal(size=n) * 3, terminations=np.zeros(n), truncations=np.zeros(n))
    traj = Trajectories.from_episodes([ep], gym.spaces.Box(-np.inf, np.inf, (3,)), gym.spaces.Discrete(2))
    spec = spec_from_spaces(traj.observation_space, traj.action_space, context_len=n, return_scale=4.0)
    batch = SegmentSampler(traj, spec, batch_size=1, seed=0).sample()
    model = DecisionTransformer(spec, ModelConfig(d_model=16, n_layer=1))
    policy = DTPolicy(model, num_envs=1, target_return=float(traj.episode_returns[0]))
    fed = []
    for t in range(n):
        policy.act(ep["observations"][t][None])
        fed.append(policy._ret[0, t].item())
        policy.record(np.array([ep["rewards"][t]]))
    np.testing.assert_allclose(fed, batch.returns[0].numpy(), rtol=1e-6, atol=1e-6)


def _rtg_fed(policy: DTPolicy, rewards: list[float]) -> list[float]:
    """Returns-to-go (env units) the policy fed the model, step by step, while being paid ``rewards``."""
    fed = []
    for t, r in enumerate(rewards):
        policy.act(np.zeros((1, 3), np.float32))
        fed.append(policy._ret[0, t].item() * policy.spec.return_scale)
        policy.record(np.array([r]))
    return fed


def test_return_to_go_is_clamped_to_the_training_range_and_the_account_is_not():
    """Behind a target on a task with rewards <= 0, the return-to-go climbs past the data's highest; the model
    is fed the highest instead, while the policy's own account (target minus rewards) runs on unclamped."""
    spec = spec_from_spaces(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), context_len=8, return_scale=10.0,
                            return_to_go_range=(-50.0, -1.0))
    model = DecisionTransformer(spec, ModelConfig(d_model=16, n_layer=1))
    rewards = [-3.0, -4.0, -5.0, -60.0]
    clamped = _rtg_fed(DTPolicy(model, target_return=-8.0), rewards)
    np.testing.assert_allclose(clamped, [-8.0, -5.0, -1.0, -1.0], rtol=1e-6)  # raw: -8, -5, -1, +4
    raw = DTPolicy(model, target_return=-8.0, clamp_return_to_go=False)
    np.testing.assert_allclose(_rtg_fed(raw, rewards), [-8.0, -5.0, -1.0, 4.0], rtol=1e-6)
    policy = DTPolicy(model, target_return=-8.0)
    _rtg_fed(policy, rewards)
    assert policy._rtg.item() == pytest.approx(64.0)  # the account: -8 - (-72)
    # a target below the data's lowest is raised to it
    np.testing.assert_allclose(_rtg_fed(DTPolicy(model, target_return=-80.0), [-3.0]), [-50.0], rtol=1e-6)


def test_no_recorded_range_means_no_clamp():
    """Checkpoints saved before the range was recorded have none: their policies feed the raw return-to-go."""
    spec = spec_from_spaces(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), context_len=8, return_scale=10.0)
    assert spec.return_to_go_range is None
    policy = DTPolicy(DecisionTransformer(spec, ModelConfig(d_model=16, n_layer=1)), target_return=-8.0)
    assert policy.return_to_go_bounds is None
    np.testing.assert_allclose(_rtg_fed(policy, [-3.0, -10.0]), [-8.0, -5.0], rtol=1e-6)


@pytest.mark.parametrize("target", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_target_is_rejected(target):
    spec = spec_from_spaces(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), context_len=4)
    with pytest.raises(DtkitError, match="not finite"):
        DTPolicy(DecisionTransformer(spec, ModelConfig(d_model=16, n_layer=1)), target_return=target)


def test_box_actions_map_affinely_and_bounds_stay_finite():
    spec = spec_from_spaces(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(np.array([-2.0, 0.0]), np.array([2.0, 10.0])))
    a = spec.action
    bounds = np.array([[-2.0, 0.0], [2.0, 10.0], [0.0, 5.0]], np.float32)
    u = a.to_unit(bounds)
    np.testing.assert_allclose(u, [[-1, -1], [1, 1], [0, 0]], atol=1e-6)
    np.testing.assert_allclose(a.from_unit(u), bounds, atol=1e-5)
    # actions at or beyond the bounds (as datasets hold them) never give NaN or inf
    assert np.isfinite(a.to_unit(np.array([[-2.0000001, 10.0000001], [1e30, -1e30]], np.float32))).all()
    model = DecisionTransformer(spec, ModelConfig(d_model=16, n_layer=1))
    out = DTPolicy(model, num_envs=4, target_return=1.0).act(np.random.randn(4, 3).astype(np.float32) * 1e3)
    assert np.isfinite(out).all() and (out >= [-2, 0]).all() and (out <= [2, 10]).all()
    pred = torch.ones(1, 1, 2)
    loss = model.head.loss(pred, torch.ones(1, 1, 2), torch.ones(1, 1, dtype=torch.bool))
    assert torch.isfinite(loss)


def test_discrete_actions_use_a_categorical_head():
    spec = spec_from_spaces(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(5))
    model = DecisionTransformer(spec, ModelConfig(d_model=16, n_layer=1))
    assert model.head.proj.out_features == 5
    policy = DTPolicy(model, num_envs=6, target_return=1.0, deterministic=False)
    out = policy.act(np.zeros((6, 3), np.float32))
    assert out.dtype == np.int64 and ((out >= 0) & (out < 5)).all()
    logits = torch.tensor([[[0.0, 10.0, 0.0, 0.0, 0.0]]])
    assert model.head.loss(logits, torch.tensor([[1]]), torch.ones(1, 1, dtype=torch.bool)) < 1e-3


def test_wrong_observation_shape_is_named():
    spec = spec_from_spaces(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2))
    policy = DTPolicy(DecisionTransformer(spec, ModelConfig(d_model=16, n_layer=1)), num_envs=2, target_return=1.0)
    with pytest.raises(DtkitError, match=r"observation 'obs' has shape \(2, 4\), expected \(2, 3\)"):
        policy.act(np.zeros((2, 4), np.float32))
