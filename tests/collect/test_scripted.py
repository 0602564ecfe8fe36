"""Scripted-expert recipes: parsing, streaming build, lossless images."""

from __future__ import annotations

import re

import minari
import numpy as np
import pytest

from dtkit.collect import build_recipe, load_recipe, parse_recipe, tiny_recipe
from dtkit.errors import DtkitError

DOORKEY = {
    "env_id": "dtkit/DoorKey-5x5-RGB-v0",
    "dataset_id": "test/doorkey/tiny-v0",
    "expert": "dtkit.envs.minigrid_rgb:DoorKeyExpert",
    "ref_episodes": 2,
    "tiers": [
        {"name": "random", "policy": "random", "episodes": 2},
        {"name": "noisy", "epsilon": 0.3, "episodes": 3},
    ],
}


def _recipe(**top):
    return parse_recipe({**DOORKEY, **top}, name="tiny")


@pytest.mark.parametrize(
    "change, words",
    [
        ({"train": {"algo": "ppo", "steps": 1, "checkpoint_every": 1}}, "cannot be combined with `expert`"),
        ({"expert": "no_colon"}, "package.module:ClassName"),
        ({"tiers": [{"name": "m", "policy": "medium", "fraction": 0.3, "episodes": 1}]}, "'expert' or 'random'"),
        ({"tiers": [{"name": "x", "epsilon": 1.5, "episodes": 1}]}, "epsilon"),
        ({"tiers": [{"name": "x", "fraction": 0.3, "episodes": 1}]}, "`tiers[0].fraction` only applies to medium"),
        ({"tiers": [{"name": "x", "epsilonn": 0.3, "episodes": 1}]}, "`tiers[0].epsilonn` is not a known key"),
        ({"jpeg": "yes"}, "jpeg"),
    ],
)
def test_bad_scripted_recipes_name_the_field(change, words):
    with pytest.raises(DtkitError, match=re.escape(words)):
        _recipe(**change)


@pytest.mark.parametrize("expert, words", [("dtkit.envs.minigrid_rgb:Nope", "could not be loaded"),
                                           ("dtkit.collect.record:RecordEpisodes", "lacks act")])
def test_bad_expert_class_is_one_clear_error(expert, words):
    from dtkit.collect.build import build_datasets

    with pytest.raises(DtkitError, match=words):
        build_datasets(_recipe(expert=expert), ".")


def test_scripted_build_is_lossless_streamed_and_reproducible(monkeypatch):
    from dtkit.envs.minigrid_rgb import DoorKeyExpert
    from minari.dataset._storages.hdf5_storage import HDF5Storage

    from dtkit.collect.build import build_datasets
    from dtkit.collect.episodes import TIER_RNG_STREAM, TIER_STREAM, episode_seed
    from dtkit.collect.record import RecordEpisodes
    from dtkit.collect.scripted import run_scripted_episode
    from dtkit.collect.writer import DatasetStream
    from dtkit.gym_env import make_env

    writes = []
    real = HDF5Storage.update_episodes
    monkeypatch.setattr(DatasetStream, "FLUSH_STEPS", 1)  # every episode goes to disk as it ends
    monkeypatch.setattr(HDF5Storage, "update_episodes", lambda self, eps: (writes.append(len(eps)), real(self, eps))[1])
    recipe = _recipe()
    assert build_datasets(recipe, ".") == ["test/doorkey/tiny-v0"]
    assert writes.count(1) == 5  # one write per episode, never a whole tier

    ds = minari.load_dataset("test/doorkey/tiny-v0")
    assert ds.storage.metadata["jpeg_encoding"] is False
    tiers = [m["tier"] for m in ds.storage.get_episode_metadata(range(ds.total_episodes))]
    assert tiers == ["random"] * 2 + ["noisy"] * 3
    # Replaying noisy episode 1 from its seeds gives the stored frames bit for bit.
    replayed = []
    env = RecordEpisodes(make_env(recipe.env_id), replayed.append)
    run_scripted_episode(env, DoorKeyExpert, 0.3, episode_seed(0, TIER_STREAM, 1, 1), episode_seed(0, TIER_RNG_STREAM, 1, 1))
    stored = list(ds.iterate_episodes())[3]
    assert stored.observations.dtype == np.uint8 and stored.observations.shape[1:] == (40, 40, 3)
    assert np.array_equal(stored.observations, replayed[0].observations)
    assert np.array_equal(stored.actions, replayed[0].actions)
    meta = ds.storage.metadata
    assert meta["ref_max_score"] > meta["ref_min_score"] >= 0.0


def test_jpeg_only_when_the_recipe_asks():
    from dtkit.collect.build import build_datasets

    build_datasets(_recipe(jpeg=True, tiers=[{"name": "e", "episodes": 1}]), ".")
    assert minari.load_dataset("test/doorkey/tiny-v0").storage.metadata["jpeg_encoding"] is True


def test_doorkey_recipe_tiny_build_in_seconds():
    assert load_recipe("doorkey").scripted
    ids = build_recipe("doorkey", tiny=True, progress=False)
    assert ids == [tiny_recipe(load_recipe("doorkey")).dataset_id]
    ds = minari.load_dataset(ids[0])
    assert ds.total_episodes == 6 and ds.observation_space.dtype == np.uint8


def test_tiny_pixel_recipe_built_and_trained_end_to_end(tmp_path):
    """The DoorKey recipe at --tiny size: scripted build, lazy images, the default image encoder, evaluation."""
    from dtkit.data import LazyObs, load_trajectories
    from dtkit.model import ModelConfig
    from dtkit.trainer import TrainConfig, train

    (dataset_id,) = build_recipe("doorkey", tiny=True, progress=False)
    assert isinstance(load_trajectories(dataset_id).obs["obs"], LazyObs)
    result = train(TrainConfig(dataset=dataset_id, steps=3, batch_size=4, context_len=4, eval_episodes=2, eval_envs=2,
                               checkpoint_every=3, run_dir=str(tmp_path / "run"), progress=False, target_returns=(0.9,),
                               model=ModelConfig(d_model=16, n_layer=1)), progress=False)
    assert result.steps == 3 and np.isfinite(result.final_loss)
    assert result.report is not None and len(result.report.episode_returns) == 2
