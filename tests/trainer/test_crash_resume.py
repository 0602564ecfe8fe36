"""A run killed (SIGKILL) in the middle of a checkpoint write resumes cleanly; a damaged newest checkpoint falls back."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dtkit.cli import main
from dtkit.trainer import load_checkpoint

ARGS = ["--steps", "12", "--batch-size", "4", "--context-len", "4", "--log-every", "4", "--checkpoint-every", "4",
        "--eval-episodes", "1", "--eval-envs", "1", "--warmup-steps", "1", "--lr-schedule", "constant",
        "--model.d-model", "16", "--model.n-layer", "1", "--no-progress"]

KILL_AT_SECOND_WRITE = """
import os, signal, sys
import dtkit.trainer.checkpoint as ckpt
from dtkit.cli import main

real_save, calls = ckpt.save_file, []


def save_then_die(state, path):
    calls.append(path)
    if len(calls) == 2:  # the second checkpoint: weights half-written inside the staging folder, then SIGKILL
        with open(path, "wb") as f:
            f.write(b"partial")
        os.kill(os.getpid(), signal.SIGKILL)
    real_save(state, path)


ckpt.save_file = save_then_die
sys.exit(main(sys.argv[1:]))
"""


def test_kill_during_checkpoint_write_then_resume_leaves_no_staging(make_dataset, tmp_path, capsys):
    dataset_id = make_dataset("CartPole-v1", n_episodes=4)
    run, script = tmp_path / "run", tmp_path / "die.py"
    script.write_text(KILL_AT_SECOND_WRITE)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, str(script), "train", "--dataset", dataset_id, "--run-dir", str(run), *ARGS],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    ckpts = run / "checkpoints"
    staging = sorted(p.name for p in ckpts.glob(".*.tmp"))
    assert staging and staging[0].startswith(".step_00000008."), "the kill landed inside the staging folder"
    assert (ckpts / "latest").read_text().strip() == "step_00000004"

    assert main(["train", "--dataset", dataset_id, "--run-dir", str(run), *ARGS, "--resume"]) == 0
    assert "removed" in capsys.readouterr().err
    assert not list(ckpts.glob(".*")), "no staging folder or temp file is left"
    assert load_checkpoint(run).meta["step"] == 12


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(make_dataset, tmp_path, capsys):
    dataset_id = make_dataset("CartPole-v1", n_episodes=4)
    run = tmp_path / "run"
    assert main(["train", "--dataset", dataset_id, "--run-dir", str(run), *ARGS[:1], "8", *ARGS[2:]]) == 0
    newest = run / "checkpoints" / "step_00000008" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:64])
    capsys.readouterr()
    assert load_checkpoint(run).meta["step"] == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dtkit: warning:") and "step_00000004" in err
    assert main(["train", "--dataset", dataset_id, "--run-dir", str(run), *ARGS, "--resume"]) == 0
    assert load_checkpoint(run).meta["step"] == 12


def test_an_explicit_damaged_step_folder_never_falls_back(make_dataset, tmp_path):
    from dtkit.errors import DtkitError

    dataset_id = make_dataset("CartPole-v1", n_episodes=4)
    run = tmp_path / "run"
    assert main(["train", "--dataset", dataset_id, "--run-dir", str(run), *ARGS[:1], "8", *ARGS[2:]]) == 0
    newest = run / "checkpoints" / "step_00000008"
    (newest / "model.safetensors").write_bytes(b"")
    with pytest.raises(DtkitError, match="step_00000008"):
        load_checkpoint(newest)
