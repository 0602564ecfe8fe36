"""Two-process DDP under torchrun with gloo: ranks stay in sync and only rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dtkit.trainer import load_checkpoint


def test_torchrun_two_processes_gloo(make_dataset, tmp_path, minari_root):
    dataset_id = make_dataset("CartPole-v1", n_episodes=4)
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "dtkit.cli", "train", "--dataset", dataset_id, "--run-dir", str(run), "--device", "cpu",
           "--steps", "8", "--batch-size", "4", "--context-len", "4", "--checkpoint-every", "4", "--log-every", "4",
           "--eval-episodes", "2", "--eval-envs", "2", "--model.d-model", "16", "--model.n-layer", "1", "--no-progress"]
    env = {**os.environ, "MINARI_DATASETS_PATH": str(minari_root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((run / "checkpoints" / "step_00000008" / "meta.json").read_text())
    assert meta["world_size"] == 2
    assert len(list((run / "tb").iterdir())) == 1, "only rank 0 writes TensorBoard events"
    assert (run / "eval.json").is_file()
    assert load_checkpoint(run).model is not None


RANK_DUMP = """
import os, sys, torch
import dtkit.trainer.loop as loop
from dtkit.cli import main

made = []


class Recorded(loop.DecisionTransformer):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        made.append(self)


loop.DecisionTransformer = Recorded
code = main(sys.argv[1:])
torch.save(made[0].state_dict(), os.path.join(os.environ["DUMP_DIR"], f"rank{os.environ['RANK']}.pt"))
sys.exit(code)
"""


def test_ranks_hold_equal_weights_and_distinct_rng_after_steps(make_dataset, tmp_path, minari_root):
    """DDP keeps replicas identical (compared weight by weight), while each rank keeps its own RNG stream for dropout."""
    import torch

    dataset_id = make_dataset("CartPole-v1", n_episodes=4)
    run, script = tmp_path / "ddp", tmp_path / "rank_dump.py"
    script.write_text(RANK_DUMP)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
           "train", "--dataset", dataset_id, "--run-dir", str(run), "--device", "cpu", "--steps", "6", "--batch-size", "4",
           "--context-len", "4", "--checkpoint-every", "3", "--log-every", "3", "--eval-episodes", "1", "--eval-envs", "1",
           "--model.d-model", "16", "--model.n-layer", "1", "--no-progress"]
    env = {**os.environ, "MINARI_DATASETS_PATH": str(minari_root), "OMP_NUM_THREADS": "1", "DUMP_DIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0, w1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    init = load_checkpoint(run).model.state_dict()
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], atol=0, rtol=0)
        torch.testing.assert_close(w0[k], init[k], atol=0, rtol=0)  # rank 0's live weights are the saved ones
    rng = torch.load(run / "checkpoints" / "step_00000006" / "trainer.pt", weights_only=True)["torch_rng"]
    assert len(rng) == 2 and not torch.equal(rng[0], rng[1]), "each rank saves its own RNG state for --resume"


@pytest.mark.slow
def test_ddp_resume_equals_an_uninterrupted_run(make_dataset, tmp_path, minari_root):
    """Each rank restores its own RNG (dropout) and sampler state: stop at step 3, resume to 6, same weights as 0 -> 6."""
    import torch

    dataset_id = make_dataset("CartPole-v1", n_episodes=4)
    env = {**os.environ, "MINARI_DATASETS_PATH": str(minari_root), "OMP_NUM_THREADS": "1"}

    def torchrun(run, steps, *extra):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "dtkit.cli",
               "train", "--dataset", dataset_id, "--run-dir", str(run), "--device", "cpu", "--steps", str(steps),
               "--batch-size", "4", "--context-len", "4", "--checkpoint-every", "3", "--log-every", "3", "--eval-episodes", "1",
               "--eval-envs", "1", "--lr-schedule", "constant", "--warmup-steps", "1", "--model.d-model", "16",
               "--model.n-layer", "1", "--model.dropout", "0.3", "--no-progress", *extra]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]

    torchrun(tmp_path / "full", 6)
    torchrun(tmp_path / "resumed", 3)
    torchrun(tmp_path / "resumed", 6, "--resume")
    full = load_checkpoint(tmp_path / "full").model.state_dict()
    resumed = load_checkpoint(tmp_path / "resumed").model.state_dict()
    for k in full:
        torch.testing.assert_close(full[k], resumed[k], atol=0, rtol=0)
