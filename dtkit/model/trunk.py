"""Pre-LN causal Transformer blocks on ``scaled_dot_product_attention``, with an optional KV cache."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dtkit.model.cache import KVCache
from dtkit.model.config import ModelConfig

__all__ = ["Trunk"]


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
        attn_mask: torch.Tensor | None,  # (B, 1, L, Lk) bool, True = may attend; None = causal
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_head, self.head_dim).unbind(2)  # each (B, L, nh, hs)
        if cache is not None:
            cache.write(layer, k, v)
            k_all, v_all = cache.keys(layer), cache.values(layer)  # (B, Lmax, nh, hs)
        else:
            k_all, v_all = k, v
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k_all.transpose(1, 2), v_all.transpose(1, 2),  # (B, nh, L|Lk, hs)
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=attn_mask is None,
        )  # (B, nh, L, hs)
        return self.proj(y.transpose(1, 2).reshape(B, L, D)), (k, v)


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
            nn.Dropout(cfg.dropout),
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, attn_mask, cache=None, layer=0):
        h, kv = self.attn(self.ln1(x), attn_mask, cache, layer)
        x = x + self.drop(h)
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
        attn_mask: torch.Tensor | None,
        cache: KVCache | None = None,
        return_kv: bool = False,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        kvs = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, attn_mask, cache, i)
            if return_kv:
                kvs.append(kv)
        return self.ln_f(x), kvs
