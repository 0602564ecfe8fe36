"""End to end: tiny recipes train, roll out and land as loadable Minari datasets."""

from __future__ import annotations

import os
import sys
from collections import Counter

import gymnasium as gym
import minari
import numpy as np
import pytest

from dtkit.collect import build_datasets, build_recipe, read_index
from dtkit.errors import DtkitError


def _tiers(dataset) -> Counter:
    return Counter(m["tier"] for m in dataset.storage.get_episode_metadata(range(dataset.total_episodes)))


def test_cartpole_ppo_end_to_end(tiny, cartpole_policies):
    r = tiny.recipe(tiny.CARTPOLE)
    assert build_datasets(r, cartpole_policies) == [r.dataset_id]
    ds = minari.load_dataset(r.dataset_id)
    meta = ds.storage.metadata
    assert meta["ref_min_score"] < meta["ref_max_score"]
    assert meta["author"] == {"dtkit"} and meta["algorithm_name"].startswith("SB3-PPO")
    counts = _tiers(ds)
    assert counts["random"] == 3 and counts["medium"] == 2
    expert = meta["dtkit"]["tiers"][2]
    assert expert["steps"] >= 60 and expert["steps"] - 500 < 60  # whole episodes, just past 60 steps
    assert ds.total_steps == sum(t["steps"] for t in meta["dtkit"]["tiers"])
    for ep in ds.iterate_episodes():
        assert ep.observations.shape == (len(ep.rewards) + 1, 4)
        assert ep.terminations[-1] or ep.truncations[-1]
    assert "jax" not in sys.modules  # minari.DataCollector would pull in jax (~500 MB)
    assert r.dataset_id in minari.list_local_datasets()


def test_pendulum_sac_box_actions(tiny, tmp_path):
    r = tiny.recipe(tiny.PENDULUM)
    build_datasets(r, tmp_path / "policies")
    ds = minari.load_dataset(r.dataset_id)
    space = gym.make("Pendulum-v1").action_space
    assert _tiers(ds) == {"random": 1, "medium": 1, "expert": 2}
    for ep in ds.iterate_episodes():
        assert ep.actions.shape == (200, 1) and ep.actions.dtype == np.float32
        assert np.all(ep.actions >= space.low) and np.all(ep.actions <= space.high)
    assert "ref_min_score" in ds.storage.metadata and "ref_max_score" in ds.storage.metadata
    assert not list((tmp_path / "policies").glob(".replay_buffer*"))  # dropped once training is complete


def test_existing_dataset_is_reused_or_refused(tiny, cartpole_policies, minari_root):
    r = tiny.recipe(tiny.CARTPOLE)
    build_datasets(r, cartpole_policies)
    data = minari_root / r.dataset_id / "data" / "main_data.hdf5"
    mtime = data.stat().st_mtime_ns
    assert build_datasets(r, cartpole_policies) == [r.dataset_id]  # same recipe: returned as is
    assert data.stat().st_mtime_ns == mtime
    other = tiny.recipe(tiny.CARTPOLE, ref_episodes=4)
    with pytest.raises(DtkitError, match="force"):
        build_datasets(other, cartpole_policies)
    build_datasets(other, cartpole_policies, force=True)
    assert minari.load_dataset(r.dataset_id).storage.metadata["num_episodes_average_score"] == 4
    assert [p.name for p in minari_root.iterdir() if p.name.startswith(".")] == []


def test_failure_mid_write_leaves_no_dataset(tiny, cartpole_policies, minari_root, monkeypatch):
    from minari.dataset._storages.hdf5_storage import HDF5Storage

    real = HDF5Storage.update_episodes

    def write_then_crash(self, episodes):
        real(self, list(episodes)[:2])  # half the data really reaches the disk
        raise RuntimeError("disk full")

    monkeypatch.setattr(HDF5Storage, "update_episodes", write_then_crash)
    r = tiny.recipe(tiny.CARTPOLE)
    with pytest.raises(RuntimeError, match="disk full"):
        build_datasets(r, cartpole_policies)
    assert list(minari_root.iterdir()) == []  # no dataset, no namespace, no staging left behind
    assert minari.list_local_datasets() == {}
    assert os.environ["MINARI_DATASETS_PATH"] == str(minari_root)
    monkeypatch.undo()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_root))
    build_datasets(r, cartpole_policies)  # and a retry succeeds
    assert minari.load_dataset(r.dataset_id).total_episodes > 0


def test_same_seed_same_data(tiny, cartpole_policies, minari_root, tmp_path, monkeypatch):
    r = tiny.recipe(tiny.CARTPOLE)
    build_datasets(r, cartpole_policies)
    first = tiny.episodes(r.dataset_id)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "second"))
    build_datasets(r, cartpole_policies)
    assert tiny.same_episodes(first, tiny.episodes(r.dataset_id))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "third"))
    build_datasets(tiny.recipe(tiny.CARTPOLE, seed=7), tmp_path / "seed7")  # a new seed trains anew
    assert not tiny.same_episodes(first, tiny.episodes(r.dataset_id))


def test_pruned_policies_rebuild_the_same_dataset(tiny, cartpole_policies, tmp_path, monkeypatch):
    data = dict(tiny.CARTPOLE, train=dict(tiny.CARTPOLE["train"], prune=True))
    r = tiny.recipe(data)
    assert len(read_index(cartpole_policies).checkpoints) == 2
    build_datasets(r, cartpole_policies)
    first = tiny.episodes(r.dataset_id)
    index = read_index(cartpole_policies)
    kept = {c.file for c in index.checkpoints}
    assert kept == {p.name for p in cartpole_policies.glob("*.zip")}
    assert index.trained_steps >= r.train.steps  # still counts as fully trained: no retraining
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "again"))
    build_datasets(r, cartpole_policies)
    assert tiny.same_episodes(first, tiny.episodes(r.dataset_id))


def test_build_recipe_from_toml_path_with_overrides(tiny, tmp_path):
    toml = tmp_path / "mine.toml"
    toml.write_text(
        'env_id = "CartPole-v1"\ndataset_id = "me/cartpole/toml-v0"\nref_episodes = 2\n'
        '[train]\nalgo = "ppo"\nsteps = 64\ncheckpoint_every = 64\neval_episodes = 1\n'
        '[train.hyperparams]\nn_steps = 64\nbatch_size = 32\nn_epochs = 1\n'
        '[[tiers]]\npolicy = "random"\nepisodes = 2\n'
        '[[tiers]]\npolicy = "expert"\nepisodes = 1\n'
    )
    ids = build_recipe(toml, policy_dir=tmp_path / "p", progress=False, overrides=["tiers[0].episodes=4"])
    assert ids == ["me/cartpole/toml-v0"]
    assert minari.load_dataset("me/cartpole/toml-v0").total_episodes == 5


def test_sb3_tiers_are_streamed_episode_by_episode(tiny, cartpole_policies, monkeypatch):
    """Each finished episode goes to disk once earlier ones have; the build never holds a tier."""
    from minari.dataset._storages.hdf5_storage import HDF5Storage

    from dtkit.collect.writer import DatasetStream

    writes: list[int] = []
    real = HDF5Storage.update_episodes
    monkeypatch.setattr(DatasetStream, "FLUSH_STEPS", 1)
    monkeypatch.setattr(HDF5Storage, "update_episodes", lambda self, eps: (writes.append(len(eps)), real(self, eps))[1])
    r = tiny.recipe(tiny.CARTPOLE)
    build_datasets(r, cartpole_policies)
    n = minari.load_dataset(r.dataset_id).total_episodes
    assert writes.count(1) == n and sum(writes) == n  # one write per episode (plus the empty create)


RECIPE_ENV_MODULE = '''
"""A user's module: an env registered on import, and a scripted expert for it."""
import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
    observation_space = gym.spaces.Box(-10.0, 10.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = 0.0
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.x += 1.0 if action == 1 else -1.0
        return np.array([self.x], np.float32), float(action == 1), abs(self.x) >= 3, False, {}


class GoRight:
    def __init__(self, env):
        pass

    def reset(self, obs, info):
        pass

    def act(self, obs, info):
        return 1


gym.register("h10d/Corridor-v0", entry_point="h10d_recipe_env:Corridor", max_episode_steps=20)
'''


def test_module_colon_env_id_builds_and_the_dataset_remakes_its_env(tmp_path, monkeypatch):
    """`env_id = "module:Env-v0"` imports the module before Minari looks the id up, and the dataset records
    the spec a fresh process remakes the env from (the entry point names the module)."""
    import json
    import subprocess

    (tmp_path / "h10d_recipe_env.py").write_text(RECIPE_ENV_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    toml = tmp_path / "corridor.toml"
    toml.write_text('env_id = "h10d_recipe_env:h10d/Corridor-v0"\ndataset_id = "me/corridor/scripted-v0"\n'
                    'expert = "h10d_recipe_env:GoRight"\nref_episodes = 1\n'
                    '[[tiers]]\npolicy = "random"\nepisodes = 2\n[[tiers]]\nname = "expert"\nepisodes = 1\n')
    assert build_recipe(toml, progress=False) == ["me/corridor/scripted-v0"]
    ds = minari.load_dataset("me/corridor/scripted-v0")
    assert ds.total_episodes == 3 and ds.env_spec.id == "h10d/Corridor-v0"
    # A new process, with the module importable but never imported by name: the recorded spec brings the env back.
    code = ("import minari; env = minari.load_dataset('me/corridor/scripted-v0').recover_environment(); "
            "print(env.spec.id, env.reset(seed=0)[0].tolist())")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[0] == "h10d/Corridor-v0"
    assert json.loads(proc.stdout.split(maxsplit=1)[1]) == [0.0]
