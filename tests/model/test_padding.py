"""DESIGN invariant 2: padding never leaks into real positions and never turns into NaN."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from dtkit.batch import Batch
from dtkit.data import spec_from_spaces
from dtkit.encoders import EncoderConfig
from dtkit.model import DecisionTransformer, ModelConfig


def _batch(spec, B, T, mask, gen):
    obs = {f.key: torch.randn(B, T, *f.info.shape, generator=gen) for f in spec.obs}
    actions = torch.randint(0, spec.action.n, (B, T), generator=gen) if spec.action.discrete else torch.rand(B, T, spec.action.dim, generator=gen) * 2 - 1
    return Batch(returns=torch.randn(B, T, generator=gen), obs=obs, actions=actions, rewards=torch.randn(B, T, generator=gen),
                 timesteps=torch.randint(0, 50, (B, T), generator=gen), mask=mask)


def _scramble(batch, gen):
    """Fill every padded step with fresh random values."""
    pad = ~batch.mask

    def fill(x):
        noise = torch.randint_like(x, 0, 3) if x.dtype == torch.long else torch.randn(x.shape, generator=gen).to(x.dtype) * 100
        m = pad.view(*pad.shape, *([1] * (x.dim() - 2)))
        return torch.where(m, noise, x)

    return Batch(returns=fill(batch.returns), obs={k: fill(v) for k, v in batch.obs.items()}, actions=fill(batch.actions),
                 rewards=fill(batch.rewards), timesteps=torch.where(pad, torch.randint_like(batch.timesteps, 0, 50), batch.timesteps),
                 mask=batch.mask)


SPACES = [
    (gym.spaces.Box(-1, 1, (5,)), gym.spaces.Box(-1, 1, (2,)), {}),
    (gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (3,)), "b": gym.spaces.Box(-1, 1, (4,))}), gym.spaces.Discrete(3),
     {"b": EncoderConfig("mlp", {"n_tokens": 4})}),
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
