"""Random K-step windows, weighted by episode length, gathered without a per-sample Python loop."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dtkit.batch import Batch
from dtkit.data.trajectories import Trajectories
from dtkit.errors import DtkitError
from dtkit.spec import Spec

__all__ = ["SegmentSampler"]


class SegmentSampler:
    """Samples (B, K) windows from :class:`Trajectories` as a :class:`Batch`.

    A step is drawn uniformly over all steps (so episodes are weighted by their
    length) and the window starts there, moved back when it would run past the
    episode's end; only episodes shorter than K are padded, always on the right.
    Returns-to-go are divided by ``spec.return_scale``, the same quantity the
    policy feeds at evaluation time (DESIGN invariant 3).

    Example:
        >>> sampler = SegmentSampler(traj, spec, batch_size=64, seed=0)  # doctest: +SKIP
        >>> batch = sampler.sample()  # doctest: +SKIP
    """

    def __init__(self, traj: Trajectories, spec: Spec, batch_size: int, seed: int = 0, device: str | torch.device = "cpu") -> None:
        if batch_size < 1:
            raise DtkitError(f"batch_size={batch_size} is invalid; use a positive batch size")
        self.spec, self.batch_size, self.device = spec, batch_size, torch.device(device)
        self.rng = np.random.default_rng(seed)
        K = spec.context_len
        self._steps = np.arange(K)
        self._episode_of = np.repeat(np.arange(traj.num_episodes), traj.episode_lengths)
        self._ep_start = traj.episode_starts
        self._ep_len = traj.episode_lengths
        self._num_steps = traj.num_steps
        # Everything is converted once; sampling is pure indexing.
        self._obs = {f.key: torch.from_numpy(np.ascontiguousarray(traj.obs[f.key])) for f in spec.obs}
        acts = traj.actions if spec.action.discrete else spec.action.to_unit(traj.actions)
        self._actions = torch.from_numpy(np.ascontiguousarray(acts))
        self._returns = torch.from_numpy((traj.returns_to_go / spec.return_scale).astype(np.float32))
        self._rewards = torch.from_numpy(traj.rewards.astype(np.float32))
        self._timesteps = torch.from_numpy(traj.timesteps)

    def sample(self) -> Batch:
        B, K = self.batch_size, self.spec.context_len
        step = self.rng.integers(self._num_steps, size=B)
        ep = self._episode_of[step]
        start, length = self._ep_start[ep], self._ep_len[ep]
        offset = np.minimum(step - start, np.maximum(length - K, 0))  # window start within its episode
        rel = offset[:, None] + self._steps  # (B, K)
        mask = rel < length[:, None]
        # Padding repeats the last real step; the mask hides it from loss and attention.
        idx = torch.from_numpy(start[:, None] + np.minimum(rel, length[:, None] - 1))
        batch = Batch(
            returns=self._returns[idx],
            obs={k: v[idx] for k, v in self._obs.items()},
            actions=self._actions[idx],
            rewards=self._rewards[idx],
            timesteps=self._timesteps[idx],
            mask=torch.from_numpy(mask),
        )
        if self.device.type == "cuda":
            return batch.pin_memory().to(self.device, non_blocking=True)
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
