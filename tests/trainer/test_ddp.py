"""Two-process DDP under torchrun with gloo: ranks stay in sync and only rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
