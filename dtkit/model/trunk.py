"""Pre-LN causal Transformer blocks: SDPA (or written-out attention when dropout is on), with a KV-cached step."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from dtkit.model.cache import KVCache
from dtkit.model.config import ModelConfig
from dtkit.model.dropout import Dropout

__all__ = ["Trunk"]

KV = tuple[torch.Tensor, torch.Tensor]


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.d_model % cfg.n_head:
            raise ValueError(f"d_model={cfg.d_model} must be divisible by n_head={cfg.n_head}")
        self.n_head, self.head_dim = cfg.n_head, cfg.d_model // cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.attn_drop = Dropout(cfg.dropout)

    def forward(
        self,
        x: torch.Tensor,  # (B, L, D)
        attn_mask: torch.Tensor | None,  # (B|1, 1, Lq, L) bool, True = may attend; None = causal
        queries: torch.Tensor | None = None,  # (Lq,) positions whose outputs are needed; None = all
    ) -> tuple[torch.Tensor, KV]:
        D = x.shape[-1]
        w, b = self.qkv.weight, self.qkv.bias
        if queries is None:
            q, k, v = F.linear(x, w, b).split(D, dim=-1)  # each (B, L, D)
        else:  # queries at the readout rows only; keys and values of every token
            q = F.linear(x[:, queries], w[:D], b[:D])  # (B, Lq, D)
            k, v = F.linear(x, w[D:], b[D:]).split(D, dim=-1)
        p = self.attn_drop.p if self.training else 0.0
        if p > 0 and x.device.type == "cpu":  # SDPA's CPU path with dropout is its slow math path
            y = attend(q, k, v, self.n_head, attn_mask, self.attn_drop)  # (B, Lq, D)
        else:  # no dropout, or a GPU, whose fused SDPA kernels apply dropout themselves
            y = attend(q, k, v, self.n_head, attn_mask, dropout_p=p)
        return self.proj(y), (_heads(k, self.n_head), _heads(v, self.n_head))


def _heads(t: torch.Tensor, n_head: int) -> torch.Tensor:
    """(B, L, D) -> (B, nh, L, hs), a view."""
    B, L, D = t.shape
    return t.view(B, L, n_head, D // n_head).transpose(1, 2)


_causal_bias: dict[tuple[int, torch.device, torch.dtype], torch.Tensor] = {}


def _additive(mask: torch.Tensor | None, L: int, like: torch.Tensor) -> torch.Tensor:
    """A bool mask (True = may attend; None = causal over L tokens) as 0 / -inf to add to the scores."""
    if mask is None:
        key = (L, like.device, like.dtype)
        if key not in _causal_bias:
            _causal_bias[key] = torch.full((L, L), float("-inf"), device=like.device, dtype=like.dtype).triu(1)
        return _causal_bias[key]
    return torch.zeros(mask.shape, device=like.device, dtype=like.dtype).masked_fill(~mask, float("-inf"))


def attend(
    q: torch.Tensor,  # (B, Lq, D)
    k: torch.Tensor,  # (B, L, D)
    v: torch.Tensor,  # (B, L, D)
    n_head: int,
    mask: torch.Tensor | None,  # (B|1, 1, Lq, L) bool, True = may attend; None = causal (Lq == L)
    drop: Dropout | None = None,  # attention dropout on the probabilities, written out (CPU training)
    dropout_p: float = 0.0,  # attention dropout inside SDPA, when ``drop`` is None
) -> torch.Tensor:
    """Multi-head scaled dot-product attention, (B, Lq, D) out.

    Without ``drop`` this is SDPA (its fused kernels; on a GPU they also apply ``dropout_p``).
    With dropout on a CPU, SDPA falls back to its math path, which draws a float Bernoulli
    mask, checks every row for being fully masked and copies q, k and v: there the same
    arithmetic is written out as
    baddbmm + softmax + the byte-mask :class:`Dropout` + bmm (profiled: about 10% of a
    training step less). The two agree within float round-off (tests/model/test_trunk.py).
    """
    B, Lq, D = q.shape
    L, hs = k.shape[1], D // n_head
    if drop is None:
        y = F.scaled_dot_product_attention(_heads(q, n_head), _heads(k, n_head), _heads(v, n_head),
                                           attn_mask=mask, dropout_p=dropout_p, is_causal=mask is None)  # (B, nh, Lq, hs)
        return y.transpose(1, 2).reshape(B, Lq, D)
    # (B * nh, L, hs): a view when n_head == 1 (the paper's size), a copy otherwise.
    qh, kh, vh = (_heads(t, n_head).reshape(B * n_head, -1, hs) for t in (q, k, v))
    bias = _additive(mask, L, qh)  # (L, L) or (B|1, 1, Lq, L)
    if bias.dim() == 4:
        bias = bias.expand(B, n_head, Lq, L).reshape(B * n_head, Lq, L)
    scores = torch.baddbmm(bias, qh, kh.transpose(1, 2), alpha=hs ** -0.5)  # (B * nh, Lq, L)
    # Softmax in fp32 even under bf16 autocast: more exact, and 3-4x faster than torch's bf16 softmax on CPU (measured).
    y = torch.bmm(drop(scores.softmax(-1, dtype=torch.float32).to(vh.dtype)), vh)  # (B * nh, Lq, hs)
    return y.view(B, n_head, Lq, hs).transpose(1, 2).reshape(B, Lq, D)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model),
            nn.GELU(),
            nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model),
            Dropout(cfg.dropout),
        )
        self.drop = Dropout(cfg.dropout)

    def kv(self, x: torch.Tensor) -> KV:
        """Only this block's keys and values, (B, nh, L, hs) each."""
        D = x.shape[-1]
        w, b = self.attn.qkv.weight, self.attn.qkv.bias
        k, v = F.linear(self.ln1(x), w[D:], b[D:]).split(D, dim=-1)
        return _heads(k, self.attn.n_head), _heads(v, self.attn.n_head)

    def forward(self, x, attn_mask, queries=None):
        h, kv = self.attn(self.ln1(x), attn_mask, queries)
        x = (x if queries is None else x[:, queries]) + self.drop(h)
        return x + self.mlp(self.ln2(x)), kv


# How many parameters have been registered on any module so far: Trunk.step's flat weight list
# is stale once this moves (a parameter replaced by a new object).
_registrations = [0]


def _count_registration(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
    _registrations[0] += 1


torch.nn.modules.module.register_module_parameter_registration_hook(_count_registration)


class Trunk(nn.Module):
    """A stack of pre-LN blocks and a final LayerNorm."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self._flat_weights: list[tuple] = []  # filled by _step_weights
        self._flat_version = -1

    def forward(
        self,
        x: torch.Tensor,  # (B, L, D)
        attn_mask: torch.Tensor | None,  # (B|1, 1, L, L); None = plain causal
        readout: torch.Tensor | None = None,  # (R,) positions read out; None = all
        readout_mask: torch.Tensor | None = None,  # attn_mask restricted to the readout rows
        return_kv: bool = False,
        kv_only: bool = False,
    ) -> tuple[torch.Tensor | None, list[KV]]:
        """Returns the final hidden states at ``readout`` (B, R, D) and, optionally, every layer's K/V.

        Only the readout rows feed the head, so the last block computes its
        queries, projection and MLP for those rows alone; its keys and values
        are still computed for every token, as the cache needs them. With
        ``kv_only`` (a cache rebuild) the last block stops after its keys and values.
        """
        kvs = []
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            if i == last and kv_only:  # a cache rebuild needs no outputs, only every layer's keys/values
                kvs.append(block.kv(x))  # type: ignore[operator]  # ModuleList items are Blocks
                return None, kvs
            if i == last and readout is not None:
                x, kv = block(x, readout_mask, readout)
            else:
                x, kv = block(x, attn_mask)
            if return_kv:
                kvs.append(kv)
        return self.ln_f(x), kvs

    def step(
        self,
        x: torch.Tensor,  # (B, F, D): one step's new tokens per row
        attn_mask: torch.Tensor,  # (B|1, 1, F, span) bool from KVCache.begin_step
        cache: KVCache,
    ) -> torch.Tensor:
        """The cached incremental step as plain functional calls: returns the last token's final state (B, 1, D).

        Same arithmetic as :meth:`forward` with ``readout`` = the last token (eval mode: dropout
        is the identity), written without module dispatch: at 16 envs a step is ~50 small ops,
        and each module call costs about as much as one of them (measured in scripts/bench.py).
        The weights are read from a flat list gathered once (:meth:`_step_weights`), not through
        ~25 module attribute lookups per block.
        """
        weights = self._step_weights()
        last = len(weights) - 1
        B, L, D = x.shape
        for i, (ln1_w, ln1_b, eps1, qkv_w, qkv_b, n_head, proj_w, proj_b, ln2_w, ln2_b, eps2, fc_w, fc_b, approx, out_w, out_b) in enumerate(weights):
            h = F.layer_norm(x, (D,), ln1_w, ln1_b, eps1)
            q, k, v = F.linear(h, qkv_w, qkv_b).view(B, L, 3, n_head, D // n_head).permute(2, 0, 3, 1, 4)  # each (B, nh, L, hs)
            cache.write(i, k, v)
            if i == last:  # only the readout token's output is needed from here on
                q, x, attn_mask = q[:, :, -1:], x[:, -1:], attn_mask[:, :, -1:]
            y = F.scaled_dot_product_attention(q, cache.keys(i), cache.values(i), attn_mask=attn_mask)  # (B, nh, Lq, hs)
            x = x + F.linear(y.transpose(1, 2).reshape(B, q.shape[2], D), proj_w, proj_b)
            h = F.layer_norm(x, (D,), ln2_w, ln2_b, eps2)
            x = x + F.linear(F.gelu(F.linear(h, fc_w, fc_b), approximate=approx), out_w, out_b)
        return F.layer_norm(x, (D,), self.ln_f.weight, self.ln_f.bias, self.ln_f.eps)

    def _step_weights(self) -> list[tuple]:
        """Per block, the tensors and constants :meth:`step` reads, gathered once.

        In-place updates (an optimizer, ``load_state_dict``) keep the parameter objects, so the
        list stays current. It is gathered again after any parameter is registered anywhere
        (``module.weight = nn.Parameter(...)``, ``load_state_dict(assign=True)``) and when the
        parameters were swapped for new objects without registration (``.to()`` may do that).
        """
        first = cast(Block, self.blocks[0]).ln1.weight
        if self._flat_weights and self._flat_version == _registrations[0] and self._flat_weights[0][0] is first:
            return self._flat_weights
        self._flat_version = _registrations[0]
        flat = []
        for module in self.blocks:
            b = cast(Block, module)
            fc, act, out = cast(nn.Linear, b.mlp[0]), cast(nn.GELU, b.mlp[1]), cast(nn.Linear, b.mlp[2])
            flat.append((b.ln1.weight, b.ln1.bias, b.ln1.eps, b.attn.qkv.weight, b.attn.qkv.bias, b.attn.n_head,
                         b.attn.proj.weight, b.attn.proj.bias, b.ln2.weight, b.ln2.bias, b.ln2.eps,
                         fc.weight, fc.bias, act.approximate, out.weight, out.bias))
        self._flat_weights = flat
        return flat
