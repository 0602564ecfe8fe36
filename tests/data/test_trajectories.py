"""Minari -> Trajectories: columns, returns-to-go, statistics and clear errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from dtkit.data import Trajectories, load_trajectories, obs_statistics, returns_to_go, spec_from_spaces
from dtkit.errors import DtkitError


def test_returns_to_go_per_episode():
    r = np.array([1.0, 2.0, 3.0, 10.0, 20.0])
    rtg = returns_to_go(r, np.array([0, 3]), np.array([3, 2]))
    np.testing.assert_allclose(rtg, [6.0, 5.0, 3.0, 30.0, 20.0])


def test_load_minari_dataset(make_dataset):
    dataset_id = make_dataset("CartPole-v1", n_episodes=4)
    traj = load_trajectories(dataset_id)
    assert traj.num_episodes == 4 and traj.env_id == "CartPole-v1"
    assert traj.obs["obs"].shape == (traj.num_steps, 4)
    assert traj.actions.dtype == np.int64
    assert traj.ref_min_score == 0.0 and traj.ref_max_score == 100.0
    # returns-to-go at episode starts are the episode returns; timesteps restart per episode
    ends = traj.episode_starts + traj.episode_lengths
    for s, e in zip(traj.episode_starts, ends):
        assert traj.returns_to_go[s] == pytest.approx(traj.rewards[s:e].sum())
        np.testing.assert_array_equal(traj.timesteps[s:e], np.arange(e - s))


def test_continuous_dataset_and_statistics(make_dataset):
    traj = load_trajectories(make_dataset("Pendulum-v1", n_episodes=2, max_steps=50))
    assert traj.actions.shape == (100, 1) and traj.actions.dtype == np.float32
    stats = obs_statistics(traj.obs, ["obs"])
    np.testing.assert_allclose(stats["obs"]["mean"], traj.obs["obs"].mean(0), rtol=1e-5, atol=1e-6)
    assert min(stats["obs"]["std"]) > 0


def test_unknown_dataset_lists_local_ones(make_dataset):
    make_dataset("CartPole-v1", n_episodes=1)
    with pytest.raises(DtkitError, match=r"unknown dataset id 'nope/none-v0'.*test/cartpole/random-v0"):
        load_trajectories("nope/none-v0")


def test_unsupported_spaces_name_the_input():
    bad_obs = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3)))
    with pytest.raises(DtkitError, match="unsupported space"):
        spec_from_spaces(bad_obs, gym.spaces.Discrete(2))
    with pytest.raises(DtkitError, match="action space .* unsupported"):
        spec_from_spaces(gym.spaces.Box(-1, 1, (3,)), gym.spaces.MultiDiscrete([2, 2]))
    with pytest.raises(DtkitError, match="infinite bounds"):
        spec_from_spaces(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-np.inf, np.inf, (2,)))


def test_context_length_below_one_is_rejected():
    with pytest.raises(DtkitError, match="K=0"):
        spec_from_spaces(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), context_len=0)


def test_empty_dataset_is_rejected():
    with pytest.raises(DtkitError, match="no episodes"):
        Trajectories.from_episodes([], gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2))


def test_top_episodes_keeps_the_best_returns():
    eps = [dict(observations=np.zeros((n + 1, 2), np.float32), actions=np.zeros(n, np.int64), rewards=np.full(n, r),
                terminations=np.zeros(n), truncations=np.zeros(n)) for n, r in [(3, 1.0), (4, 5.0), (2, 3.0), (5, 0.5)]]
    traj = Trajectories.from_episodes(eps, gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2))
    top = traj.top_episodes(0.5)
    np.testing.assert_allclose(top.episode_returns, [20.0, 6.0])  # dataset order kept
    assert top.num_steps == 6 and top.timesteps.tolist() == [0, 1, 2, 3, 0, 1]
    assert traj.top_episodes(0.01).num_episodes == 1
