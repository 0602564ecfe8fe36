"""Data checks at load: empty episodes and non-finite values are named by episode and step."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from dtkit.data import Trajectories
from dtkit.errors import DtkitError

OBS, ACT = gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32)


def _ep(n: int) -> dict:
    return {"observations": np.zeros((n + 1, 2), np.float32), "actions": np.zeros((n, 1), np.float32), "rewards": np.ones(n),
            "terminations": np.arange(n) == n - 1, "truncations": np.zeros(n, bool)}


def test_an_empty_episode_is_named():
    with pytest.raises(DtkitError, match="episode 1 has no steps"):
        Trajectories.from_episodes([_ep(3), _ep(0), _ep(2)], OBS, ACT, dataset_id="mine")


def test_a_nan_action_is_named_by_episode_and_step():
    eps = [_ep(3), _ep(4)]
    eps[1]["actions"][2, 0] = np.nan
    with pytest.raises(DtkitError, match="'mine': action at episode 1, step 2"):
        Trajectories.from_episodes(eps, OBS, ACT, dataset_id="mine")


def test_discrete_env_starting_above_zero_is_refused_at_evaluation():
    from dtkit.data import check_env_spaces, spec_from_spaces

    spec = spec_from_spaces(OBS, gym.spaces.Discrete(2))
    with pytest.raises(DtkitError, match="start=1"):
        check_env_spaces(spec, OBS, gym.spaces.Discrete(2, start=1), "Shifted-v0", "the policy")
