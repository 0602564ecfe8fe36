"""Checkpoints evaluate in envs beyond gymnasium's registry: a user's module, the `module:Env` form, and the
`dtkit_tiny/...` envs of `--tiny` builds, which exist only in the process that built the data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from dtkit.cli import main

TINY = ["--steps", "6", "--batch-size", "4", "--context-len", "4", "--log-every", "3", "--checkpoint-every", "3",
        "--eval-episodes", "1", "--eval-envs", "1", "--warmup-steps", "1", "--model.d-model", "16", "--model.n-layer", "1",
        "--no-progress"]

USER_MODULE = textwrap.dedent('''
    """A user's package: one env and one encoder, registered on import."""
    import gymnasium as gym
    import numpy as np
    import torch

    from dtkit.encoders import Encoder, register_encoder


    class Corridor(gym.Env):
        observation_space = gym.spaces.Box(-10.0, 10.0, (2,), np.float32)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.x, self.t = 0.0, 0
            return self._obs(), {}

        def step(self, action):
            self.x += 1.0 if action == 1 else -1.0
            self.t += 1
            return self._obs(), float(action == 1), abs(self.x) >= 5, self.t >= 20, {}

        def _obs(self):
            return np.array([self.x, self.t / 20], np.float32)


    @register_encoder("h8_user_mlp")
    class UserMLP(Encoder):
        def __init__(self, field, d_model):
            super().__init__(field, d_model)
            self.n_tokens = 1
            self.net = torch.nn.Linear(field.shape[0], d_model)

        def forward(self, x):
            return self.net(x.float()).unsqueeze(1)


    gym.register("h8user/Corridor-v0", entry_point="h8_user_envs:Corridor")
''')


def _fresh_eval(*args: str, pythonpath: str = "") -> subprocess.CompletedProcess:
    """`dtkit eval` in a new process, where only what the checkpoint records (and the flags) can bring the env back."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([pythonpath, *sys.path])}
    return subprocess.run([sys.executable, "-m", "dtkit.cli", "eval", "--episodes", "2", "--num-envs", "1", "--no-progress", *args],
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "h8_user_envs.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_env_and_encoder_from_a_user_module(user_module, tmp_path, make_dataset):
    import importlib

    importlib.import_module("h8_user_envs")
    dataset_id = make_dataset("h8user/Corridor-v0", 4, "test/corridor/random-v0", refs=False)
    run = tmp_path / "run"
    assert main(["train", "--dataset", dataset_id, "--run-dir", str(run), *TINY, "--env-module", "h8_user_envs",
                 "--obs-encoder", "h8_user_mlp"]) == 0
    # A fresh process: the env comes back through --env-module, which also registers the encoder the spec names.
    proc = _fresh_eval("--checkpoint", str(run), "--env-module", "h8_user_envs", "--seed", "5", pythonpath=str(user_module))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((run / "eval_step_00000006_seed5.json").read_text())
    assert report["env_id"] == "h8user/Corridor-v0" and report["seed"] == 5 and len(report["episode_returns"]) == 2
    # training's own report is untouched by `dtkit eval`, and says which seed it used
    assert json.loads((run / "eval.json").read_text())["seed"] == 0
    # gymnasium's 'module:Env-v0' form does the same import
    assert main(["eval", "--checkpoint", str(run), "--env-id", "h8_user_envs:h8user/Corridor-v0", "--episodes", "1",
                 "--num-envs", "1", "--out", str(tmp_path / "b.json"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["env_id"] == "h8_user_envs:h8user/Corridor-v0"


def test_tiny_build_envs_evaluate_from_the_recorded_spec(tmp_path, make_dataset):
    """`--tiny` data names `dtkit_tiny/CartPole-v1`, registered only while building; the recorded spec remakes it."""
    from dtkit.collect.catalog import _tiny_env

    dataset_id = make_dataset(_tiny_env("CartPole-v1"), 4, "test-tiny/cartpole/random-v0", refs=False)
    run = tmp_path / "run"
    assert main(["train", "--dataset", dataset_id, "--run-dir", str(run), *TINY]) == 0
    proc = _fresh_eval("--checkpoint", str(run))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((run / "eval_step_00000006_seed0.json").read_text())
    assert report["env_id"] == "dtkit_tiny/CartPole-v1"
    assert max(report["per_target"][0]["episode_lengths"]) <= 100, "the tiny env's 100-step limit came back with it"
