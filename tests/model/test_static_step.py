"""The static cached step (the form a CUDA graph replays: whole-buffer attention, device-side positions) gives
the eager step's actions, over episodes longer than the window with envs out of lockstep. Runs on CPU."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import torch

from dtkit.data import spec_from_spaces
from dtkit.model import DecisionTransformer, ModelConfig
from dtkit.policy import DTPolicy


def _static(model: DecisionTransformer) -> None:
    """Make ``model.step`` take the static path, syncing the fill levels first as the CUDA graph wrapper does."""
    eager = model.step

    def step(cache, *args, **kwargs):
        cache.sync_lengths()
        return eager(cache, *args, static=True, **kwargs)

    model.step = step  # type: ignore[method-assign]


def test_static_step_equals_eager_out_of_lockstep():
    spec = spec_from_spaces(gym.spaces.Box(-np.inf, np.inf, (5,)), gym.spaces.Box(-1, 1, (2,)), context_len=6,
                            return_scale=10.0, max_timestep=200)
    torch.manual_seed(0)
    model = DecisionTransformer(spec, ModelConfig(d_model=32, n_layer=3, n_head=2)).eval()
    twin = copy.deepcopy(model)
    _static(twin)
    n = 4
    eager, static = DTPolicy(model, n, 5.0), DTPolicy(twin, n, 5.0)
    rng = np.random.default_rng(0)
    for t in range(40):
        obs = rng.normal(size=(n, 5)).astype(np.float32)
        a, b = eager.act(obs), static.act(obs)
        np.testing.assert_allclose(b, a, atol=1e-5, err_msg=f"step {t}")
        reward = rng.uniform(size=n)
        eager.record(reward), static.record(reward)
        ends = rng.uniform(size=n) < 0.08  # episodes end at different steps: rows leave lockstep
        if ends.any():
            eager.reset(ends), static.reset(ends)
    assert len(set(eager.context_lengths.tolist())) > 1  # the rows really were out of lockstep
