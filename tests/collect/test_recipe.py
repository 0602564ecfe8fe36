"""Recipes are data: every shipped one parses, and every mistake names its field."""

from __future__ import annotations

import copy
import re

import pytest

from dtkit.collect import CollectConfig, list_recipes, load_recipe, parse_recipe, read_index, recipe_dir, resolve_recipe
from dtkit.collect.train import train_run
from dtkit.errors import DtkitError


@pytest.mark.parametrize("name", list_recipes())
def test_shipped_recipes_parse(name):
    r = load_recipe(name)
    assert r.name == name and r.tiers


def test_cartpole_recipe_and_shipped_policies_match():
    r = load_recipe("cartpole")
    assert r.env_id == "CartPole-v1" and r.dataset_id == "dtkit/cartpole/mixed-v0"
    assert [t.policy for t in r.tiers] == ["random", "medium", "expert"]
    shipped = recipe_dir() / "policies" / "cartpole"
    index = read_index(shipped)
    assert index is not None, "shipped CartPole policies are missing"
    # The shipped policies were trained the way the recipe says, and are complete.
    assert index.run == train_run(r.env_id, r.train, r.seed)
    assert index.trained_steps >= r.train.steps
    zips = sorted(shipped.glob("*.zip"))
    assert sorted(c.file for c in index.checkpoints) == [z.name for z in zips]
    assert sum(z.stat().st_size for z in zips) < 400_000


@pytest.mark.parametrize("name", ["hopper", "halfcheetah", "walker2d"])
def test_shipped_mujoco_policies_hold_every_tier(name):
    """medium and expert zips, and the replay chunks that rebuild medium-replay (every step up to medium)."""
    from dtkit.collect.replay import replay_episodes

    r = load_recipe(name)
    shipped = recipe_dir() / "policies" / name
    index = read_index(shipped)
    assert index is not None, f"shipped {name} policies are missing"
    assert index.run == train_run(r.env_id, r.train, r.seed) and index.trained_steps >= r.train.steps
    assert sorted(c.file for c in index.checkpoints) == sorted(z.name for z in shipped.glob("*.zip"))
    medium, expert = sorted(index.checkpoints, key=lambda c: c.return_stoch)
    assert medium.return_stoch < 0.5 * expert.return_stoch  # medium is about a third of the expert
    episodes = replay_episodes(shipped, medium.steps)
    assert sum(len(e.actions) for e in episodes) == medium.steps


def test_unknown_recipe_lists_known_ones():
    with pytest.raises(DtkitError, match=r"unknown recipe 'cartpol'.*cartpole"):
        load_recipe("cartpol")


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d.pop("env_id"), "env_id"),
        (lambda d: d["train"].pop("algo"), "train.algo"),
        (lambda d: d["train"].update(steps="many"), "train.steps"),
        (lambda d: d["train"].update(steps=True), "train.steps"),
        (lambda d: d["train"].update(algo="a2c"), "train.algo"),
        (lambda d: d["train"].update(stepz=5), "train.stepz"),
        (lambda d: d.update(sead=3), "sead"),
        (lambda d: d["tiers"][1].pop("fraction"), "tiers[1].fraction"),
        (lambda d: d["tiers"][1].update(fraction=3.0), "tiers[1].fraction"),
        (lambda d: d["tiers"][0].update(transitions=10), "tiers[0].episodes"),
        (lambda d: d["tiers"][2].update(policy="best"), "tiers[2].policy"),
        (lambda d: d["tiers"][2].update(checkpoint="last"), "tiers[2].checkpoint"),
    ],
)
def test_bad_field_is_named(edit, field, tiny):
    data = copy.deepcopy(tiny.CARTPOLE)
    edit(data)
    with pytest.raises(DtkitError, match=re.escape(f"`{field}`")):
        parse_recipe(data, name="bad")


def test_bad_toml_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("env_id = \n")
    with pytest.raises(DtkitError, match="invalid TOML"):
        load_recipe(path)


def test_cli_overrides_and_short_tiers():
    r = resolve_recipe(CollectConfig(recipe="cartpole", train_steps=5000, seed=3,
                                     tiers=("random:10", "medium@0.5:2000t", "expert@final:4")))
    assert r.train.steps == 5000 and r.seed == 3 and r.train.hyperparams  # same algo keeps its hyperparameters
    random, medium, expert = r.tiers
    assert random.episodes == 10
    assert medium.transitions == 2000 and medium.fraction == 0.5 and not medium.deterministic
    assert expert.checkpoint == "final" and expert.deterministic
    # Another algorithm does not inherit PPO's hyperparameters.
    assert resolve_recipe(CollectConfig(recipe="cartpole", algo="dqn")).train.hyperparams == {}
    r = resolve_recipe(CollectConfig(env_id="Pendulum-v1", algo="sac"))
    assert r.dataset_id == "dtkit/pendulum/mixed-v0" and r.train.algo == "sac"
    for bad in ("expert:x", "good:3", "random@2:3", "medium:0", "medium@1.5:3", "expert@last:3"):
        with pytest.raises(DtkitError, match="bad tier"):
            resolve_recipe(CollectConfig(env_id="CartPole-v1", tiers=(bad,)))
    with pytest.raises(DtkitError, match="--env-id"):
        resolve_recipe(CollectConfig())


def test_config_is_a_typed_cli():
    tyro = pytest.importorskip("tyro")
    cfg = tyro.cli(CollectConfig, args=["--recipe", "cartpole", "--tiers", "random:5", "expert:3", "--force"])
    assert cfg.tiers == ("random:5", "expert:3") and cfg.force and cfg.algo is None
    with pytest.raises(DtkitError, match="at most once"):
        resolve_recipe(CollectConfig(recipe="cartpole", tiers=("random:5", "random:3")))
