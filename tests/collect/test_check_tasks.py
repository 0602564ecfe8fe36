"""The two tasks outside the suite that check the training defaults (issue 9): Acrobot (discrete), Pendulum (continuous)."""

from __future__ import annotations

import pytest

from dtkit.cli import main
from dtkit.collect import load_recipe, read_card
from dtkit.data import load_trajectories

TASKS = {"acrobot": ("Acrobot-v1", "ppo", "dtkit/acrobot/mixed-v0"), "pendulum": ("Pendulum-v1", "sac", "dtkit/pendulum/mixed-v0")}


@pytest.fixture
def tiny_cache(tmp_path, monkeypatch):
    """--tiny builds train into the user cache: keep it inside the test's folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "cache"


@pytest.mark.parametrize("name", sorted(TASKS))
def test_recipe_is_a_mixed_quality_dataset(name):
    env_id, algo, dataset_id = TASKS[name]
    r = load_recipe(name)
    assert (r.env_id, r.train.algo, r.dataset_id) == (env_id, algo, dataset_id)
    assert [t.policy for t in r.tiers] == ["random", "medium", "expert"]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_tiny_build_then_load(name, tiny_cache, capsys):
    _, _, dataset_id = TASKS[name]
    tiny_id = dataset_id.replace("dtkit/", "dtkit-tiny/")
    assert main(["datasets", "build", name, "--tiny", "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"dataset ready: {tiny_id}"]
    card = read_card(tiny_id)
    assert card["ref_min_score"] is not None and card["ref_max_score"] is not None
    traj = load_trajectories(tiny_id)
    assert traj.num_episodes >= 3 and traj.actions.shape[0] == traj.num_steps


@pytest.mark.parametrize("name", sorted(TASKS))
def test_shipped_policies_match_the_recipe_and_stay_small(name):
    from dtkit.collect import read_index, recipe_dir
    from dtkit.collect.train import train_run

    shipped = recipe_dir() / "policies" / name
    if not shipped.is_dir():
        pytest.skip(f"no shipped {name} policies: dtkit datasets build {name} trains them")
    r = load_recipe(name)
    index = read_index(shipped)
    assert index is not None and index.run == train_run(r.env_id, r.train, r.seed)
    assert index.trained_steps >= r.train.steps
    zips = sorted(shipped.glob("*.zip"))
    assert sorted(c.file for c in index.checkpoints) == [z.name for z in zips] and len(zips) == 2  # medium, expert
    assert all(z.stat().st_size < 1_000_000 for z in zips)  # the tracked tree stays small
