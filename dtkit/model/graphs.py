"""The cached step captured in one CUDA graph per batch size, so that a step on a GPU is one replay.

At the paper's model size a cached step is some 60 small kernels; launched one by one from
Python they leave the GPU idle most of the time (issue 12: the eager step, not the arithmetic,
bounded evaluation on an H200). The graph replays the *static* form of the step
(:meth:`dtkit.model.cache.KVCache.begin_step` with ``static=True``): attention over the whole
cache buffer with the filled part unmasked, write positions from a device copy of the fill
levels. Its outputs equal the eager step's (``tests/model/test_static_step.py`` on CPU; the
replayed graph against the eager step in ``tests/model/test_cuda_graph.py``, ``-m gpu``).

The cache rebuild stays eager: it writes the same buffers the graph reads.
"""

from __future__ import annotations

from typing import Any

import torch

from dtkit.model.cache import KVCache

__all__ = ["GraphedStep"]


def _clone(tree: Any) -> Any:
    if isinstance(tree, tuple):
        return tuple(_clone(v) for v in tree)
    if isinstance(tree, dict):
        return {k: _clone(v) for k, v in tree.items()}
    return tree.clone() if isinstance(tree, torch.Tensor) else tree


def _copy_into(dst: Any, src: Any) -> None:
    if isinstance(dst, tuple):
        for d, v in zip(dst, src):
            _copy_into(d, v)
    elif isinstance(dst, dict):
        for k, v in dst.items():
            _copy_into(v, src[k])
    elif isinstance(dst, torch.Tensor):
        dst.copy_(src, non_blocking=True)


class GraphedStep:
    """``model.step(cache, ...)`` for one batch size as a CUDA graph; call it like ``model.step`` without the cache.

    Capture runs the step on the cache, so build this while the cache holds nothing worth keeping:
    it empties every row afterwards.

    Args:
        model: a :class:`DecisionTransformer` on a CUDA device, in eval mode.
        cache: its cache (``model.new_cache``) on the same device.
        example: the arguments of one step after the cache (prev, prev_timestep, prev_valid, cur,
            timestep, obs_tokens), with the shapes and dtypes every later step will have.
    """

    def __init__(self, model: Any, cache: KVCache, example: tuple[Any, ...]) -> None:
        if cache.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device; the cache is on {cache.device}")
        self.model, self.cache = model, cache
        self.inputs = _clone(example)
        self.n_new = model.spec.tokens_per_step
        rows = torch.arange(len(cache._len), device=cache.device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():  # first runs allocate; a graph must not
            for _ in range(2):
                self._run_eager()
                cache.reset(rows)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        cache.sync_lengths()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self.output = model.step(cache, *self.inputs[:5], obs_tokens=self.inputs[5], static=True)
        cache.reset(rows)  # capture advanced the host fill levels (begin_step ran once on the host)
        torch.cuda.synchronize()

    def _run_eager(self) -> torch.Tensor:
        self.cache.sync_lengths()
        return self.model.step(self.cache, *self.inputs[:5], obs_tokens=self.inputs[5], static=True)

    def __call__(self, prev: dict[str, torch.Tensor], prev_timestep: torch.Tensor, prev_valid: torch.Tensor,
                 cur: dict[str, Any], timestep: torch.Tensor, obs_tokens: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        cache = self.cache
        if int(cache._len.max()) + self.n_new > cache.capacity:
            raise RuntimeError("KV cache overflow: the policy must rebuild a row before it fills")
        _copy_into(self.inputs, (prev, prev_timestep, prev_valid, cur, timestep, obs_tokens))
        cache.sync_lengths()
        self.graph.replay()
        # What begin_step does on the host, which a replay does not run.
        cache._len += self.n_new
        cache._start, cache._span = None, cache.capacity
        return self.output.clone()  # the next replay overwrites the static output
