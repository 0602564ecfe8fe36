"""Shared fixtures: every test gets its own MINARI_DATASETS_PATH, few torch threads,
and a factory for tiny local Minari datasets."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def minari_root(tmp_path_factory, monkeypatch):
    """Point Minari at a fresh temporary folder so tests never touch ~/.minari."""
    root = tmp_path_factory.mktemp("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def random_episodes(env: gym.Env, n_episodes: int, seed: int = 0, max_steps: int | None = None) -> list:
    """Uniform-random episodes as minari EpisodeBuffers."""
    from minari.data_collector.episode_buffer import EpisodeBuffer

    env.action_space.seed(seed)
    eps = []
    for i in range(n_episodes):
        o, _ = env.reset(seed=seed + i)
        obs, acts, rews, terms, truncs = [o], [], [], [], []
        while True:
            a = env.action_space.sample()
            o, r, te, tr, _ = env.step(a)
            obs.append(o), acts.append(a), rews.append(r), terms.append(te), truncs.append(tr)
            if te or tr or (max_steps is not None and len(acts) >= max_steps):
                truncs[-1] = truncs[-1] or not te
                break
        eps.append(EpisodeBuffer(id=i, observations=np.array(obs), actions=np.array(acts), rewards=np.array(rews, dtype=np.float64),
                                 terminations=np.array(terms), truncations=np.array(truncs), infos={}))
    return eps


@pytest.fixture
def make_dataset():
    """make_dataset(env_id, n_episodes, dataset_id=None, refs=True, max_steps=None) -> dataset id."""
    import minari

    def make(env_id: str, n_episodes: int = 5, dataset_id: str | None = None, refs: bool = True,
             max_steps: int | None = None, seed: int = 0) -> str:
        dataset_id = dataset_id or f"test/{env_id.split('-')[0].lower()}/random-v0"
        env = gym.make(env_id)
        eps = random_episodes(env, n_episodes, seed, max_steps)
        kw = {"ref_min_score": 0.0, "ref_max_score": 100.0} if refs else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            minari.create_dataset_from_buffers(dataset_id, eps, env=env_id, algorithm_name="random", author="tests",
                                               author_email="tests@dtkit.local", code_permalink="tests", description="tiny",
                                               data_format="hdf5", **kw)
        return dataset_id

    return make
