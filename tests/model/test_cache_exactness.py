"""DESIGN invariant 1: the KV-cached policy equals a fresh forward pass over its context,
over episodes several times longer than the context window."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from dtkit.batch import Batch
from dtkit.data import spec_from_spaces
from dtkit.encoders import Encoder, EncoderConfig
from dtkit.model import DecisionTransformer, ModelConfig
from dtkit.policy import DTPolicy


class FourTokens(Encoder):
    """A dummy encoder that emits 4 tokens per observation."""

    def __init__(self, field, d_model):
        super().__init__(field, d_model)
        self.n_tokens = 4
        self.proj = torch.nn.Linear(int(np.prod(field.shape)), 4 * d_model)

    def forward(self, x):
        return self.proj(x.flatten(1).float()).view(-1, 4, self.d_model)


CASES = {
    "box-discrete": (gym.spaces.Box(-np.inf, np.inf, (4,)), gym.spaces.Discrete(3), {}, ("return", "obs", "action")),
    "box-continuous": (gym.spaces.Box(-np.inf, np.inf, (11,)), gym.spaces.Box(-1, 1, (3,)), {}, ("return", "obs", "action")),
    "no-return-token (BC)": (gym.spaces.Box(-np.inf, np.inf, (4,)), gym.spaces.Box(-1, 1, (2,)), {}, ("obs", "action")),
    "dict-of-vectors": (
        gym.spaces.Dict({"pos": gym.spaces.Box(-1, 1, (3,)), "vel": gym.spaces.Box(-1, 1, (5,))}),
        gym.spaces.Box(-2, 2, (2,)), {}, ("return", "obs", "action", "reward"),
    ),
    "four-token-encoder": (
        gym.spaces.Dict({"pos": gym.spaces.Box(-1, 1, (3,)), "img": gym.spaces.Box(0, 1, (2, 3))}),
        gym.spaces.Discrete(4), {"img": EncoderConfig(f"{__name__}:FourTokens")}, ("return", "obs", "action"),
    ),
    # Real image encoders on uint8 pixels: a CNN token beside a vector, and 4 patch tokens with a reward token.
    "cnn-uint8": (
        gym.spaces.Dict({"img": gym.spaces.Box(0, 255, (10, 10, 3), np.uint8), "pos": gym.spaces.Box(-1, 1, (2,))}),
        gym.spaces.Discrete(3), {}, ("return", "obs", "action"),
    ),
    "patch-uint8": (
        gym.spaces.Box(0, 255, (2, 8, 8), np.uint8), gym.spaces.Box(-1, 1, (2,)),
        {"obs": EncoderConfig("patch", {"patch": 4})}, ("return", "obs", "action", "reward"),
    ),
}


def _sample_obs(space, n, rng):
    if space.dtype == np.uint8:
        return rng.integers(0, 256, size=(n, *space.shape), dtype=np.uint8)
    return rng.normal(size=(n, *space.shape)).astype(np.float32)


def _history_window(hist, i, start, end, spec):
    """Batch of one row holding absolute steps [start, end] of env i, exactly as the policy saw them."""
    acts = np.stack(hist["action"][start:end + 1])[:, i]
    acts = torch.as_tensor(acts) if spec.action.discrete else torch.as_tensor(spec.action.to_unit(acts))
    obs = {k: torch.as_tensor(np.stack([o[k] for o in hist["obs"][start:end + 1]])[:, i])[None] for k in hist["obs"][0]}
    return Batch(
        returns=torch.as_tensor(np.stack(hist["ret"][start:end + 1])[:, i], dtype=torch.float32)[None],
        obs=obs, actions=acts[None],
        rewards=torch.as_tensor(np.stack(hist["reward"][start:end + 1])[:, i], dtype=torch.float32)[None],
        timesteps=torch.as_tensor(np.stack(hist["t"][start:end + 1])[:, i])[None],
        mask=torch.ones(1, end - start + 1, dtype=torch.bool),
    )


@pytest.mark.parametrize("block", [True, False])
@pytest.mark.parametrize("case", list(CASES))
def test_cached_actions_equal_fresh_forward(case, block):
    obs_space, act_space, encoders, layout = CASES[case]
    K, N, T = 6, 3, 5 * 6 + 3  # episodes several context windows long
    spec = spec_from_spaces(obs_space, act_space, context_len=K, return_scale=10.0, max_timestep=200,
                            obs_encoders=encoders, layout=layout, block_obs_attention=block)
    torch.manual_seed(0)
    model = DecisionTransformer(spec, ModelConfig(d_model=32, n_layer=3, n_head=2)).eval()
    policy = DTPolicy(model, num_envs=N, target_return=40.0)
    rng = np.random.default_rng(0)
    hist = {"obs": [], "ret": [], "action": [], "reward": [], "t": []}
    worst, lengths = 0.0, []
    for t in range(T):
        if t in (K + 2, 2 * K + 3):
            policy.reset(np.array([t == K + 2, False, t != K + 2]))  # rows fall out of lockstep
        if isinstance(obs_space, gym.spaces.Dict):
            obs = {k: _sample_obs(s, N, rng) for k, s in obs_space.spaces.items()}
        else:
            obs = {"obs": _sample_obs(obs_space, N, rng)}
        hist["ret"].append(policy._rtg.numpy() / spec.return_scale)
        hist["t"].append(policy._t.numpy().copy())
        action = policy.act(obs if spec.dict_obs else obs["obs"])
        hist["obs"].append(obs)
        hist["action"].append(action)
        cached = policy.last_output.clone()
        ctx = policy.context_lengths
        lengths.append(ctx.copy())
        reward = rng.normal(size=N)
        hist["reward"].append(reward)
        for i in range(N):
            with torch.no_grad():
                fresh, _ = model(_history_window(hist, i, t - ctx[i] + 1, t, spec))
            worst = max(worst, (fresh[0, -1] - cached[i]).abs().max().item())
        policy.record(reward)
    lengths = np.array(lengths)
    assert worst < 1e-5
    assert lengths.max() == K, "the context must fill up to K"
    assert (lengths[:, 1][K:] >= policy.keep + 1).all(), "after a rebuild the context keeps `keep` whole steps"


def test_cache_matches_full_recompute_inside_first_window():
    """Until the window slides, the cache and the classic recompute see the same context."""
    spec = spec_from_spaces(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Box(-1, 1, (2,)), context_len=8, return_scale=5.0)
    model = DecisionTransformer(spec, ModelConfig(d_model=32, n_layer=2)).eval()
    cached, full = DTPolicy(model, 2, 10.0), DTPolicy(model, 2, 10.0, use_cache=False)
    rng = np.random.default_rng(1)
    for _ in range(8):
        obs = rng.normal(size=(2, 4)).astype(np.float32)
        np.testing.assert_allclose(cached.act(obs), full.act(obs), atol=1e-5)
        r = rng.normal(size=2)
        cached.record(r), full.record(r)


def test_rows_reset_independently():
    """A reset in one env leaves the other env's cache and clock untouched."""
    spec = spec_from_spaces(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), context_len=4, return_scale=5.0)
    model = DecisionTransformer(spec, ModelConfig(d_model=16, n_layer=2)).eval()
    both, alone = DTPolicy(model, 2, 10.0), DTPolicy(model, 1, 10.0)
    rng = np.random.default_rng(2)
    for t in range(12):
        obs = rng.normal(size=(2, 4)).astype(np.float32)
        both.act(obs)
        alone.act(obs[1:])
        torch.testing.assert_close(both.last_output[1], alone.last_output[0], atol=1e-5, rtol=0)
        both.record(np.ones(2)), alone.record(np.ones(1))
        if t % 5 == 4:
            both.reset(np.array([True, False]))


def test_rebuild_reuses_encoder_outputs():
    """A cache rebuild recomputes the trunk over `keep` steps but never re-runs the image encoder:
    the CNN sees each observation exactly once."""
    spec = spec_from_spaces(gym.spaces.Box(0, 255, (4, 12, 12), np.uint8), gym.spaces.Discrete(3), context_len=4)
    model = DecisionTransformer(spec, ModelConfig(d_model=16, n_layer=2)).eval()
    frames_seen = []
    model.encoders["obs/obs"].register_forward_hook(lambda mod, args, out: frames_seen.append(args[0].shape[0]))
    policy = DTPolicy(model, num_envs=2, target_return=5.0, keep=2)
    rng = np.random.default_rng(3)
    steps = 11  # several rebuilds: the cache fills every K - keep = 2 steps
    for _ in range(steps):
        policy.act(rng.integers(0, 256, size=(2, 4, 12, 12), dtype=np.uint8))
        policy.record(np.ones(2))
    assert sum(frames_seen) == 2 * steps
