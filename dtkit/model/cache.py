"""A per-environment KV cache for batched, incremental decoding.

Each row (environment) has its own fill level. New tokens are written at each
row's own offset; ``valid`` marks which slots may be attended to. Slot order
inside the buffer does not matter: dtkit has no position-dependent attention
(positions are learned embeddings added to the tokens), so a row is exact as
long as exactly the right keys are visible.

Fill levels are mirrored on the host, so the common case of rows in lockstep
(all environments at the same offset) writes with plain slices and attends
over the filled prefix only, without a device sync.
"""

from __future__ import annotations

import numpy as np
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
        self.capacity = capacity
        self.device = torch.device(device)
        self._len = np.zeros(batch, dtype=np.int64)  # host copy of each row's fill level
        self._rows = torch.arange(batch, device=device)
        self._slots = torch.arange(capacity, device=device)
        self._start: int | None = None  # shared write offset when rows are in lockstep
        self._write_pos: torch.Tensor | None = None
        self._span = 0  # keys attended this step: the longest row's fill level
        self._len_dev = torch.zeros(batch, dtype=torch.long, device=device)  # fill levels on the device (static steps)
        self._eyes: dict[int, torch.Tensor] = {}

    @staticmethod
    def _host_rows(rows: torch.Tensor) -> np.ndarray:
        r = rows.cpu().numpy()
        return np.flatnonzero(r) if r.dtype == bool else r

    def reset(self, rows: torch.Tensor) -> None:
        """Empty the given rows (a bool mask or index tensor)."""
        self.valid[rows] = False
        self._len[self._host_rows(rows)] = 0

    def load(self, rows: torch.Tensor, kvs: list[tuple[torch.Tensor, torch.Tensor]], valid: torch.Tensor | None = None) -> None:
        """Replace ``rows`` with freshly computed keys/values, each (len(rows), nh, L, hs).

        ``valid``: (len(rows), L) bool, False for tokens no one may attend to (absent fields); default all True.
        """
        n = kvs[0][0].shape[2]
        for layer, (k, v) in enumerate(kvs):
            self.k[layer][rows, :, :n] = k.to(self.k[layer].dtype)
            self.v[layer][rows, :, :n] = v.to(self.v[layer].dtype)
        self.valid[rows] = False
        self.valid[rows, :n] = True if valid is None else valid.to(self.device)
        self._len[self._host_rows(rows)] = n

    def sync_lengths(self) -> None:
        """Copy the host fill levels to the device: call before a ``static`` step (outside a CUDA graph)."""
        self._len_dev.copy_(torch.from_numpy(self._len))

    def begin_step(self, new_valid: torch.Tensor, rule: torch.Tensor, static: bool = False) -> torch.Tensor:
        """Reserve slots for F new tokens per row and return the attention mask.

        Args:
            new_valid: (B, F) bool, False for placeholder tokens that must stay invisible.
            rule: (F, F) bool, which new token may attend to which (block-causal).
            static: shapes and indices that do not depend on the fill levels (the mask spans the whole
                buffer, positions come from the device copy made by :meth:`sync_lengths`), so a CUDA
                graph captured once replays every step. Same visible keys, so the same outputs.

        Returns:
            (B, 1, F, span) bool mask over the filled part of the buffer (all of it when static), new tokens included.
        """
        B, F = new_valid.shape
        top = int(self._len.max()) + F
        if top > self.capacity:
            raise RuntimeError("KV cache overflow: the policy must rebuild a row before it fills")
        if static:
            top = self.capacity
        self._span = top
        if F not in self._eyes:
            self._eyes[F] = torch.eye(F, dtype=torch.bool, device=new_valid.device)
        # Every query sees itself, so rows of placeholders never turn into NaN.
        new_ok = (rule[None] & new_valid[:, None, :]) | self._eyes[F]  # (B, F, F)
        if not static and (self._len == self._len[0]).all():
            s = self._start = int(self._len[0])
            self.valid[:, s:top] = new_valid
            mask = torch.cat([self.valid[:, None, :s].expand(B, F, s), new_ok], dim=2)  # (B, F, span)
        else:
            self._start = None
            length = self._len_dev if static else torch.from_numpy(self._len).to(self.device)
            pos = length[:, None] + torch.arange(F, device=self.device)  # (B, F)
            self._write_pos = pos
            self.valid[self._rows[:, None], pos] = new_valid
            rel = self._slots[None, :top] - length[:, None]  # (B, span): index among new tokens, <0 for old
            is_new = (rel >= 0) & (rel < F)
            picked = new_ok.gather(2, rel.clamp(0, F - 1)[:, None, :].expand(B, F, top))  # (B, F, span)
            mask = torch.where(is_new[:, None, :], picked, self.valid[:, None, :top] & (rel < 0)[:, None, :])
        self._len += F
        return mask[:, None]  # (B, 1, F, span)

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store the new tokens' keys/values (B, nh, F, hs) at the slots reserved by :meth:`begin_step`."""
        if self._start is not None:
            s, F = self._start, k.shape[2]
            self.k[layer][:, :, s:s + F] = k
            self.v[layer][:, :, s:s + F] = v
            return
        pos = self._write_pos
        # Advanced indices split by a slice put their dims first: the target is (B, F, nh, hs).
        self.k[layer][self._rows[:, None], :, pos] = k.transpose(1, 2).to(self.k[layer].dtype)
        self.v[layer][self._rows[:, None], :, pos] = v.transpose(1, 2).to(self.v[layer].dtype)

    def keys(self, layer: int) -> torch.Tensor:
        return self.k[layer][:, :, : self._span]

    def values(self, layer: int) -> torch.Tensor:
        return self.v[layer][:, :, : self._span]
