"""Batched evaluation over ``gymnasium.vector``: one forward pass per vector step."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Union

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from dtkit.errors import DtkitError
from dtkit.policy import DTPolicy
from dtkit.rollout.backends import make_vector_env
from dtkit.rollout.runner import run_targets

__all__ = ["EvalReport", "TargetResult", "evaluate", "make_vector_env", "normalized_score"]


@dataclass
class TargetResult:
    target_return: float
    episode_returns: list[float]
    episode_lengths: list[int]
    mean_return: float
    std_return: float
    normalized_score: float | None
    mean_length: float | None = None
    """Mean episode length: episodes much shorter than the env's limit mean the policy fell or failed early."""
    return_minus_target: float | None = None
    """mean_return - target_return: how far the policy fell short of (or overshot) the return it was asked for."""
    action_at_bounds_fraction: float | None = None
    """Box actions: the fraction of action components within 0.1% of the range from a bound (None for Discrete).
    A high value means a saturated tanh head: bang-bang control that cannot make fine corrections."""


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
    seed: int | None = None
    """Seed of the envs' first reset for every target (each target restarts from it)."""
    non_finite_reason: str | None = None
    """Set when an episode return was NaN or inf; those values are written as null."""
    returns_rise_with_target: bool | None = None
    """With 2+ distinct targets: whether the achieved mean return rises strictly with the target (sorted by target)."""
    env_backend: str = "sync"
    """Engine that stepped envs made from an id or factory: sync, async or envpool (a given VectorEnv is used as is)."""
    split_targets: bool = False
    """Whether the targets ran at once, each on its share of the envs, rather than one after the other."""
    return_to_go_range: list[float] | None = None
    """The range the model's return-to-go input was clamped to (the training data's); null: not clamped."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: a non-finite number becomes null (``non_finite_reason`` says why), never NaN."""
        return _finite_or_none(asdict(self))

    def summary(self) -> str:
        lines = [f"{self.env_id}: {self.num_episodes} episodes x {len(self.target_returns)} target(s), "
                 f"{self.num_envs} envs, {self.env_steps_per_s:,.0f} env-steps/s"]
        for r in self.per_target:
            norm = f"{r.normalized_score:.1f}" if r.normalized_score is not None else "n/a"
            line = f"  target {r.target_return:g}: return {r.mean_return:.1f} ± {r.std_return:.1f}, normalised {norm}"
            if r.return_minus_target is not None:
                line += f", {r.return_minus_target:+.1f} vs target"
            if r.mean_length is not None:
                line += f", length {r.mean_length:.0f}"
            if r.action_at_bounds_fraction is not None:
                line += f", actions at bounds {100 * r.action_at_bounds_fraction:.1f}%"
            lines.append(line)
        if self.returns_rise_with_target is not None:
            lines.append(f"  achieved return rises with the target: {'yes' if self.returns_rise_with_target else 'no'}")
        if self.return_to_go_range is not None:
            lo, hi = self.return_to_go_range
            lines.append(f"  return-to-go fed to the model clamped to the training data's [{lo:g}, {hi:g}]")
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


EnvSource = Union[str, gym.vector.VectorEnv, Callable[[], gym.Env]]
"""What :func:`evaluate` runs in: a registered id, a vector env, or a factory of single envs."""


def _finite_or_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite_or_none(v) for v in x]
    return x


def _rises(results: list[TargetResult]) -> bool | None:
    by_target = sorted((r.target_return, r.mean_return) for r in results)
    if len({t for t, _ in by_target}) < 2:
        return None
    return all(a[1] < b[1] for a, b in itertools.pairwise(by_target) if a[0] < b[0])


def evaluate(policy: DTPolicy, env_id: EnvSource, target_returns: list[float], num_episodes: int = 10, *, seed: int = 0,
             ref_min_score: float | None = None, ref_max_score: float | None = None, progress: bool = True,
             env_kwargs: dict[str, Any] | None = None, recorded_spec: str | None = None, env_backend: str = "sync",
             split_targets: bool = False) -> EvalReport:
    """Roll out ``policy`` for ``num_episodes`` per target return in ``policy.num_envs`` vectorised envs.

    Args:
        env_id: a gymnasium id (``"module:Env-v0"`` works), a ``gymnasium.vector.VectorEnv`` with
            ``policy.num_envs`` envs (wrapped or unregistered envs; it is closed afterwards), or a
            zero-argument factory of single envs. The spaces must match the policy's either way.
        recorded_spec: the dataset's env spec JSON, to remake the env it was collected in from an id.
        env_backend: the engine that steps envs made from an id or factory: "sync" (gymnasium SyncVectorEnv),
            "async" (gymnasium AsyncVectorEnv, a process per env) or "envpool" (optional extra, ids only).
        split_targets: run every target at once, each on its share of the envs (env i of a share seeded
            ``seed + i``, as each target alone would be), instead of one target after the other on all envs.

    Example:
        >>> report = evaluate(policy, "CartPole-v1", [500.0], num_episodes=10)  # doctest: +SKIP
        >>> report = evaluate(policy, lambda: MyWrapper(gym.make("CartPole-v1")), [500.0])  # doctest: +SKIP
    """
    if not target_returns:
        raise DtkitError("no target returns given; pass at least one, e.g. --target-returns 500")
    for t in target_returns:
        if not np.isfinite(t):
            raise DtkitError(f"target return {t!r} is not finite; pass finite numbers, e.g. --target-returns 500")
    if num_episodes < 1:
        raise DtkitError(f"num_episodes={num_episodes} is invalid; use at least 1")
    from dtkit.data.spaces import check_env_spaces

    split = split_targets and len(target_returns) > 1
    if isinstance(env_id, gym.vector.VectorEnv):
        if split:
            raise DtkitError("split_targets needs an env id or an env factory (it makes one vector env per target), "
                             "not a ready VectorEnv; pass a factory, or evaluate the targets one after the other")
        groups, name = [(env_id, policy, 0)], _env_name(env_id)
    elif isinstance(env_id, str) or callable(env_id):
        if split and policy.num_envs < len(target_returns):
            raise DtkitError(f"--split-targets needs at least one env per target: num_envs={policy.num_envs} for "
                             f"{len(target_returns)} targets; raise --num-envs or drop --split-targets")
        groups = _env_groups(env_id, policy, env_kwargs, recorded_spec, env_backend, len(target_returns) if split else 1)
        name = env_id if isinstance(env_id, str) else _env_name(groups[0][0])
    else:
        raise DtkitError(f"evaluate needs an env id, a gymnasium VectorEnv or an env factory, got {type(env_id).__name__}")
    try:
        num_envs = sum(envs.num_envs for envs, _, _ in groups)
        if num_envs != policy.num_envs:
            raise DtkitError(f"the vector env has {num_envs} envs but the policy drives num_envs={policy.num_envs}; "
                             "make them equal")
        for envs, _, _ in groups:
            check_env_spaces(policy.spec, envs.single_observation_space, envs.single_action_space, name, "the policy",
                             metadata=envs.metadata)
    except BaseException:
        _close(groups)
        raise
    results: list[TargetResult] = []
    total_steps, start = 0, time.perf_counter()
    reasons: list[str | None] = []
    try:
        with tqdm(total=num_episodes * len(target_returns), desc="eval episodes", disable=not progress, leave=False) as bar:
            targets = [float(t) for t in target_returns]
            runs = (run_targets(groups, targets, num_episodes, seed, bar) if split
                    else [run_targets(groups, [t], num_episodes, seed, bar)[0] for t in targets])
            for target, run in zip(targets, runs):
                rets, lens = run.returns, run.lengths
                at_bounds = run.at_bounds / run.counted if run.counted else None
                total_steps += run.steps
                mean = float(np.mean(rets))
                norm, reason = normalized_score(mean, ref_min_score, ref_max_score)
                reasons.append(reason)
                results.append(TargetResult(float(target), rets, lens, mean, float(np.std(rets)), norm,
                                            mean_length=float(np.mean(lens)), return_minus_target=mean - float(target),
                                            action_at_bounds_fraction=at_bounds))
    finally:
        _close(groups)
    wall = time.perf_counter() - start
    first = results[0]
    bad = [r.target_return for r in results if not all(math.isfinite(x) for x in r.episode_returns)]
    return EvalReport(
        env_id=name, target_returns=[float(t) for t in target_returns], episode_returns=first.episode_returns,
        mean_return=first.mean_return, normalized_score=first.normalized_score, normalized_score_reason=reasons[0],
        num_envs=policy.num_envs, num_episodes=num_episodes, env_steps_per_s=total_steps / wall, env_steps=total_steps,
        wall_s=wall, cache=policy.use_cache, per_target=results, ref_min_score=ref_min_score, ref_max_score=ref_max_score,
        seed=seed, returns_rise_with_target=_rises(results), env_backend=env_backend, split_targets=split,
        return_to_go_range=None if policy.return_to_go_bounds is None else list(policy.return_to_go_bounds),
        non_finite_reason=(f"the environment returned non-finite rewards (targets {bad}); those returns are null"
                                      if bad else None),
    )


Group = tuple[gym.vector.VectorEnv, DTPolicy, int]
"""A vector env, the policy driving it, and the index of the target it runs at."""


def _env_groups(env: str | Callable[[], gym.Env], policy: DTPolicy, env_kwargs: dict[str, Any] | None,
                recorded_spec: str | None, backend: str, n_targets: int) -> list[Group]:
    """The policy's envs as equal shares, one per target (one share unless targets are split). On a backend whose
    envs step outside this thread (async, envpool) a share is two halves that take turns, so the model runs while
    the other half steps (see runner). Each part gets its own policy unless it is the whole."""
    n = policy.num_envs
    groups: list[Group] = []
    try:
        for k in range(n_targets):
            share = n // n_targets + (k < n % n_targets)
            parts = [share] if backend == "sync" or share < 2 else [share // 2, share - share // 2]
            for size in parts:
                driver = policy if size == n else DTPolicy(
                    policy.model, size, policy.target_return, use_cache=policy.use_cache, keep=policy.keep,
                    deterministic=policy.deterministic, device=policy.device, cuda_graph=policy.cuda_graph,
                    clamp_return_to_go=policy.return_to_go_bounds is not None)
                groups.append((make_vector_env(env, size, env_kwargs, recorded_spec, backend), driver, k))
    except BaseException:
        _close(groups)
        raise
    return groups


def _close(groups: list[Group]) -> None:
    for envs, _, _ in groups:
        envs.close()


def _env_name(envs: gym.vector.VectorEnv) -> str:
    spec = getattr(envs.unwrapped, "spec", None) or getattr(getattr(envs, "envs", [None])[0], "spec", None)
    return spec.id if spec is not None else type(envs).__name__
