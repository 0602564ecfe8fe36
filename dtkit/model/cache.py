"""A per-environment KV cache for batched, incremental decoding.

Each row (environment) has its own fill level. New tokens are written at each
row's own offset; ``valid`` marks which slots may be attended to. Slot order
inside the buffer does not matter: dtkit has no position-dependent attention
(positions are learned embeddings added to the tokens), so a row is exact as
long as exactly the right keys are visible.
"""

from __future__ import annotations

import torch

__all__ = ["KVCache"]


class KVCache:
    """Preallocated keys and values: ``n_layer`` buffers of shape (B, n_head, capacity, head_dim)."""

    def __init__(self, batch: int, n_layer: int, n_head: int, head_dim: int, capacity: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        shape = (batch, n_head, capacity, head_dim)  # SDPA's layout, so attention reads it without a copy
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.valid = torch.zeros(batch, capacity, dtype=torch.bool, device=device)
        self.length = torch.zeros(batch, dtype=torch.long, device=device)
        self.capacity = capacity
        self._rows = torch.arange(batch, device=device)
        self._slots = torch.arange(capacity, device=device)
        self._write_pos: torch.Tensor | None = None

    def reset(self, rows: torch.Tensor) -> None:
        """Empty the given rows (a bool mask or index tensor)."""
        self.valid[rows] = False
        self.length[rows] = 0

    def load(self, rows: torch.Tensor, kvs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Replace ``rows`` with freshly computed keys/values, each (len(rows), nh, L, hs)."""
        n = kvs[0][0].shape[2]
        for layer, (k, v) in enumerate(kvs):
            self.k[layer][rows, :, :n] = k.to(self.k[layer].dtype)
            self.v[layer][rows, :, :n] = v.to(self.v[layer].dtype)
        self.valid[rows] = False
        self.valid[rows, :n] = True
        self.length[rows] = n

    def begin_step(self, new_valid: torch.Tensor, rule: torch.Tensor) -> torch.Tensor:
        """Reserve slots for F new tokens per row and return the attention mask.

        Args:
            new_valid: (B, F) bool, False for placeholder tokens that must stay invisible.
            rule: (F, F) bool, which new token may attend to which (block-causal).

        Returns:
            (B, 1, F, capacity) bool mask over the whole buffer, new tokens included.
        """
        B, F = new_valid.shape
        if int(self.length.max()) + F > self.capacity:
            raise RuntimeError("KV cache overflow: the policy must rebuild a row before it fills")
        pos = self.length[:, None] + torch.arange(F, device=new_valid.device)  # (B, F)
        self._write_pos = pos
        self.valid[self._rows[:, None], pos] = new_valid
        rel = self._slots[None, :] - self.length[:, None]  # (B, cap): index among new tokens, <0 for old
        is_new = (rel >= 0) & (rel < F)
        rel_c = rel.clamp(0, F - 1)
        # old keys: visible if valid; new keys: visible if valid and allowed by the rule
        new_ok = rule[:, rel_c].permute(1, 0, 2) & self.valid[:, None, :]  # (B, F, cap)
        mask = torch.where(is_new[:, None, :], new_ok, self.valid[:, None, :] & (rel < 0)[:, None, :])
        # Every query sees itself, so rows of placeholders never turn into NaN.
        mask |= (rel[:, None, :] == torch.arange(F, device=rel.device)[None, :, None])
        self.length += F
        return mask[:, None]  # (B, 1, F, cap)

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store the new tokens' keys/values (B, nh, F, hs) at the slots reserved by :meth:`begin_step`."""
        pos = self._write_pos
        # Advanced indices split by a slice put their dims first: the target is (B, F, nh, hs).
        self.k[layer][self._rows[:, None], :, pos] = k.transpose(1, 2).to(self.k[layer].dtype)
        self.v[layer][self._rows[:, None], :, pos] = v.transpose(1, 2).to(self.v[layer].dtype)

    def keys(self, layer: int) -> torch.Tensor:
        return self.k[layer]

    def values(self, layer: int) -> torch.Tensor:
        return self.v[layer]
