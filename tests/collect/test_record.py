"""RecordEpisodes: episodes recorded by an env wrapper, whatever drives the env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from dtkit.collect.record import RecordEpisodes


def test_records_each_finished_episode_as_stepped():
    got = []
    env = RecordEpisodes(gym.make("CartPole-v1"), got.append)
    obs0, _ = env.reset(seed=3)
    seen_obs, seen_act, seen_rew = [obs0], [], []
    while len(got) < 1:
        a = env.action_space.sample()
        obs, r, *_ = env.step(a)
        seen_obs.append(obs), seen_act.append(a), seen_rew.append(r)
    ep = got[0]
    assert ep.seed == 3 and len(ep) == len(seen_act)
    assert np.array_equal(ep.observations, np.stack(seen_obs))
    assert np.array_equal(ep.actions, np.array(seen_act)) and np.array_equal(ep.rewards, seen_rew)
    assert ep.terminations[-1] or ep.truncations[-1]
    assert not (ep.terminations[:-1] | ep.truncations[:-1]).any()


def test_an_episode_cut_by_reset_is_dropped():
    got = []
    env = RecordEpisodes(gym.make("CartPole-v1"), got.append)
    env.reset(seed=0)
    env.step(0)
    env.reset(seed=1)
    while not got:
        env.step(env.action_space.sample())
    assert got[0].seed == 1 and len(got) == 1
