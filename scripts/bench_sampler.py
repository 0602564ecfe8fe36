"""Sampler speed: a batch of 512 windows should cost far less than 64 batches of 8 (no per-sample Python loop).

This was a timed assertion in tests/data/test_sampler.py, which failed by noise on a busy machine; a speed
claim belongs here. Usage: ``OMP_NUM_THREADS=1 python scripts/bench_sampler.py``.
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np

from dtkit.data import SegmentSampler, Trajectories, spec_from_spaces


def trajectories(lengths: list[int]) -> Trajectories:
    rng = np.random.default_rng(0)
    eps = [{"observations": rng.normal(size=(n + 1, 11)).astype(np.float32), "actions": rng.uniform(-1, 1, (n, 3)),
            "rewards": rng.normal(size=n), "terminations": np.arange(n) == n - 1, "truncations": np.zeros(n, bool)}
           for n in lengths]
    return Trajectories.from_episodes(eps, gym.spaces.Box(-np.inf, np.inf, (11,)), gym.spaces.Box(-1, 1, (3,)))


def ms_per_batch(sampler: SegmentSampler, repeats: int = 50) -> float:
    sampler.sample()
    start = time.perf_counter()
    for _ in range(repeats):
        sampler.sample()
    return 1000 * (time.perf_counter() - start) / repeats


def main() -> None:
    traj = trajectories([1000] * 20)
    spec = spec_from_spaces(traj.observation_space, traj.action_space, context_len=20)
    small, large = ms_per_batch(SegmentSampler(traj, spec, 8)), ms_per_batch(SegmentSampler(traj, spec, 512))
    print(f"batch 8: {small:.3f} ms; batch 512: {large:.3f} ms; 512 costs {large / small:.1f}x of 8 "
          f"(a per-sample loop would cost about 64x)")


if __name__ == "__main__":
    main()
