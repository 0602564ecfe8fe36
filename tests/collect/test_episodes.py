"""The episode runner: batching never changes what an episode is."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from dtkit.collect import run_episodes
from dtkit.collect.episodes import episode_seed, random_actor


def _lean_right(obs: np.ndarray) -> np.ndarray:
    return (obs[:, 2] > 0).astype(np.int64)  # push towards the pole's lean: a pure function of obs


@pytest.mark.parametrize("n_parallel", [1, 3, 16])
def test_batching_does_not_change_episodes(n_parallel):
    ref = list(run_episodes("CartPole-v1", _lean_right, lambda i: 100 + i, transitions=300, n_parallel=1))
    got = list(run_episodes("CartPole-v1", _lean_right, lambda i: 100 + i, transitions=300, n_parallel=n_parallel))
    assert [e.seed for e in got] == [e.seed for e in ref]
    assert all(np.array_equal(a.observations, b.observations) for a, b in zip(got, ref))
    total = sum(len(e) for e in got)
    assert total >= 300 and total - len(got[-1]) < 300  # the shortest prefix holding 300 steps


def test_episode_arrays_are_consistent():
    space = gym.make("CartPole-v1").action_space
    (ep,) = run_episodes("CartPole-v1", random_actor(space, 0), lambda i: i, episodes=1)
    n = len(ep)
    assert ep.observations.shape == (n + 1, 4) and ep.actions.shape == (n,)
    assert ep.terminations.dtype == bool and ep.terminations[-1] != ep.truncations[-1]
    assert not ep.terminations[:-1].any() and not ep.truncations[:-1].any()
    assert ep.ret == n


def test_episode_seeds_are_stable_and_distinct():
    assert episode_seed(0, 3, 5) == episode_seed(0, 3, 5)
    seeds = {episode_seed(s, stream, i) for s in range(3) for stream in range(4) for i in range(50)}
    assert len(seeds) == 3 * 4 * 50
