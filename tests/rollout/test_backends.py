"""Every env engine (sync, async, envpool) gives the same episode accounting; bad backends are one clear line."""

from __future__ import annotations

import sys

import gymnasium as gym
import pytest
import torch

from dtkit.data import spec_from_spaces
from dtkit.errors import DtkitError
from dtkit.model import DecisionTransformer, ModelConfig
from dtkit.policy import DTPolicy
from dtkit.rollout import evaluate, make_vector_env

try:
    import envpool  # noqa: F401

    HAS_ENVPOOL = True
except ImportError:
    HAS_ENVPOOL = False


def _policy(num_envs: int) -> DTPolicy:
    env = gym.make("CartPole-v1")
    spec = spec_from_spaces(env.observation_space, env.action_space, context_len=4, return_scale=100.0, max_timestep=500)
    torch.manual_seed(0)
    return DTPolicy(DecisionTransformer(spec, ModelConfig(d_model=16, n_layer=1)), num_envs=num_envs, target_return=100.0)


def _check_accounting(report, num_episodes: int) -> None:
    res = report.per_target[0]
    assert len(res.episode_returns) == len(res.episode_lengths) == num_episodes
    # CartPole pays 1 per step: a return is its episode's length, so no step is lost or double-counted.
    assert res.episode_returns == [float(n) for n in res.episode_lengths]
    assert all(1 <= n <= 500 for n in res.episode_lengths)
    assert report.env_steps >= sum(sum(r.episode_lengths) for r in report.per_target)


def test_async_gives_the_episodes_of_sync():
    """Same seeds, same deterministic policy: worker processes, and the two halves taking turns, change nothing
    but the speed (episodes listed in the same order too)."""
    a = evaluate(_policy(3), "CartPole-v1", [50.0], num_episodes=7, seed=2, progress=False, env_backend="sync")
    b = evaluate(_policy(3), "CartPole-v1", [50.0], num_episodes=7, seed=2, progress=False, env_backend="async")
    _check_accounting(a, 7)
    assert b.per_target[0].episode_lengths == a.per_target[0].episode_lengths
    assert b.episode_returns == a.episode_returns
    # (env_steps may differ: async steps two halves that stop separately once their envs met their quotas.)
    assert (a.env_backend, b.env_backend) == ("sync", "async")


@pytest.mark.skipif(not HAS_ENVPOOL, reason="envpool (optional extra) is not installed")
def test_envpool_accounting_and_reseeding():
    """envpool resets a finished env on the next step; quotas and returns follow the same rules, and each
    target restarts from the same seeded states (so two targets at one seed give the same episodes here)."""
    report = evaluate(_policy(3), "CartPole-v1", [50.0, 50.0], num_episodes=7, seed=2, progress=False, env_backend="envpool")
    _check_accounting(report, 7)
    first, second = report.per_target
    assert first.episode_returns == second.episode_returns
    assert report.env_backend == "envpool"


def test_unknown_backend_is_one_line():
    with pytest.raises(DtkitError, match="env backend 'threads' is unknown; use one of sync, async, envpool"):
        make_vector_env("CartPole-v1", 2, backend="threads")


def test_envpool_missing_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "envpool", None)  # import envpool now raises ImportError
    with pytest.raises(DtkitError, match="needs the envpool package, which is not installed; pip install"):
        make_vector_env("CartPole-v1", 2, backend="envpool")


@pytest.mark.skipif(not HAS_ENVPOOL, reason="envpool (optional extra) is not installed")
def test_envpool_refuses_ids_it_does_not_serve_and_factories():
    with pytest.raises(DtkitError, match="envpool does not serve 'dtkit/NoSuchEnv-v0'"):
        make_vector_env("dtkit/NoSuchEnv-v0", 2, backend="envpool")
    with pytest.raises(DtkitError, match="makes envs by id only"):
        make_vector_env(lambda: gym.make("CartPole-v1"), 2, backend="envpool")
    with pytest.raises(DtkitError, match=r"takes no option\(s\) \['render_fps'\]"):
        make_vector_env("CartPole-v1", 2, {"render_fps": 3}, backend="envpool")


@pytest.mark.skipif(not HAS_ENVPOOL, reason="envpool (optional extra) is not installed")
def test_envpool_halves_taking_turns_give_the_episodes_of_one_pool():
    """evaluate splits envpool's envs in two halves that take turns; env i is still seeded seed + i, so the
    episodes equal those of one pool of all the envs stepped in lockstep."""
    from dtkit.rollout.backends import EnvpoolVectorEnv

    one = evaluate(_policy(4), EnvpoolVectorEnv("CartPole-v1", 4, {}), [50.0], num_episodes=9, seed=5, progress=False)
    halves = evaluate(_policy(4), "CartPole-v1", [50.0], num_episodes=9, seed=5, progress=False, env_backend="envpool")
    _check_accounting(halves, 9)
    assert halves.per_target[0].episode_lengths == one.per_target[0].episode_lengths
    assert halves.episode_returns == one.episode_returns


@pytest.mark.parametrize("backend", ["sync", "async"])
def test_split_targets_give_each_target_the_episodes_it_gets_alone(backend):
    """Two targets at once on 2 + 2 envs: each target's episodes equal those of that target alone on 2 envs
    (same seeds, same deterministic policy), in one pass."""
    both = evaluate(_policy(4), "CartPole-v1", [30.0, 80.0], num_episodes=5, seed=4, progress=False,
                    env_backend=backend, split_targets=True)
    assert both.split_targets
    for target, res in zip([30.0, 80.0], both.per_target):
        alone = evaluate(_policy(2), "CartPole-v1", [target], num_episodes=5, seed=4, progress=False)
        assert res.target_return == target
        assert res.episode_lengths == alone.per_target[0].episode_lengths
        assert res.episode_returns == alone.episode_returns


def test_split_targets_needs_an_env_per_target():
    with pytest.raises(DtkitError, match="needs at least one env per target: num_envs=2 for 3 targets"):
        evaluate(_policy(2), "CartPole-v1", [1.0, 2.0, 3.0], num_episodes=2, progress=False, split_targets=True)
