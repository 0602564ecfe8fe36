"""Training: checkpoints describe themselves, round-trip, resume, and never unpickle objects."""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace

import numpy as np
import pytest
import torch

from dtkit.errors import DtkitError
from dtkit.model import ModelConfig
from dtkit.policy import DTPolicy
from dtkit.trainer import TrainConfig, load_checkpoint, train

# A constant schedule: the default cosine spans --steps, so a run stopped at 20 of 20 steps and resumed to 30 would
# (rightly) follow another schedule than an uninterrupted 30-step run.
TINY = TrainConfig(steps=30, batch_size=8, context_len=4, log_every=10, checkpoint_every=10, eval_episodes=2, eval_envs=2,
                   warmup_steps=5, lr_schedule="constant", model=ModelConfig(d_model=16, n_layer=1, n_head=1))


def test_checkpoint_describes_itself_and_round_trips(make_dataset, tmp_path):
    dataset_id = make_dataset("CartPole-v1", n_episodes=6)
    result = train(replace(TINY, dataset=dataset_id, run_dir=str(tmp_path / "run")), progress=False)
    ckpt_dir = result.checkpoint
    assert ckpt_dir.name == "step_00000030"
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["meta.json", "model.safetensors", "trainer.pt"]
    meta = json.loads((ckpt_dir / "meta.json").read_text())
    for key in ("config", "spec", "obs_stats", "env_id", "dataset_id", "versions", "ref_min_score", "ref_max_score"):
        assert key in meta
    assert meta["env_id"] == "CartPole-v1" and meta["versions"]["dtkit"]
    # the last two checkpoints are kept, older ones pruned; nothing half-written is left
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["latest", "step_00000020", "step_00000030"]
    # trainer state loads under weights_only, so nothing arbitrary is unpickled
    torch.load(ckpt_dir / "trainer.pt", weights_only=True)
    ckpt = load_checkpoint(tmp_path / "run")
    obs = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    a = DTPolicy(result_model(result), 2, 20.0)
    b = DTPolicy(ckpt.model, 2, 20.0)
    a.act(obs), b.act(obs)
    torch.testing.assert_close(a.last_output, b.last_output)
    assert (tmp_path / "run" / "eval.json").is_file() and list((tmp_path / "run" / "tb").iterdir())


def result_model(result):
    return load_checkpoint(result.checkpoint).model


def test_resume_continues_from_last_checkpoint(make_dataset, tmp_path):
    dataset_id = make_dataset("CartPole-v1", n_episodes=6)
    cfg = replace(TINY, dataset=dataset_id, run_dir=str(tmp_path / "run"))
    full = train(replace(cfg, run_dir=str(tmp_path / "full")), progress=False)
    train(replace(cfg, steps=20), progress=False)
    with pytest.raises(DtkitError, match="--resume"):
        train(cfg, progress=False)  # refuses to overwrite a run
    resumed = train(replace(cfg, resume=True), progress=False)
    assert resumed.steps == 30
    # same sampler, RNG and optimizer state: the resumed run ends with the uninterrupted run's weights
    w_full = load_checkpoint(full.checkpoint).model.state_dict()
    w_res = load_checkpoint(resumed.checkpoint).model.state_dict()
    for k in w_full:
        torch.testing.assert_close(w_full[k], w_res[k], atol=1e-5, rtol=1e-4)


def test_checkpoints_record_the_return_to_go_range_and_old_runs_get_it_on_resume(make_dataset, tmp_path):
    """The policy clamps to the training data's return-to-go range, so every checkpoint records it; a run saved
    before it was recorded gets it from the data when resumed (it changes evaluation only)."""
    from dtkit.data import load_trajectories

    dataset_id = make_dataset("CartPole-v1", n_episodes=6)
    rtg = load_trajectories(dataset_id).returns_to_go
    cfg = replace(TINY, dataset=dataset_id, run_dir=str(tmp_path / "run"))
    first = train(replace(cfg, steps=20), progress=False)
    meta_file = first.checkpoint / "meta.json"
    meta = json.loads(meta_file.read_text())
    assert meta["spec"]["return_to_go_range"] == [float(rtg.min()), float(rtg.max())]
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["return_to_go_range"] == [float(rtg.min()), float(rtg.max())]
    del meta["spec"]["return_to_go_range"]  # as a checkpoint written before the range existed
    meta_file.write_text(json.dumps(meta))
    assert load_checkpoint(first.checkpoint).spec.return_to_go_range is None
    resumed = train(replace(cfg, resume=True), progress=False)
    assert load_checkpoint(resumed.checkpoint).spec.return_to_go_range == (float(rtg.min()), float(rtg.max()))


def test_ctrl_c_checkpoints_and_raises_training_interrupted(make_dataset, tmp_path, monkeypatch):
    from pathlib import Path

    from dtkit.errors import TrainingInterrupted

    dataset_id = make_dataset("CartPole-v1", n_episodes=6)
    real_clip, calls = torch.nn.utils.clip_grad_norm_, []

    def ctrl_c_on_step_13(*args, **kwargs):
        calls.append(1)
        if len(calls) == 13:
            raise KeyboardInterrupt
        return real_clip(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", ctrl_c_on_step_13)
    with pytest.raises(TrainingInterrupted, match="interrupted at step 12") as caught:
        train(replace(TINY, dataset=dataset_id, run_dir=str(tmp_path / "run")), progress=False)
    assert isinstance(caught.value, DtkitError)  # the CLI still prints it as one line
    assert Path(caught.value.checkpoint).name == "step_00000012" and Path(caught.value.checkpoint).is_dir()


def test_resume_without_checkpoint_is_an_error(make_dataset, tmp_path):
    dataset_id = make_dataset("CartPole-v1", n_episodes=2)
    with pytest.raises(DtkitError, match="holds no checkpoint"):
        train(replace(TINY, dataset=dataset_id, run_dir=str(tmp_path / "empty"), resume=True), progress=False)


def test_safetensors_file_is_not_a_pickle(make_dataset, tmp_path):
    dataset_id = make_dataset("CartPole-v1", n_episodes=2)
    result = train(replace(TINY, dataset=dataset_id, steps=10, run_dir=str(tmp_path / "r")), progress=False)
    assert not zipfile.is_zipfile(result.checkpoint / "model.safetensors")


def test_sigterm_saves_a_checkpoint_and_resume_finishes(make_dataset, tmp_path, minari_root):
    """A killed run keeps its progress: SIGTERM checkpoints, --resume completes the run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    dataset_id = make_dataset("CartPole-v1", n_episodes=4)
    run = tmp_path / "killed"
    args = ["--dataset", dataset_id, "--run-dir", str(run), "--steps", "100000", "--batch-size", "8", "--context-len", "4",
            "--checkpoint-every", "100000", "--log-every", "10", "--model.d-model", "16", "--model.n-layer", "1", "--no-progress"]
    env = {**os.environ, "MINARI_DATASETS_PATH": str(minari_root)}
    proc = subprocess.Popen([sys.executable, "-m", "dtkit.cli", "train", *args], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "tb").is_dir() and time.time() < deadline:  # the loop starts right after the writer
        time.sleep(0.5)
    time.sleep(4)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "--resume" in err
    ckpt = load_checkpoint(run)
    step = json.loads((ckpt.path / "meta.json").read_text())["step"]
    assert step > 0
    finish = step + 5
    args[args.index("--steps") + 1] = str(finish)
    done = subprocess.run([sys.executable, "-m", "dtkit.cli", "train", *args, "--resume", "--eval-episodes", "1", "--eval-envs", "1"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((load_checkpoint(run).path / "meta.json").read_text())["step"] == finish
