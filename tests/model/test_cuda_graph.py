"""The cached step replayed as a CUDA graph gives the eager CUDA step's actions (run with `pytest -m gpu`)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from dtkit.data import spec_from_spaces
from dtkit.model import DecisionTransformer, ModelConfig
from dtkit.policy import DTPolicy

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("action_space", [gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(4)], ids=["box", "discrete"])
def test_graph_replay_equals_eager_over_long_episodes_out_of_lockstep(action_space):
    spec = spec_from_spaces(gym.spaces.Box(-np.inf, np.inf, (11,)), action_space, context_len=8, return_scale=100.0,
                            max_timestep=500)
    torch.manual_seed(0)
    model = DecisionTransformer(spec, ModelConfig(d_model=64, n_layer=3, n_head=2)).cuda().eval()
    n = 16
    eager, graphed = DTPolicy(model, n, 50.0), DTPolicy(model, n, 50.0, cuda_graph=True)
    rng = np.random.default_rng(0)
    for t in range(60):  # several rebuilds (every K - keep = 4 steps)
        obs = rng.normal(size=(n, 11)).astype(np.float32)
        a, b = eager.act(obs), graphed.act(obs)
        np.testing.assert_allclose(eager.last_output.cpu().numpy(), graphed.last_output.cpu().numpy(), atol=1e-4,
                                   err_msg=f"step {t}")
        if spec.action.discrete:
            np.testing.assert_array_equal(a, b)
        reward = rng.uniform(size=n)
        eager.record(reward), graphed.record(reward)
        ends = rng.uniform(size=n) < 0.05
        if ends.any():
            eager.reset(ends), graphed.reset(ends)
