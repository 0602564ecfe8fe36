"""The bundled pixel environments: registered ids, env_checker, and the DoorKey expert."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from dtkit.gym_env import make_env

VISION_ENVS = {
    "dtkit/DoorKey-5x5-RGB-v0": ((40, 40, 3), 7),
    "dtkit/Breakout-v0": ((4, 84, 84), 4),
}


@pytest.mark.parametrize("env_id", sorted(VISION_ENVS))
def test_bundled_env_passes_check_env(env_id):
    pytest.importorskip("cv2" if "Breakout" in env_id else "minigrid")
    env = make_env(env_id)
    shape, n_actions = VISION_ENVS[env_id]
    assert env.observation_space.shape == shape and env.observation_space.dtype == np.uint8
    assert env.action_space.n == n_actions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # check_env's note that the env is wrapped
        check_env(env, skip_render_check=True)
    env.close()


def test_dtkit_ids_resolve_in_a_fresh_process():
    import subprocess
    import sys

    code = "from dtkit.gym_env import make_env; print(make_env('dtkit/DoorKey-5x5-RGB-v0').observation_space.shape)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "(40, 40, 3)"


def test_doorkey_expert_solves_every_seed_and_noise_makes_it_fail():
    from dtkit.collect.record import RecordEpisodes
    from dtkit.collect.scripted import run_scripted_episode
    from dtkit.envs.minigrid_rgb import DoorKeyExpert

    def success(epsilon: float, n: int) -> float:
        rets: list[float] = []
        env = RecordEpisodes(make_env("dtkit/DoorKey-5x5-RGB-v0"), lambda ep: rets.append(ep.ret))
        for i in range(n):
            run_scripted_episode(env, DoorKeyExpert, epsilon, seed=i, noise_seed=1000 + i)
        return float(np.mean(np.array(rets) > 0))

    assert success(0.0, 20) == 1.0
    assert success(1.0, 20) < 0.5  # uniform actions rarely open the door within 100 steps


def test_breakout_serves_by_itself_so_a_policy_that_never_fires_still_ends():
    """Without the serve a NOOP-only policy would freeze the game until the 108k-frame cap (27k steps)."""
    pytest.importorskip("cv2")
    env = make_env("dtkit/Breakout-v0")
    obs, info = env.reset(seed=0)
    lives, lost = info["lives"], 0
    for steps in range(1, 2_000):
        obs, reward, terminated, truncated, info = env.step(0)  # NOOP: never FIRE
        lost += info["lives"] < lives
        lives = info["lives"]
        if terminated or truncated:
            break
    assert terminated and not truncated and info["lives"] == 0
    assert lost == 5 and steps < 1_000  # every ball was served and missed
    env.close()
