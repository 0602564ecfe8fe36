"""The trunk's restructured training forward equals the straightforward one.

The training step skips work no loss term needs (queries, projection, MLP and final
LayerNorm of the last block at non-readout tokens) and writes attention out by hand
when dropout is on. Both must give the same loss and the same gradients as a plain
pre-LN Transformer run over every token and read out afterwards.
"""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
import torch.nn.functional as F

from dtkit.batch import Batch
from dtkit.data import spec_from_spaces
from dtkit.model import DecisionTransformer, ModelConfig
from dtkit.model.dropout import Dropout
from dtkit.model.trunk import attend


def _reference_loss(model: DecisionTransformer, batch: Batch) -> torch.Tensor:
    """Every block over every token with SDPA's causal path, then the head at the readout slots."""
    B, T = batch.timesteps.shape
    S = model.spec.tokens_per_step
    inputs = {"return": batch.returns, "obs": batch.obs, "action": batch.actions, "reward": batch.rewards}
    x = model._embed(model.spec.layout, inputs, batch.timesteps, slice(0, S)).reshape(B, T * S, -1)
    for block in model.trunk.blocks:
        a = block.attn
        D = x.shape[-1]
        q, k, v = a.qkv(block.ln1(x)).split(D, dim=-1)
        heads = [t.view(B, T * S, a.n_head, a.head_dim).transpose(1, 2) for t in (q, k, v)]
        y = F.scaled_dot_product_attention(*heads, is_causal=True).transpose(1, 2).reshape(B, T * S, D)
        x = x + a.proj(y)
        x = x + block.mlp(block.ln2(x))
    h = model.trunk.ln_f(x)[:, model._readout_positions(T, x.device)]
    return model.head.loss(model.head(h), batch.actions, batch.mask)


def _batch(spec, B: int, T: int, gen: torch.Generator) -> Batch:
    obs = {f.key: torch.randn(B, T, *f.info.shape, generator=gen) for f in spec.obs}
    return Batch(returns=torch.randn(B, T, generator=gen), obs=obs, actions=torch.rand(B, T, spec.action.dim, generator=gen) * 2 - 1,
                 rewards=torch.randn(B, T, generator=gen), timesteps=torch.randint(0, 50, (B, T), generator=gen),
                 mask=torch.ones(B, T, dtype=torch.bool))


@pytest.mark.parametrize("n_head", [1, 2])
def test_training_forward_equals_straightforward_loss_and_grads(n_head, monkeypatch):
    spec = spec_from_spaces(gym.spaces.Box(-1, 1, (5,)), gym.spaces.Box(-1, 1, (2,)), context_len=6)
    torch.manual_seed(0)
    model = DecisionTransformer(spec, ModelConfig(d_model=32, n_layer=3, n_head=n_head, dropout=0.1)).train()
    # Dropout stays switched on (so the hand-written attention runs) but keeps every element,
    # which makes the two computations comparable.
    monkeypatch.setattr(Dropout, "forward", lambda self, x: x)
    batch = _batch(spec, 4, 6, torch.Generator().manual_seed(1))
    pred, _ = model(batch)
    loss = model.head.loss(pred, batch.actions, batch.mask)
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    ref = _reference_loss(model, batch)
    ref_grads = torch.autograd.grad(ref, list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(loss, ref, atol=1e-6, rtol=1e-5)
    for (name, _), g, r in zip(model.named_parameters(), grads, ref_grads):
        if r is None:  # parameters the loss never reaches (none expected beyond unused embeddings)
            assert g is None or not g.any(), name
            continue
        torch.testing.assert_close(g, r, atol=1e-6, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("n_head", [1, 2])
@pytest.mark.parametrize("masked", [False, True])
def test_written_out_attention_equals_sdpa(n_head, masked):
    gen = torch.Generator().manual_seed(0)
    B, L, D = 3, 7, 8
    q, k, v = (torch.randn(B, L, D, generator=gen, requires_grad=True) for _ in range(3))
    mask = None
    if masked:  # a per-row key mask on top of causality; every query still sees itself
        mask = (torch.ones(L, L).tril().bool()[None] & (torch.rand(B, 1, L, generator=gen) > 0.3)) | torch.eye(L).bool()
        mask = mask[:, None]
    written = attend(q, k, v, n_head, mask, Dropout(0.0).train())  # p = 0: the written-out path, identity dropout
    fused = attend(q, k, v, n_head, mask, None)
    torch.testing.assert_close(written, fused, atol=1e-6, rtol=1e-5)
    g1 = torch.autograd.grad(written.square().sum(), (q, k, v))
    g2 = torch.autograd.grad(fused.square().sum(), (q, k, v))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_cached_step_follows_replaced_and_updated_weights():
    """The cached step reads weights gathered once; it must see in-place updates (an optimizer
    step) and parameters replaced by new objects, exactly as the full forward does."""
    spec = spec_from_spaces(gym.spaces.Box(-1, 1, (5,)), gym.spaces.Box(-1, 1, (2,)), context_len=4)
    torch.manual_seed(0)
    model = DecisionTransformer(spec, ModelConfig(d_model=16, n_layer=2, dropout=0.0)).eval()
    batch = _batch(spec, 3, 1, torch.Generator().manual_seed(2))
    batch.timesteps.zero_()

    def first_step_action() -> torch.Tensor:  # one cached step from an empty cache: the same window as a 1-step forward
        cache = model.new_cache(3)
        prev = {"action": torch.zeros(3, 2), "reward": torch.zeros(3)}
        cur = {"return": batch.returns[:, 0], "obs": {k: v[:, 0] for k, v in batch.obs.items()}}
        t = batch.timesteps[:, 0]
        with torch.no_grad():
            return model.step(cache, prev, t, torch.zeros(3, dtype=torch.bool), cur, t)

    def forward_action() -> torch.Tensor:
        with torch.no_grad():
            return model(batch)[0][:, 0]

    torch.testing.assert_close(first_step_action(), forward_action(), atol=1e-5, rtol=0)
    with torch.no_grad():  # in place, as an optimizer does
        for p in model.trunk.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    torch.testing.assert_close(first_step_action(), forward_action(), atol=1e-5, rtol=0)
    block = model.trunk.blocks[1]
    block.mlp[2].weight = torch.nn.Parameter(torch.randn_like(block.mlp[2].weight))  # a new object, in the last block only
    torch.testing.assert_close(first_step_action(), forward_action(), atol=1e-5, rtol=0)
    model.load_state_dict({k: v + 0.1 for k, v in model.state_dict().items()}, assign=True)  # every parameter a new object
    torch.testing.assert_close(first_step_action(), forward_action(), atol=1e-5, rtol=0)


def test_attention_dropout_is_applied_in_training_only():
    from dtkit.model.trunk import SelfAttention

    torch.manual_seed(0)
    attn = SelfAttention(ModelConfig(d_model=16, n_head=2, dropout=0.5)).train()
    x = torch.randn(2, 5, 16)
    y1, y2 = attn(x, None)[0], attn(x, None)[0]
    assert not torch.allclose(y1, y2)  # a fresh mask each call
    attn.eval()
    torch.testing.assert_close(attn(x, None)[0], attn(x, None)[0], atol=0, rtol=0)
