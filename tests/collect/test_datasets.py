"""Several datasets from one recipe, the medium-replay tier, data cards and ``dtkit datasets``."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import minari
import numpy as np
import pytest

from dtkit.cli import main
from dtkit.collect import build_datasets, load_recipe, parse_recipe, read_card, read_index, replay_episodes
from dtkit.collect.card import CARD_JSON, CARD_MD
from dtkit.collect.catalog import tiny_recipe
from dtkit.errors import DtkitError

MUJOCO = ("hopper", "halfcheetah", "walker2d")


def _multi(base: dict) -> dict:
    """``base`` (the tiny Pendulum SAC recipe) as D4RL-style datasets with a medium-replay tier."""
    data = copy.deepcopy(base)
    data.pop("dataset_id")
    data["tiers"].insert(2, {"name": "medium-replay", "policy": "medium-replay", "target_return": -1000.0})
    data["datasets"] = [
        {"id": "test/pendulum/random-v0", "tiers": ["random"]},
        {"id": "test/pendulum/medium-replay-v0", "tiers": ["medium-replay"]},
        {"id": "test/pendulum/expert-v0", "tiers": ["expert"]},
        {"id": "test/pendulum/medium-expert-v0", "tiers": ["medium", "expert"]},
    ]
    return data


@pytest.fixture
def tiny_cache(tmp_path, monkeypatch) -> Path:
    """--tiny builds train into the user cache: keep it inside the test's folder (and the
    MUJOCO_LOG.TXT that MuJoCo writes into the working directory on model warnings)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "cache"


# --- the recipe format -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d.update(dataset_id="x/y/z-v0"), "dataset_id"),  # both forms at once
        (lambda d: d.pop("datasets"), "dataset_id"),  # neither
        (lambda d: d.update(datasets=[]), "dataset_id"),
        (lambda d: d["datasets"][1].pop("id"), "datasets[1].id"),
        (lambda d: d["datasets"][0].update(tiers=["medium", "mediun"]), "datasets[0].tiers"),
        (lambda d: d["datasets"][0].update(tiers=[]), "datasets[0].tiers"),
        (lambda d: d["datasets"][0].update(tiers=["random", "random"]), "datasets[0].tiers"),
        (lambda d: d["datasets"][3].update(tierz=["medium"]), "datasets[3].tierz"),
        (lambda d: d["datasets"][3].update(tiers=["expert", "medium"]), "datasets[3].tiers"),  # not the recipe's order
        (lambda d: d["datasets"][2].update(id="test/pendulum/random-v0"), "datasets[].id"),
        (lambda d: d["tiers"][2].update(episodes=3), "tiers[2].episodes"),
        (lambda d: d["tiers"][2].pop("target_return"), "tiers[2].fraction"),
        (lambda d: d["tiers"][2].update(epsilon=0.1), "tiers[2].epsilon"),
        (lambda d: d["train"].update(algo="ppo"), "tiers[2].policy"),  # PPO keeps no replay buffer
    ],
)
def test_multi_dataset_recipe_errors_name_the_field(edit, field, tiny):
    data = _multi(tiny.PENDULUM)
    parse_recipe(data, name="ok")
    edit(data)
    with pytest.raises(DtkitError, match=re.escape(f"`{field}`")):
        parse_recipe(data, name="bad")


def test_one_dataset_recipes_keep_their_fingerprint():
    # The fingerprint is stored in the demo dataset; changing it would make every
    # existing dtkit/cartpole/mixed-v0 look stale.
    r = load_recipe("cartpole")
    assert r.fingerprint() == "709a3559ebc3f43a"
    assert [d.id for d in r.outputs()] == ["dtkit/cartpole/mixed-v0"]
    assert r.outputs()[0].tiers == ("random", "medium", "expert")


def test_dataset_fingerprints_cover_only_their_tiers(tiny):
    r = parse_recipe(_multi(tiny.PENDULUM), name="p")
    other = _multi(tiny.PENDULUM)
    other["tiers"][0]["episodes"] = 5  # the random tier
    r2 = parse_recipe(other, name="p")
    fp = {d.id: r.fingerprint(d) for d in r.outputs()}
    fp2 = {d.id: r2.fingerprint(d) for d in r2.outputs()}
    assert len(set(fp.values())) == 4
    assert [i for i in fp if fp[i] != fp2[i]] == ["test/pendulum/random-v0"]
    with pytest.raises(ValueError):
        r.fingerprint()


@pytest.mark.parametrize("name", MUJOCO)
def test_mujoco_recipes(name):
    r = load_recipe(name)
    assert r.env_id.endswith("-v5") and r.train.algo == "sac" and r.train.steps == 200_000
    assert r.train.hyperparams["buffer_size"] >= r.train.steps  # never wraps: medium-replay sees every step
    assert r.train.hyperparams["learning_starts"] == 10_000  # rl-baselines3-zoo's MuJoCo setting
    assert [d.id for d in r.outputs()] == [
        f"dtkit/{name}/{tier}-v0" for tier in ("random", "medium", "medium-replay", "expert", "medium-expert")
    ]
    assert r.outputs()[-1].tiers == ("medium", "expert")
    tiny_ids = [d.id for d in tiny_recipe(r).outputs()]
    assert tiny_ids[0] == f"dtkit-tiny/{name}/random-v0"


# --- building several datasets -----------------------------------------------------------------


def test_one_recipe_builds_several_datasets(tiny, tmp_path, minari_root):
    r = parse_recipe(_multi(tiny.PENDULUM), name="pendulum")
    ids = build_datasets(r, tmp_path / "policies")
    assert ids == [d.id for d in r.outputs()]
    ds = {i: minari.load_dataset(i) for i in ids}
    refs = {(d.storage.metadata["ref_min_score"], d.storage.metadata["ref_max_score"]) for d in ds.values()}
    assert len(refs) == 1  # one pair of reference scores for the whole recipe, as in D4RL
    # medium-expert holds exactly the medium episodes, then the expert ones of expert-v0
    me = tiny.episodes("test/pendulum/medium-expert-v0")
    assert tiny.same_episodes(me[1:], tiny.episodes("test/pendulum/expert-v0")) and len(me) == 3
    assert ds["test/pendulum/random-v0"].total_episodes == 1
    for i in ids:
        card = read_card(i)
        assert card["dataset_id"] == i and card["episodes"] == ds[i].total_episodes
        assert card["transitions"] == ds[i].total_steps and card["size_bytes"] > 0
        assert card["ref_min_score"] == ds[i].storage.metadata["ref_min_score"]
        assert tuple(t["name"] for t in card["tiers"]) == next(d.tiers for d in r.outputs() if d.id == i)
        assert (minari_root / i / CARD_MD).read_text().startswith(f"# {i}") and (minari_root / i / CARD_JSON).is_file()
    assert sorted(minari.list_local_datasets()) == sorted(ids)  # the card files do not confuse minari

    # Resumable: a lost dataset is rebuilt alone, the others are left as they are.
    kept = minari_root / "test/pendulum/expert-v0" / "data" / "main_data.hdf5"
    mtime = kept.stat().st_mtime_ns
    minari.delete_dataset("test/pendulum/random-v0")
    assert build_datasets(r, tmp_path / "policies") == ids
    assert kept.stat().st_mtime_ns == mtime and minari.load_dataset("test/pendulum/random-v0").total_episodes == 1


def test_medium_replay_is_the_training_data_up_to_medium(tiny, tmp_path):
    r = parse_recipe(_multi(tiny.PENDULUM), name="pendulum")
    build_datasets(r, tmp_path / "policies")
    index = read_index(tmp_path / "policies")
    medium = minari.load_dataset("test/pendulum/medium-replay-v0").storage.metadata["dtkit"]["checkpoints"]
    steps = medium["medium-replay"]["steps"]
    assert steps in (50, 100) and steps in [c.steps for c in index.checkpoints]
    eps = tiny.episodes("test/pendulum/medium-replay-v0")
    assert sum(len(e[2]) for e in eps) == steps

    # Pendulum episodes last 200 steps, so the first 100 training steps are one episode
    # running through both 50-step chunks: it is joined, then cut (truncated) at step 100.
    (ep,) = replay_episodes(tmp_path / "policies", 100)
    assert len(ep) == 100 and ep.truncations[-1] and not ep.truncations[:-1].any() and not ep.terminations.any()
    assert ep.observations.shape == (101, 3)
    # The actions are the ones the env received: SAC stores them scaled to [-1, 1], Pendulum's bounds are +-2.
    assert np.abs(ep.actions).max() <= 2.0 and np.abs(ep.actions).max() > 1.0
    theta = np.arctan2(ep.observations[:-1, 1], ep.observations[:-1, 0])
    reward = -(theta**2 + 0.1 * ep.observations[:-1, 2] ** 2 + 0.001 * ep.actions[:, 0] ** 2)
    np.testing.assert_allclose(ep.rewards, reward, rtol=1e-5, atol=1e-5)
    with pytest.raises(DtkitError, match="replay chunks up to step 75"):
        replay_episodes(tmp_path / "policies", 75)


def test_policies_without_replay_chunks_are_refused(tiny, tmp_path):
    one = tiny.recipe(tiny.PENDULUM)  # the same training, without a medium-replay tier: nothing recorded
    build_datasets(one, tmp_path / "policies")
    with pytest.raises(DtkitError, match="trained without recording"):
        build_datasets(parse_recipe(_multi(tiny.PENDULUM), name="p"), tmp_path / "policies")


def test_failed_training_says_how_to_resume(tiny, tmp_path, monkeypatch):
    from stable_baselines3 import SAC

    real, calls = SAC.learn, []

    def fails_on_second_chunk(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SAC, "learn", fails_on_second_chunk)
    r = parse_recipe(_multi(tiny.PENDULUM), name="p")
    with pytest.raises(DtkitError, match=r"failed after 50 of 100 steps \(RuntimeError: out of memory\).*resume"):
        build_datasets(r, tmp_path / "policies")
    assert minari.list_local_datasets() == {}
    monkeypatch.undo()
    assert len(build_datasets(r, tmp_path / "policies")) == 4  # resumes from the 50-step checkpoint


# --- the command ------------------------------------------------------------------------------


def test_cli_datasets_build_list_info(tiny_cache, capsys):
    assert main(["datasets", "build", "hopper", "--tiny", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [f"dataset ready: dtkit-tiny/hopper/{t}-v0"
                                for t in ("random", "medium", "medium-replay", "expert", "medium-expert")]
    assert any(tiny_cache.rglob("replay-*.npz"))  # trained in the cache, never in datasets/policies
    assert main(["datasets", "list", "--tiny"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"dtkit-tiny/hopper/medium-replay-v0\s+built: \d+ episodes", out)
    assert re.search(r"dtkit-tiny/walker2d/expert-v0\s+not built", out)
    assert re.search(r"hopper: .*; policies trained\n", out) and "walker2d" in out
    assert main(["datasets", "info", "hopper", "--tiny"]) == 0
    out = capsys.readouterr().out
    assert "recipe hopper: dtkit_tiny/Hopper-v5" in out and "# dtkit-tiny/hopper/medium-expert-v0" in out
    assert "| medium-replay | replay<=step-" in out
    assert main(["datasets", "info", "dtkit-tiny/hopper/expert-v0"]) == 0
    assert capsys.readouterr().out.count("# dtkit-tiny/") == 1
    # built already: nothing to do, and said so fast
    assert main(["datasets", "build", "hopper", "--tiny", "--no-progress"]) == 0


@pytest.mark.parametrize("name", ["halfcheetah", "walker2d"])
def test_tiny_mujoco_builds(name, tiny_cache):
    assert main(["datasets", "build", name, "--tiny", "--no-progress"]) == 0
    card = read_card(f"dtkit-tiny/{name}/medium-expert-v0")
    assert card["episodes"] >= 2 and card["ref_max_score"] is not None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["datasets", "info", "hoper"], r"unknown recipe 'hoper'; known recipes: .*cartpole, .*halfcheetah, .*hopper, .*walker2d"),
        (["datasets", "build"], r"needs a recipe name, one of: .*cartpole"),
        (["datasets", "info", "dtkit/hopper/nothing-v0"], r"no recipe makes dataset"),
        (["datasets", "list", "hopper"], r"takes no name"),
    ],
)
def test_cli_datasets_user_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(message, err)


def test_cli_datasets_info_of_unbuilt_recipe(capsys):
    assert main(["datasets", "info", "walker2d"]) == 0
    out = capsys.readouterr().out
    assert "SB3 SAC MlpPolicy, 200,000 steps" in out
    assert "not built: dtkit datasets build walker2d" in out


def test_resumed_training_cuts_the_replay_episode(tiny, tmp_path, monkeypatch, kill_sac_on_second_chunk):
    # A resumed run resets its envs: the episode in progress at the crash really ended there.
    from dtkit.collect import train_behaviour

    spec = tiny.recipe(tiny.PENDULUM).train  # 100 steps, a checkpoint every 50
    kill_sac_on_second_chunk()
    with pytest.raises(KeyboardInterrupt):
        train_behaviour("Pendulum-v1", spec, tmp_path, seed=1, record_replay=True)
    monkeypatch.undo()
    train_behaviour("Pendulum-v1", spec, tmp_path, seed=1, record_replay=True)
    eps = replay_episodes(tmp_path, 100)
    assert [len(e) for e in eps] == [50, 50] and all(e.truncations[-1] for e in eps)


@pytest.mark.parametrize(
    ("env_id", "algo", "n_envs", "hyperparams"),
    [
        ("CartPole-v1", "dqn", 1, {"learning_starts": 50, "batch_size": 16, "buffer_size": 1000}),
        ("Pendulum-v1", "sac", 2, {"learning_starts": 50, "batch_size": 16, "buffer_size": 1000,
                                   "policy_kwargs": {"net_arch": [16, 16]}}),
    ],
)
def test_replay_chunks_discrete_actions_and_several_envs(env_id, algo, n_envs, hyperparams, tmp_path):
    import gymnasium as gym

    from dtkit.collect import TrainSpec, train_behaviour

    spec = TrainSpec(algo=algo, steps=100, checkpoint_every=50, eval_episodes=1, n_envs=n_envs, hyperparams=hyperparams)
    train_behaviour(env_id, spec, tmp_path, record_replay=True)
    eps = replay_episodes(tmp_path, 100)
    space = gym.make(env_id).action_space
    assert sum(len(e) for e in eps) == 100
    for e in eps:
        assert e.observations.shape[0] == len(e) + 1 and e.actions.shape == (len(e), *space.shape)
        assert all(space.contains(a) for a in e.actions)
        assert e.terminations[-1] or e.truncations[-1]
        assert not (e.terminations[:-1] | e.truncations[:-1]).any()
    if algo == "dqn":  # CartPole: +1 a step; episodes before the last end by termination
        assert all(np.all(e.rewards == 1) for e in eps) and all(e.terminations[-1] for e in eps[:-1])
    else:  # two envs, 50 steps each of 200-step episodes: one cut episode per env
        assert [len(e) for e in eps] == [50, 50]


def test_prune_keeps_the_replay_up_to_medium(tiny, tmp_path, monkeypatch):
    from dtkit.collect.replay import replay_chunks

    data = _multi(tiny.PENDULUM)
    data["train"]["prune"] = True
    r = parse_recipe(data, name="p")
    build_datasets(r, tmp_path / "policies")
    first = tiny.episodes("test/pendulum/medium-replay-v0")
    steps = read_card("test/pendulum/medium-replay-v0")["checkpoints"]["medium-replay"]["steps"]
    assert list(replay_chunks(tmp_path / "policies")) == [s for s in (50, 100) if s <= steps]
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "again"))
    build_datasets(r, tmp_path / "policies")  # the pruned folder rebuilds the same data
    assert tiny.same_episodes(first, tiny.episodes("test/pendulum/medium-replay-v0"))
    # which checkpoint is medium depends on the tiny run; prune to step 50 by hand to see chunks go
    from dtkit.collect import prune_checkpoints

    zips = {c.file for c in read_index(tmp_path / "policies").checkpoints}
    prune_checkpoints(tmp_path / "policies", zips, replay_upto=50)
    assert list(replay_chunks(tmp_path / "policies")) == [50]
    assert sum(len(e) for e in replay_episodes(tmp_path / "policies", 50)) == 50
