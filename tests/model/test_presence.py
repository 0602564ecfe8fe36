"""Absent audio: a per-field presence mask through the batch, the model and the cache.

An absent clip keeps its slots (slots per step stay fixed) but no other token sees
it, so (1) its content cannot change any prediction and (2) the KV-cached policy
still equals a fresh forward pass when the audio is missing on some steps.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from dtkit.batch import Batch
from dtkit.data import spec_from_spaces
from dtkit.encoders import EncoderConfig
from dtkit.model import DecisionTransformer, ModelConfig
from dtkit.policy import DTPolicy

N_SAMPLES = 1600  # 0.1 s at 16 kHz keeps the test fast
SPACE = gym.spaces.Dict({
    "audio": gym.spaces.Box(-32768, 32767, (N_SAMPLES,), np.int16),
    "state": gym.spaces.Box(-1, 1, (3,), np.float32),
})


def _model(encoder: str = "audio_conv", K: int = 5, block: bool = True) -> DecisionTransformer:
    params = {"patch_frames": 5} if encoder == "audio_patch" else {}  # 11 frames in 0.1 s
    spec = spec_from_spaces(SPACE, gym.spaces.Discrete(4), context_len=K, return_scale=5.0, max_timestep=100,
                            obs_encoders={"audio": EncoderConfig(encoder, params)}, block_obs_attention=block)
    torch.manual_seed(0)
    return DecisionTransformer(spec, ModelConfig(d_model=32, n_layer=3, n_head=2)).eval()


def _obs(rng: np.random.Generator, n: int, present: np.ndarray) -> dict[str, np.ndarray]:
    audio = rng.integers(-3000, 3000, size=(n, N_SAMPLES)).astype(np.int16)
    audio[~present] = 0  # a missing clip
    return {"audio": audio, "state": rng.uniform(-1, 1, size=(n, 3)).astype(np.float32)}


def test_audio_is_maskable_and_comes_before_the_readout_field():
    spec = _model().spec
    assert [f.key for f in spec.obs] == ["audio", "state"]
    assert spec.obs[0].maskable and not spec.obs[1].maskable
    assert spec.slots[spec.readout_slot] == ("obs/state", 0)


@pytest.mark.parametrize("encoder", ["audio_conv", "audio_patch"])
def test_absent_clip_content_never_reaches_a_prediction(encoder):
    model = _model(encoder, K=4)
    rng = np.random.default_rng(0)
    B, T = 2, 4
    obs = {k: torch.as_tensor(np.stack([_obs(rng, B, np.ones(B, bool))[k] for _ in range(T)], axis=1)) for k in ("audio", "state")}
    present = torch.tensor([[True, False, True, False], [False, False, True, True]])
    base = Batch(returns=torch.randn(B, T), obs=obs, actions=torch.randint(0, 4, (B, T)), rewards=torch.randn(B, T),
                 timesteps=torch.arange(T).repeat(B, 1), mask=torch.ones(B, T, dtype=torch.bool), present={"audio": present})
    other = dict(obs, audio=torch.where(present[..., None], obs["audio"], torch.randint_like(obs["audio"], -9000, 9000)))
    with torch.no_grad():
        a, _ = model(base)
        b, _ = model(Batch(**{**base.__dict__, "obs": other}))
        c, _ = model(Batch(**{**base.__dict__, "present": None}))  # all present: the clips now matter
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert not torch.allclose(a, c, atol=1e-4)


def test_zero_clip_is_absent_by_default():
    model = _model()
    x = {"audio": torch.zeros(2, 3, N_SAMPLES, dtype=torch.int16), "state": torch.zeros(2, 3, 3)}
    x["audio"][0, 1, 5] = 1
    assert model.presence(x)["audio"].tolist() == [[False, True, False], [False, False, False]]


def _window(hist, i, start, end):
    obs = {k: torch.as_tensor(np.stack([o[k] for o in hist["obs"][start:end + 1]])[:, i])[None] for k in ("audio", "state")}
    return Batch(
        returns=torch.as_tensor(np.stack(hist["ret"][start:end + 1])[:, i], dtype=torch.float32)[None], obs=obs,
        actions=torch.as_tensor(np.stack(hist["action"][start:end + 1])[:, i])[None],
        rewards=torch.as_tensor(np.stack(hist["reward"][start:end + 1])[:, i], dtype=torch.float32)[None],
        timesteps=torch.as_tensor(np.stack(hist["t"][start:end + 1])[:, i])[None],
        mask=torch.ones(1, end - start + 1, dtype=torch.bool),
    )


@pytest.mark.parametrize("block", [True, False])
def test_cache_exact_with_audio_masked_on_some_steps(block):
    K, N, T = 5, 3, 4 * 5 + 2  # several windows, so the cache is rebuilt with absent steps inside
    model = _model(K=K, block=block)
    policy = DTPolicy(model, num_envs=N, target_return=3.0)
    rng = np.random.default_rng(1)
    hist: dict[str, list] = {"obs": [], "ret": [], "action": [], "reward": [], "t": []}
    worst, n_absent = 0.0, 0
    for t in range(T):
        if t == K + 1:
            policy.reset(np.array([True, False, False]))  # rows out of lockstep
        present = rng.random(N) < 0.5
        present[2] = t % 3 == 0  # row 2: instruction only now and then
        n_absent += int((~present).sum())
        obs = _obs(rng, N, present)
        hist["ret"].append(policy._rtg.numpy() / model.spec.return_scale)
        hist["t"].append(policy._t.numpy().copy())
        hist["action"].append(policy.act(obs))
        hist["obs"].append(obs)
        cached, ctx = policy.last_output.clone(), policy.context_lengths
        reward = rng.normal(size=N)
        hist["reward"].append(reward)
        for i in range(N):
            with torch.no_grad():
                fresh, _ = model(_window(hist, i, t - ctx[i] + 1, t))
            worst = max(worst, (fresh[0, -1] - cached[i]).abs().max().item())
        policy.record(reward)
    assert n_absent > 10
    assert worst < 1e-5
