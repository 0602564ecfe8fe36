"""Behaviour training: checkpoints are evaluated, reused, and survive a crash."""

from __future__ import annotations

import dataclasses
import json

import pytest

from dtkit.collect import read_index, train_behaviour
from dtkit.collect.train import INDEX, replay_buffer_file
from dtkit.errors import DtkitError


def test_checkpoints_are_indexed_with_returns(tiny, cartpole_policies):
    index = read_index(cartpole_policies)
    assert [c.steps for c in index.checkpoints] == [128, 256]
    # Each recorded return is the evaluation of that very zip (a CartPole return is always > 0, so that says nothing):
    # re-evaluating the saved file with the recorded seed gives the recorded deterministic return exactly.
    from stable_baselines3 import PPO

    from dtkit.collect.episodes import evaluate, sb3_actor

    for c in index.checkpoints:
        model = PPO.load(cartpole_policies / c.file, device="cpu")
        assert evaluate(index.env_id, sb3_actor(model, True), index.eval_episodes, index.seed)[0] == c.return_det
    assert sorted(p.name for p in cartpole_policies.glob("*.zip")) == [c.file for c in index.checkpoints]


def test_longer_budget_resumes_and_reuses(tiny, cartpole_policies, capsys, tmp_path, monkeypatch):
    import tempfile

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    spec = tiny.recipe(tiny.CARTPOLE).train
    before = {p.name: p.stat().st_mtime_ns for p in cartpole_policies.glob("*.zip")}
    index = train_behaviour("CartPole-v1", dataclasses.replace(spec, steps=384), cartpole_policies, progress=True)
    assert [c.steps for c in index.checkpoints] == [128, 256, 384]
    assert {p.name: p.stat().st_mtime_ns for p in cartpole_policies.glob("*.zip") if p.name in before} == before
    assert "train ppo CartPole-v1" in capsys.readouterr().err  # the tqdm bar
    assert list(temp.iterdir()) == []  # SB3's default logger would have left an empty SB3-<time> folder here
    # Done means done: the same budget again trains nothing.
    again = train_behaviour("CartPole-v1", dataclasses.replace(spec, steps=384), cartpole_policies)
    assert again == index


def test_zip_without_index_entry_is_evaluated_not_retrained(tiny, cartpole_policies):
    # A crash after a checkpoint's zip was written but before the index named it.
    spec = dataclasses.replace(tiny.recipe(tiny.CARTPOLE).train, steps=384)
    train_behaviour("CartPole-v1", spec, cartpole_policies)
    path = cartpole_policies / INDEX
    data = json.loads(path.read_text())
    data["checkpoints"] = data["checkpoints"][:-1]
    data["trained_steps"] = 256
    path.write_text(json.dumps(data))
    last = cartpole_policies / "step-000000384.zip"
    mtime = last.stat().st_mtime_ns
    index = train_behaviour("CartPole-v1", spec, cartpole_policies)
    assert [c.steps for c in index.checkpoints] == [128, 256, 384]
    assert last.stat().st_mtime_ns == mtime


def test_other_run_in_policy_dir_is_refused(tiny, cartpole_policies):
    spec = dataclasses.replace(tiny.recipe(tiny.CARTPOLE).train, hyperparams={"n_steps": 32})
    with pytest.raises(DtkitError, match="different run"):
        train_behaviour("CartPole-v1", spec, cartpole_policies)


def test_bad_hyperparameter_is_a_user_error(tiny, tmp_path):
    spec = dataclasses.replace(tiny.recipe(tiny.CARTPOLE).train, hyperparams={"n_stepz": 64})
    with pytest.raises(DtkitError, match="train.hyperparams.*n_stepz"):
        train_behaviour("CartPole-v1", spec, tmp_path)


def test_off_policy_crash_resumes_with_replay_buffer(tiny, tmp_path, monkeypatch, kill_sac_on_second_chunk):
    spec = tiny.recipe(tiny.PENDULUM).train  # 100 steps, a checkpoint every 50
    kill_sac_on_second_chunk()
    with pytest.raises(KeyboardInterrupt):
        train_behaviour("Pendulum-v1", spec, tmp_path, seed=1)
    assert [c.steps for c in read_index(tmp_path).checkpoints] == [50]
    assert [p.name for p in tmp_path.glob(".replay_buffer*")] == [replay_buffer_file(50)]
    monkeypatch.undo()
    index = train_behaviour("Pendulum-v1", spec, tmp_path, seed=1)
    assert [c.steps for c in index.checkpoints] == [50, 100]
    assert not list(tmp_path.glob(".replay_buffer*"))


def test_crash_before_zip_resumes_with_that_checkpoints_buffer(tiny, tmp_path, monkeypatch):
    # A crash after checkpoint 100's buffer pickle was written but before its zip:
    # the resumed run restarts from zip 50 and must load buffer 50, not buffer 100.
    from stable_baselines3 import SAC

    from dtkit.collect import train as train_module

    spec = dataclasses.replace(tiny.recipe(tiny.PENDULUM).train, steps=150)
    real_save, saves = train_module._save_zip, []

    def crash_on_second_zip(model, path):
        saves.append(path.name)
        if len(saves) == 2:
            raise KeyboardInterrupt
        real_save(model, path)

    monkeypatch.setattr(train_module, "_save_zip", crash_on_second_zip)
    with pytest.raises(KeyboardInterrupt):
        train_behaviour("Pendulum-v1", spec, tmp_path, seed=1)
    assert sorted(p.name for p in tmp_path.glob(".replay_buffer*")) == [replay_buffer_file(50), replay_buffer_file(100)]
    monkeypatch.undo()

    real_load, loaded = SAC.load_replay_buffer, []

    def spy_load(self, path, *args, **kwargs):
        loaded.append((path.name, self.num_timesteps))
        real_load(self, path, *args, **kwargs)
        loaded.append(self.replay_buffer.pos)

    monkeypatch.setattr(SAC, "load_replay_buffer", spy_load)
    index = train_behaviour("Pendulum-v1", spec, tmp_path, seed=1)
    assert loaded == [(replay_buffer_file(50), 50), 50]  # the buffer holds exactly the 50 steps the policy saw
    assert [c.steps for c in index.checkpoints] == [50, 100, 150]
    assert not list(tmp_path.glob(".replay_buffer*"))
