"""Recipes are data: every shipped one parses, and every mistake names its field."""

from __future__ import annotations

import copy
import dataclasses
import re
import typing
from pathlib import Path

import pytest

from dtkit.collect import (
    DatasetSpec,
    Recipe,
    TierSpec,
    TrainSpec,
    list_recipes,
    load_recipe,
    parse_recipe,
    read_index,
    recipe_dir,
)
from dtkit.collect.build import default_policy_dir
from dtkit.collect.schema import RecipeError, from_table
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
        (lambda d: d["tiers"][0].update(transitions=10), "tiers[0].transitions"),
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


# Each row: an edit of datasets/cartpole.toml's text, the key the error must name, and words of the fix.
BAD_FILES = {
    "unknown key": (("steps = 100_000", "stepz = 100_000"), "train.stepz", "did you mean `steps`"),
    "unknown top-level key": (("seed = 0", "sead = 0"), "sead", "did you mean `seed`"),
    "missing required": (('env_id = "CartPole-v1"', ""), "env_id", "is missing; add it (a string)"),
    "wrong type": (("episodes = 60", 'episodes = "sixty"'), "tiers[0].episodes", "must be an integer"),
    "bool is not an int": (("n_envs = 8", "n_envs = true"), "train.n_envs", "must be an integer"),
    "out of bounds": (("fraction = 0.3", "fraction = 3.0"), "tiers[1].fraction", "must be in [0, 1]"),
    "not positive": (("checkpoint_every = 4_096", "checkpoint_every = 0"), "train.checkpoint_every",
                     "a positive integer"),
    "not a choice": (('algo = "ppo"', 'algo = "a2c"'), "train.algo", "one of 'ppo', 'sac', 'dqn'"),
    "wrong type in a list": (('name = "random"', "name = 7"), "tiers[0].name", "must be a string"),
    "across fields": (("fraction = 0.3", ""), "tiers[1].fraction", "needs `fraction`"),
    "across tables": (('algo = "ppo"', 'algo = "ppo"\nexpert = "a.b:C"'), "train.expert", "not a known key"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_recipe_file_is_one_error_line(case, tmp_path, capsys, minari_root):
    """Through the CLI: exit 2, one line naming the recipe file, the key and the fix, and nothing written."""
    from dtkit.cli import main

    (old, new), key, words = BAD_FILES[case]
    text = (recipe_dir() / "cartpole.toml").read_text()
    assert old in text
    path = tmp_path / "mine.toml"
    path.write_text(text.replace(old, new, 1))
    assert main(["datasets", "build", str(path), "--no-progress", "--policy-dir", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"dtkit: error: recipe {path}: `{key}` "), err
    assert words in err[0] and "Traceback" not in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.toml"] and not any(minari_root.iterdir())


@pytest.mark.parametrize("cls", [Recipe, TrainSpec, TierSpec, DatasetSpec])
def test_every_field_is_type_checked(cls):
    """The reader is driven by the dataclass fields: a value of the wrong type is refused for each one."""
    tables = {Recipe: {"name": "r", "env_id": "E-v0", "dataset_id": "a/b-v0", "tiers": [{"episodes": 1}],
                       "train": {"algo": "ppo", "steps": 1, "checkpoint_every": 1}},
              TrainSpec: {"algo": "ppo", "steps": 1, "checkpoint_every": 1},
              TierSpec: {"episodes": 1}, DatasetSpec: {"id": "a/b-v0", "tiers": ["t"]}}
    assert from_table(cls, tables[cls])  # the table is valid as it is
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        wrong = 5 if typing.get_origin(hints[f.name]) is tuple else [5]
        with pytest.raises(RecipeError) as err:
            from_table(cls, {**tables[cls], f.name: wrong}, "x")
        assert err.value.key.startswith(f"x.{f.name}"), (f.name, str(err.value))


def test_overrides_are_checked_like_the_file():
    r = load_recipe("cartpole", ["train.steps=5000", "seed=3", "tiers[0].episodes=10", "env_id=Acrobot-v1",
                                 "tiers[1].fraction=0.5", "train.hyperparams={}"])
    assert (r.train.steps, r.seed, r.tiers[0].episodes, r.env_id) == (5000, 3, 10, "Acrobot-v1")
    assert r.tiers[1].fraction == 0.5 and r.train.hyperparams == {} and r.train.algo == "ppo"
    assert load_recipe("cartpole").train.steps == 100_000  # the file is untouched
    for bad, words in [("train.steps=0", "`train.steps` must be a positive integer"),
                       ("tiers[7].episodes=1", "`tiers[7].episodes` does not exist"),
                       ("train.stepz=1", "`train.stepz` is not a known key"),
                       ("train=3", "`train` must be a table"),
                       ("steps", "write KEY=VALUE")]:
        with pytest.raises(DtkitError, match=re.escape(words)):
            load_recipe("cartpole", [bad])


def test_collect_is_a_deprecated_alias_of_datasets_build(capsys):
    from dtkit.cli import main
    from dtkit.collect.catalog import collect_argv

    assert collect_argv(["--force", "--recipe", "cartpole", "--no-progress"]) == [
        "datasets", "build", "--force", "cartpole", "--no-progress"]
    assert main(["collect", "--recipe", "nosuch", "--no-progress"]) == 2
    notice, error = capsys.readouterr().err.strip().splitlines()
    assert "deprecated" in notice and "dtkit datasets build" in notice and "unknown recipe 'nosuch'" in error
    for flag, key in [("--env-id", "env_id"), ("--train-steps", "train.steps"), ("--tiers", "tiers"),
                      ("--checkpoint-every", "train.checkpoint_every")]:
        assert main(["collect", "--recipe", "cartpole", flag, "1"]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("dtkit: error:") and f"dtkit datasets build RECIPE --set {key}=VALUE" in line


def test_fingerprint_covers_the_envs_registered_kwargs(tiny):
    """Re-registering an env with other kwargs makes its datasets stale; envs without kwargs hash as before."""
    import gymnasium as gym

    from dtkit.collect.recipe import registered_env_kwargs

    def fingerprint(kwargs: dict) -> tuple[str, Path]:
        """The recipe's fingerprint and its SB3 policy folder in the cache, with the env registered with kwargs."""
        gym.register("h10d_fp/CartPole-v1", entry_point="gymnasium.envs.classic_control:CartPoleEnv", kwargs=kwargs)
        try:
            r = tiny.recipe(tiny.CARTPOLE, env_id="h10d_fp/CartPole-v1")
            return r.fingerprint(), default_policy_dir(r)
        finally:
            del gym.registry["h10d_fp/CartPole-v1"]

    small, large = fingerprint({"sutton_barto_reward": False}), fingerprint({"sutton_barto_reward": True})
    # the dataset goes stale, and a policy trained on the other env is never reused from the cache
    assert small[0] != large[0] and small[1] != large[1]
    assert fingerprint({"sutton_barto_reward": False}) == small
    assert registered_env_kwargs("dtkit/DoorKey-5x5-RGB-v0") == {"size": 5, "tile_size": 8, "max_steps": 100}
    # CartPole-v1 registers no kwargs: the value recorded before kwargs were hashed (see also
    # test_one_dataset_recipes_keep_their_fingerprint for the shipped cartpole recipe)
    assert registered_env_kwargs("CartPole-v1") == {}
    assert load_recipe("hopper").fingerprint(load_recipe("hopper").outputs()[0]) == "e8a259f5932fa192"
