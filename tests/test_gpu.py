"""CUDA paths (run with `pytest -m gpu` on a GPU machine; skipped elsewhere)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch

from dtkit.data import spec_from_spaces
from dtkit.model import DecisionTransformer, ModelConfig
from dtkit.policy import DTPolicy

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_cached_policy_on_cuda_matches_cpu():
    spec = spec_from_spaces(gym.spaces.Box(-1, 1, (11,)), gym.spaces.Box(-1, 1, (3,)), context_len=8, return_scale=100.0)
    torch.manual_seed(0)
    cpu_model = DecisionTransformer(spec, ModelConfig(d_model=64, n_layer=3, n_head=2)).eval()
    gpu_model = DecisionTransformer(spec, ModelConfig(d_model=64, n_layer=3, n_head=2)).eval()
    gpu_model.load_state_dict(cpu_model.state_dict())
    cpu, gpu = DTPolicy(cpu_model, 16, 50.0), DTPolicy(gpu_model.cuda(), 16, 50.0)
    rng = np.random.default_rng(0)
    for _ in range(30):  # past two cache rebuilds
        obs = rng.normal(size=(16, 11)).astype(np.float32)
        np.testing.assert_allclose(cpu.act(obs), gpu.act(obs), atol=1e-4)
        r = rng.normal(size=16)
        cpu.record(r), gpu.record(r)


def test_bf16_training_on_cuda(make_dataset, tmp_path):
    from dtkit.trainer import TrainConfig, train

    dataset_id = make_dataset("CartPole-v1", n_episodes=4)
    cfg = TrainConfig(dataset=dataset_id, run_dir=str(tmp_path / "run"), steps=20, batch_size=16, context_len=4, device="cuda",
                      amp="bf16", eval_episodes=2, eval_envs=2, checkpoint_every=10, log_every=5, progress=False,
                      model=ModelConfig(d_model=32, n_layer=2))
    result = train(cfg)
    assert np.isfinite(result.final_loss) and result.report is not None
    result2 = train(replace(cfg, run_dir=str(tmp_path / "fp32"), amp="fp32"))
    assert abs(result2.final_loss - result.final_loss) < 0.1


def test_torchrun_nccl(make_dataset, tmp_path, minari_root):
    dataset_id = make_dataset("CartPole-v1", n_episodes=4)
    nproc = str(min(2, torch.cuda.device_count()))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", nproc, "-m", "dtkit.cli", "train",
           "--dataset", dataset_id, "--run-dir", str(tmp_path / "ddp"), "--device", "cuda", "--steps", "8", "--batch-size", "4",
           "--context-len", "4", "--checkpoint-every", "4", "--eval-episodes", "2", "--eval-envs", "2", "--no-progress"]
    proc = subprocess.run(cmd, env={**os.environ, "MINARI_DATASETS_PATH": str(minari_root)}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
