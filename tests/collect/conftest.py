"""Fixtures for the collect tests: tiny recipes (a few hundred training steps, a few
episodes) and a CartPole PPO policy folder trained once per session."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import minari
import numpy as np
import pytest

from dtkit.collect import Recipe, parse_recipe, train_behaviour

CARTPOLE: dict[str, Any] = {
    "env_id": "CartPole-v1",
    "dataset_id": "test/cartpole/tiny-v0",
    "seed": 0,
    "ref_episodes": 3,
    "train": {
        "algo": "ppo",
        "steps": 256,
        "checkpoint_every": 128,
        "eval_episodes": 2,
        "hyperparams": {"n_steps": 64, "batch_size": 64, "n_epochs": 1},
    },
    "tiers": [
        {"name": "random", "policy": "random", "episodes": 3},
        {"name": "medium", "policy": "medium", "fraction": 0.3, "episodes": 2},
        {"name": "expert", "policy": "expert", "transitions": 60},
    ],
}

PENDULUM: dict[str, Any] = {
    "env_id": "Pendulum-v1",
    "dataset_id": "test/pendulum/tiny-v0",
    "seed": 1,
    "ref_episodes": 1,
    "train": {
        "algo": "sac",
        "steps": 100,
        "checkpoint_every": 50,
        "eval_episodes": 1,
        "hyperparams": {"learning_starts": 20, "batch_size": 16, "buffer_size": 1000,
                        "policy_kwargs": {"net_arch": [16, 16]}},
    },
    "tiers": [
        {"name": "random", "policy": "random", "episodes": 1},
        {"name": "medium", "policy": "medium", "target_return": -1000.0, "episodes": 1},
        {"name": "expert", "policy": "expert", "checkpoint": "final", "deterministic": False, "episodes": 2},
    ],
}


def recipe(base: dict[str, Any], **top: Any) -> Recipe:
    """``base`` with top-level fields replaced, parsed like a TOML recipe."""
    data = copy.deepcopy(base)
    data.update(top)
    return parse_recipe(data, name="tiny")


def episodes(dataset_id: str) -> list[tuple[np.ndarray, ...]]:
    """Every episode's arrays, for exact comparisons."""
    ds = minari.load_dataset(dataset_id)
    return [(e.observations, e.actions, e.rewards, e.terminations, e.truncations) for e in ds.iterate_episodes()]


def same_episodes(a: list[tuple[np.ndarray, ...]], b: list[tuple[np.ndarray, ...]]) -> bool:
    return len(a) == len(b) and all(
        all(np.array_equal(x, y) for x, y in zip(ea, eb)) for ea, eb in zip(a, b)
    )


@pytest.fixture
def tiny() -> SimpleNamespace:
    """The tiny recipes and helpers above (a conftest cannot be imported by name)."""
    return SimpleNamespace(CARTPOLE=CARTPOLE, PENDULUM=PENDULUM, recipe=recipe, episodes=episodes,
                           same_episodes=same_episodes)


@pytest.fixture(scope="session")
def _trained_cartpole(tmp_path_factory) -> Path:
    r = recipe(CARTPOLE)
    path = tmp_path_factory.mktemp("policies") / "cartpole"
    train_behaviour(r.env_id, r.train, path, seed=r.seed)
    return path


@pytest.fixture
def cartpole_policies(_trained_cartpole, tmp_path) -> Path:
    """A private copy of the session's tiny CartPole policy folder (tests may prune it)."""
    return Path(shutil.copytree(_trained_cartpole, tmp_path / "policies"))


@pytest.fixture
def kill_sac_on_second_chunk(monkeypatch):
    """Call it to make SAC.learn raise KeyboardInterrupt on its second call: a crash after the first checkpoint."""
    from stable_baselines3 import SAC

    def patch() -> None:
        real, calls = SAC.learn, []

        def killed_on_second_chunk(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return real(self, *args, **kwargs)

        monkeypatch.setattr(SAC, "learn", killed_on_second_chunk)

    return patch
