"""Pre-LN causal Transformer blocks on ``scaled_dot_product_attention``, with an optional KV cache."""

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
        self.dropout = cfg.dropout

    def forward(
        self,
        x: torch.Tensor,  # (B, L, D)
        attn_mask: torch.Tensor | None,  # (B|1, 1, Lq, Lk) bool, True = may attend; None = causal
        cache: KVCache | None = None,
        layer: int = 0,
        queries: torch.Tensor | None = None,  # (Lq,) positions whose outputs are needed; None = all
    ) -> tuple[torch.Tensor, KV]:
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)  # each (B, nh, L, hs)
        if queries is not None:
            q = q[:, :, queries]  # (B, nh, Lq, hs)
        if cache is not None:
            cache.write(layer, k, v)
            k_all, v_all = cache.keys(layer), cache.values(layer)  # (B, nh, capacity, hs)
        else:
            k_all, v_all = k, v
        y = F.scaled_dot_product_attention(
            q, k_all, v_all,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=attn_mask is None,
        )  # (B, nh, Lq, hs)
        return self.proj(y.transpose(1, 2).reshape(B, q.shape[2], D)), (k, v)


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
        B, L, _ = x.shape
        a = self.attn
        _, k, v = a.qkv(self.ln1(x)).view(B, L, 3, a.n_head, a.head_dim).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(self, x, attn_mask, cache=None, layer=0, queries=None):
        h, kv = self.attn(self.ln1(x), attn_mask, cache, layer, queries)
        x = (x if queries is None else x[:, queries]) + self.drop(h)
        return x + self.mlp(self.ln2(x)), kv


class Trunk(nn.Module):
    """A stack of pre-LN blocks and a final LayerNorm."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)

    def forward(
        self,
        x: torch.Tensor,  # (B, L, D)
        attn_mask: torch.Tensor | None,  # (B|1, 1, L, L|capacity); None = plain causal
        cache: KVCache | None = None,
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
                x, kv = block(x, readout_mask, cache, i, readout)
            else:
                x, kv = block(x, attn_mask, cache, i)
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
        """
        last = len(self.blocks) - 1
        for i, module in enumerate(self.blocks):
            block = cast(Block, module)
            attn, ln1, ln2 = block.attn, block.ln1, block.ln2
            fc, act, out = cast(nn.Linear, block.mlp[0]), cast(nn.GELU, block.mlp[1]), cast(nn.Linear, block.mlp[2])
            B, L, D = x.shape
            h = F.layer_norm(x, (D,), ln1.weight, ln1.bias, ln1.eps)
            q, k, v = F.linear(h, attn.qkv.weight, attn.qkv.bias).view(B, L, 3, attn.n_head, attn.head_dim).permute(2, 0, 3, 1, 4)
            cache.write(i, k, v)
            if i == last:  # only the readout token's output is needed from here on
                q, x, attn_mask = q[:, :, -1:], x[:, -1:], attn_mask[:, :, -1:]
            y = F.scaled_dot_product_attention(q, cache.keys(i), cache.values(i), attn_mask=attn_mask)  # (B, nh, Lq, hs)
            x = x + F.linear(y.transpose(1, 2).reshape(B, q.shape[2], D), attn.proj.weight, attn.proj.bias)
            h = F.layer_norm(x, (D,), ln2.weight, ln2.bias, ln2.eps)
            x = x + F.linear(F.gelu(F.linear(h, fc.weight, fc.bias), approximate=act.approximate), out.weight, out.bias)
        return F.layer_norm(x, (x.shape[-1],), self.ln_f.weight, self.ln_f.bias, self.ln_f.eps)
