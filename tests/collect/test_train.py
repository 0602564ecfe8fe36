"""Behaviour training: checkpoints are evaluated, reused, and survive a crash."""

from __future__ import annotations

import dataclasses
import json

import pytest

from dtkit.collect import read_index, train_behaviour
from dtkit.collect.train import INDEX, REPLAY
from dtkit.errors import DtkitError


def test_checkpoints_are_indexed_with_returns(tiny, cartpole_policies):
    index = read_index(cartpole_policies)
    assert [c.steps for c in index.checkpoints] == [128, 256]
    assert all(c.return_det > 0 and c.return_stoch > 0 for c in index.checkpoints)
    assert sorted(p.name for p in cartpole_policies.glob("*.zip")) == [c.file for c in index.checkpoints]


def test_longer_budget_resumes_and_reuses(tiny, cartpole_policies, capsys):
    spec = tiny.recipe(tiny.CARTPOLE).train
    before = {p.name: p.stat().st_mtime_ns for p in cartpole_policies.glob("*.zip")}
    index = train_behaviour("CartPole-v1", dataclasses.replace(spec, steps=384), cartpole_policies, progress=True)
    assert [c.steps for c in index.checkpoints] == [128, 256, 384]
    assert {p.name: p.stat().st_mtime_ns for p in cartpole_policies.glob("*.zip") if p.name in before} == before
    assert "train ppo CartPole-v1" in capsys.readouterr().err  # the tqdm bar
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
    assert (tmp_path / REPLAY).is_file()
    monkeypatch.undo()
    index = train_behaviour("Pendulum-v1", spec, tmp_path, seed=1)
    assert [c.steps for c in index.checkpoints] == [50, 100]
    assert not (tmp_path / REPLAY).exists()
