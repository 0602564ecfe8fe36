"""DESIGN invariant 2: padding never leaks into real positions and never turns into NaN."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from dtkit.batch import Batch
from dtkit.data import spec_from_spaces
from dtkit.encoders import EncoderConfig
from dtkit.model import DecisionTransformer, ModelConfig


def _obs(info, shape, gen):
    if info.dtype == "uint8":
        return torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
    return torch.randn(shape, generator=gen)


def _batch(spec, B, T, mask, gen):
    obs = {f.key: _obs(f.info, (B, T, *f.info.shape), gen) for f in spec.obs}
    actions = torch.randint(0, spec.action.n, (B, T), generator=gen) if spec.action.discrete else torch.rand(B, T, spec.action.dim, generator=gen) * 2 - 1
    return Batch(returns=torch.randn(B, T, generator=gen), obs=obs, actions=actions, rewards=torch.randn(B, T, generator=gen),
                 timesteps=torch.randint(0, 50, (B, T), generator=gen), mask=mask)


def _scramble(batch, gen):
    """Fill every padded step with fresh random values."""
    pad = ~batch.mask

    def fill(x):
        if x.dtype == torch.long:
            noise = torch.randint_like(x, 0, 3)
        elif x.dtype == torch.uint8:
            noise = torch.randint(0, 256, x.shape, dtype=torch.uint8, generator=gen)
        else:
            noise = torch.randn(x.shape, generator=gen).to(x.dtype) * 100
        m = pad.view(*pad.shape, *([1] * (x.dim() - 2)))
        return torch.where(m, noise, x)

    return Batch(returns=fill(batch.returns), obs={k: fill(v) for k, v in batch.obs.items()}, actions=fill(batch.actions),
                 rewards=fill(batch.rewards), timesteps=torch.where(pad, torch.randint_like(batch.timesteps, 0, 50), batch.timesteps),
                 mask=batch.mask)


SPACES = [
    (gym.spaces.Box(-1, 1, (5,)), gym.spaces.Box(-1, 1, (2,)), {}),
    (gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (3,)), "b": gym.spaces.Box(-1, 1, (4,))}), gym.spaces.Discrete(3),
     {"b": EncoderConfig("mlp", {"n_tokens": 4})}),
    # Pixels: a CNN frame (1 token) and the same camera as patches (4 tokens, one observation block).
    (gym.spaces.Dict({"cam": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8), "grey": gym.spaces.Box(0, 255, (2, 12, 12), np.uint8)}),
     gym.spaces.Discrete(3), {"grey": EncoderConfig("patch", {"patch": 6})}),
]


@pytest.mark.parametrize("where", ["right", "left", "random"])
@pytest.mark.parametrize("spaces", range(len(SPACES)))
def test_padding_does_not_change_real_outputs(spaces, where):
    obs_space, act_space, enc = SPACES[spaces]
    spec = spec_from_spaces(obs_space, act_space, context_len=8, obs_encoders=enc, layout=("return", "obs", "action", "reward"))
    model = DecisionTransformer(spec, ModelConfig(d_model=32, n_layer=2, n_head=2, dropout=0.0)).eval()
    gen = torch.Generator().manual_seed(0)
    B, T = 4, 8
    lengths = torch.tensor([8, 5, 3, 1])
    idx = torch.arange(T)[None]
    if where == "right":
        mask = idx < lengths[:, None]
    elif where == "left":
        mask = idx >= (T - lengths[:, None])
    else:
        mask = torch.rand(B, T, generator=gen) < 0.6
        mask[:, 0] = True
    batch = _batch(spec, B, T, mask, gen)
    with torch.no_grad():
        out1, _ = model(batch)
        out2, _ = model(_scramble(batch, gen))
    assert torch.isfinite(out1).all() and torch.isfinite(out2).all()
    torch.testing.assert_close(out1[mask], out2[mask], atol=1e-5, rtol=0)


@pytest.mark.parametrize("block", [True, False])
def test_right_padding_uses_one_shared_mask(block, monkeypatch):
    """The sampler pads on the right only: such batches attend through the cached (L, L) rule
    (or SDPA's causal path), never a per-batch (B, 1, L, L) mask, and stay exact."""
    import dtkit.model.dt as dt_mod

    obs_space, act_space, enc = SPACES[2]
    spec = spec_from_spaces(obs_space, act_space, context_len=6, obs_encoders=enc, block_obs_attention=block)
    model = DecisionTransformer(spec, ModelConfig(d_model=16, n_layer=2, dropout=0.0)).eval()
    gen = torch.Generator().manual_seed(1)
    mask = torch.arange(6)[None] < torch.tensor([6, 4, 1])[:, None]
    batch = _batch(spec, 3, 6, mask, gen)
    with torch.no_grad():
        with monkeypatch.context() as m:  # reference: the general per-row key-mask path
            m.setattr(dt_mod, "_padding_kind", lambda mask: (True, False))
            general, _ = model(batch)
        monkeypatch.setattr(dt_mod, "window_mask", lambda *a, **k: pytest.fail("built a per-batch mask"))
        out1, _ = model(batch)
        out2, _ = model(_scramble(batch, gen))
    assert torch.isfinite(out1).all() and torch.isfinite(out2).all()
    torch.testing.assert_close(out1[mask], out2[mask], atol=1e-5, rtol=0)
    torch.testing.assert_close(out1[mask], general[mask], atol=1e-5, rtol=0)
