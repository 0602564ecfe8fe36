"""Initialisation: GPT-2's N(0, 0.02) inside the trunk, PyTorch's defaults for the input embeddings and the head.

The original DT (Chen et al., 2021) and d3rlpy initialise only their GPT-2 model with
N(0, 0.02); the linear embeddings of returns, actions and vector observations and the
action head keep PyTorch's default (uniform within 1/sqrt(fan_in)). Under N(0, 0.02)
the return token starts out nearly independent of the return-to-go (issue 9).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from dtkit.data import spec_from_spaces
from dtkit.model import DecisionTransformer, ModelConfig


def _model(action_space: gym.Space) -> DecisionTransformer:
    torch.manual_seed(0)
    spec = spec_from_spaces(gym.spaces.Box(-1, 1, (3,)), action_space, context_len=5)
    return DecisionTransformer(spec, ModelConfig(d_model=64, n_layer=2))


def _bound(fan_in: int) -> float:
    return 1.0 / np.sqrt(fan_in)


def test_return_action_and_obs_embeddings_and_head_keep_default_init():
    model = _model(gym.spaces.Box(-2, 2, (2,)))
    layers = {"return": (model.encoders["return"].proj, 1), "action": (model.encoders["action"].net, 2),
              "obs": (model.encoders["obs/obs"].net, 3), "head": (model.head.proj, 64)}
    for name, (layer, fan_in) in layers.items():
        w = layer.weight.detach()
        assert w.abs().max() <= _bound(fan_in) + 1e-6, name
        # uniform on [-b, b] has std b / sqrt(3); N(0, 0.02) would be far below that for these fan-ins
        assert abs(w.std().item() - _bound(fan_in) / np.sqrt(3)) < 0.35 * _bound(fan_in) / np.sqrt(3), name
        assert layer.bias is not None and layer.bias.detach().abs().max() > 0, f"{name}: default init draws biases"


def test_trunk_and_position_embeddings_keep_gpt2_init():
    model = _model(gym.spaces.Discrete(4))
    for name, p in [("timestep", model.timestep_emb.weight), ("slot", model.slot_emb.weight),
                    ("qkv", model.trunk.blocks[0].attn.qkv.weight), ("discrete action", model.encoders["action"].table.weight)]:
        assert abs(p.detach().std().item() - 0.02) < 0.005, name
    assert (model.trunk.blocks[0].attn.qkv.bias.detach() == 0).all()
