"""Batched evaluation over ``gymnasium.vector``: one forward pass per vector step."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from dtkit.errors import DtkitError
from dtkit.gym_env import make_env
from dtkit.policy import DTPolicy

__all__ = ["EvalReport", "TargetResult", "evaluate", "make_vector_env", "normalized_score"]


@dataclass
class TargetResult:
    target_return: float
    episode_returns: list[float]
    episode_lengths: list[int]
    mean_return: float
    std_return: float
    normalized_score: float | None


@dataclass
class EvalReport:
    """What ``dtkit eval`` writes to ``eval.json``.

    Top-level ``mean_return``, ``episode_returns`` and ``normalized_score`` are
    those of the first target; ``per_target`` holds every target.
    """

    env_id: str
    target_returns: list[float]
    episode_returns: list[float]
    mean_return: float
    normalized_score: float | None
    normalized_score_reason: str | None
    num_envs: int
    num_episodes: int
    env_steps_per_s: float
    env_steps: int
    wall_s: float
    cache: bool
    per_target: list[TargetResult] = field(default_factory=list)
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    checkpoint: str | None = None
    dataset_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"{self.env_id}: {self.num_episodes} episodes x {len(self.target_returns)} target(s), "
                 f"{self.num_envs} envs, {self.env_steps_per_s:,.0f} env-steps/s"]
        for r in self.per_target:
            norm = f"{r.normalized_score:.1f}" if r.normalized_score is not None else "n/a"
            lines.append(f"  target {r.target_return:g}: return {r.mean_return:.1f} ± {r.std_return:.1f}, normalised {norm}")
        if self.normalized_score is None and self.normalized_score_reason:
            lines.append(f"  normalised score: null ({self.normalized_score_reason})")
        return "\n".join(lines)


def normalized_score(ret: float, ref_min: float | None, ref_max: float | None) -> tuple[float | None, str | None]:
    """100 * (R - ref_min) / (ref_max - ref_min), or (None, reason) when the references are missing."""
    if ref_min is None or ref_max is None:
        return None, "the dataset's metadata has no ref_min_score/ref_max_score"
    if ref_max == ref_min:
        return None, f"ref_min_score equals ref_max_score ({ref_min}); the score is undefined"
    return 100.0 * (ret - ref_min) / (ref_max - ref_min), None


def make_vector_env(env_id: str, num_envs: int, env_kwargs: dict[str, Any] | None = None) -> gym.vector.VectorEnv:
    """A SyncVectorEnv that resets finished envs within the same step (their next obs is the new episode's)."""
    kwargs = env_kwargs or {}  # an unknown id fails in make_env, as SyncVectorEnv builds the envs here
    return gym.vector.SyncVectorEnv([lambda: make_env(env_id, **kwargs) for _ in range(num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def _run_target(policy: DTPolicy, envs: gym.vector.VectorEnv, target: float, num_episodes: int, seed: int,
                bar: tqdm | None) -> tuple[list[float], list[int], int]:
    n = envs.num_envs
    # Equal quotas per env: taking whichever episodes finish first would favour short ones.
    quota = np.full(n, num_episodes // n) + (np.arange(n) < num_episodes % n)
    got = np.zeros(n, dtype=int)
    returns: list[float] = []
    lengths: list[int] = []
    ep_ret, ep_len = np.zeros(n), np.zeros(n, dtype=int)
    policy.set_target_return(target)
    policy.reset()
    obs, _ = envs.reset(seed=seed)
    steps = 0
    while (got < quota).any():
        action = policy.act(obs)
        obs, reward, terminated, truncated, _ = envs.step(action)
        policy.record(reward)
        ep_ret += reward
        ep_len += 1
        steps += n
        done = np.logical_or(terminated, truncated)
        if done.any():
            for i in np.flatnonzero(done & (got < quota)):
                returns.append(float(ep_ret[i]))
                lengths.append(int(ep_len[i]))
                got[i] += 1
                if bar is not None:
                    bar.update(1)
            ep_ret[done], ep_len[done] = 0.0, 0
            policy.reset(done)
    return returns, lengths, steps


def evaluate(policy: DTPolicy, env_id: str, target_returns: list[float], num_episodes: int = 10, *, seed: int = 0,
             ref_min_score: float | None = None, ref_max_score: float | None = None, progress: bool = True,
             env_kwargs: dict[str, Any] | None = None) -> EvalReport:
    """Roll out ``policy`` for ``num_episodes`` per target return in ``policy.num_envs`` vectorised envs.

    Example:
        >>> report = evaluate(policy, "CartPole-v1", [500.0], num_episodes=10)  # doctest: +SKIP
        >>> report.mean_return  # doctest: +SKIP
    """
    if not target_returns:
        raise DtkitError("no target returns given; pass at least one, e.g. --target-returns 500")
    for t in target_returns:
        if not np.isfinite(t):
            raise DtkitError(f"target return {t!r} is not finite; pass finite numbers, e.g. --target-returns 500")
    if num_episodes < 1:
        raise DtkitError(f"num_episodes={num_episodes} is invalid; use at least 1")
    envs = make_vector_env(env_id, policy.num_envs, env_kwargs)
    results: list[TargetResult] = []
    total_steps, start = 0, time.perf_counter()
    reasons: list[str | None] = []
    try:
        with tqdm(total=num_episodes * len(target_returns), desc="eval episodes", disable=not progress, leave=False) as bar:
            for target in target_returns:
                rets, lens, steps = _run_target(policy, envs, float(target), num_episodes, seed, bar)
                total_steps += steps
                mean = float(np.mean(rets))
                norm, reason = normalized_score(mean, ref_min_score, ref_max_score)
                reasons.append(reason)
                results.append(TargetResult(float(target), rets, lens, mean, float(np.std(rets)), norm))
    finally:
        envs.close()
    wall = time.perf_counter() - start
    first = results[0]
    return EvalReport(
        env_id=env_id, target_returns=[float(t) for t in target_returns], episode_returns=first.episode_returns,
        mean_return=first.mean_return, normalized_score=first.normalized_score, normalized_score_reason=reasons[0],
        num_envs=policy.num_envs, num_episodes=num_episodes, env_steps_per_s=total_steps / wall, env_steps=total_steps,
        wall_s=wall, cache=policy.use_cache, per_target=results, ref_min_score=ref_min_score, ref_max_score=ref_max_score,
    )
