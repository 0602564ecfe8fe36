"""The episode loop of one target return, over one vector env or several overlapped groups of envs.

With one group (gymnasium's ``SyncVectorEnv``, or a vector env the user made) a step is: act,
step every env, record. With two groups whose envs step outside this thread (``AsyncVectorEnv``
worker processes, envpool's C++ threads) the groups take turns: while one group's envs run
their physics, the policy picks the other group's actions, so model time hides behind env time
instead of adding to it. Each group has its own policy (and cache) over its own rows.

The accounting is the same either way: equal quotas per env, a return is the sum of the rewards
of one episode, and episodes finishing at the same step are listed in env order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from dtkit.errors import DtkitError
from dtkit.policy import DTPolicy

__all__ = ["TargetRun", "run_target", "run_targets"]


@dataclass
class TargetRun:
    """What one target's episodes gave: returns and lengths in finishing order, and counts for diagnostics."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    steps: int = 0
    at_bounds: int = 0
    counted: int = 0


def next_step_autoreset(envs: gym.vector.VectorEnv) -> bool:
    """True when ``envs`` resets a finished env on the following step (gymnasium 1.0, or NEXT_STEP on 1.1+)."""
    mode = envs.metadata.get("autoreset_mode")
    enum = getattr(gym.vector, "AutoresetMode", None)
    if mode is None or enum is None:
        return True  # gymnasium 1.0 records no mode: it only has next-step resets
    mode = mode.value if hasattr(mode, "value") else str(mode)
    if mode == enum.SAME_STEP.value:
        return False
    if mode == enum.NEXT_STEP.value:
        return True
    raise DtkitError(f"the vector env resets with autoreset_mode={mode!r}; dtkit evaluates with NEXT_STEP or SAME_STEP "
                     "(gymnasium's default), so build the vector env with one of those")


class _Group:
    """One vector env, its policy, and the bookkeeping of its rows ``first .. first + num_envs``."""

    def __init__(self, envs: gym.vector.VectorEnv, policy: DTPolicy, first: int, target: int) -> None:
        self.envs, self.policy, self.target = envs, policy, target
        self.rows = slice(first, first + envs.num_envs)
        self.next_step = next_step_autoreset(envs)
        self.overlapped = hasattr(envs, "step_async")
        space = envs.single_action_space
        self.bounds = _bounds(space)
        self.action_size = int(np.prod(space.shape or ())) if self.bounds is not None else 0

    def start(self, target: float, seed: int) -> None:
        n = self.envs.num_envs
        self.policy.set_target_return(target)
        self.policy.reset()
        self.obs, _ = self.envs.reset(seed=seed)
        self.resetting = np.zeros(n, dtype=bool)  # NEXT_STEP mode: these envs spend this step resetting
        self.ep_ret, self.ep_len = np.zeros(n), np.zeros(n, dtype=int)
        self.action: np.ndarray | None = None

    def send(self, run: TargetRun, wanted: np.ndarray) -> None:
        """Pick actions for the current observations and start the envs stepping (or keep them for :meth:`receive`)."""
        action = self.policy.act(self.obs)
        if self.bounds is not None:  # only actions that reach a counted episode's env
            used = ~self.resetting & wanted
            run.at_bounds += int(_at_bounds(np.asarray(action)[used], *self.bounds).sum())
            run.counted += int(used.sum()) * self.action_size
        if self.overlapped:
            cast(Any, self.envs).step_async(action)
        else:
            self.action = action

    def receive(self, run: TargetRun, got: np.ndarray, quota: np.ndarray, bar: tqdm | None) -> None:
        """Finish the step: record rewards, count finished episodes against the quotas ``got``/``quota`` (this group's rows)."""
        if self.overlapped:
            self.obs, reward, terminated, truncated, _ = cast(Any, self.envs).step_wait()
        else:
            self.obs, reward, terminated, truncated, _ = self.envs.step(self.action)
        reward = np.asarray(reward, dtype=np.float64)
        self.policy.record(reward)
        live = ~self.resetting
        self.ep_ret += np.where(live, reward, 0.0)
        self.ep_len += live
        run.steps += int(live.sum())
        if self.resetting.any():  # the obs just returned starts a new episode; the action taken was ignored
            self.policy.reset(self.resetting)
            self.ep_ret[self.resetting], self.ep_len[self.resetting] = 0.0, 0
        done = np.logical_or(terminated, truncated) & live
        if done.any():
            for i in np.flatnonzero(done & (got < quota)):
                run.returns.append(float(self.ep_ret[i]))
                run.lengths.append(int(self.ep_len[i]))
                got[i] += 1
                if bar is not None:
                    bar.update(1)
            self.ep_ret[done], self.ep_len[done] = 0.0, 0
            if not self.next_step:
                self.policy.reset(done)
        self.resetting = done if self.next_step else self.resetting


def run_target(groups: list[tuple[gym.vector.VectorEnv, DTPolicy]], target: float, num_episodes: int, seed: int,
               bar: tqdm | None) -> TargetRun:
    """Episodes at return ``target`` until every env met its quota. Env i of the whole (groups in order) is
    seeded ``seed + i``, as one vector env of all of them would be."""
    return run_targets([(envs, policy, 0) for envs, policy in groups], [target], num_episodes, seed, bar)[0]


def run_targets(groups: list[tuple[gym.vector.VectorEnv, DTPolicy, int]], targets: list[float], num_episodes: int,
                seed: int, bar: tqdm | None) -> list[TargetRun]:
    """Several targets in one pass: each group ``(envs, policy, k)`` runs at ``targets[k]``; ``num_episodes``
    per target, in equal quotas over that target's envs. Env i of a target (its groups in order) is seeded
    ``seed + i``, so every target starts from the states a run of that target alone would."""
    parts, sizes = [], [0] * len(targets)
    for envs, policy, k in groups:
        parts.append(_Group(envs, policy, sizes[k], k))
        sizes[k] += envs.num_envs
    # Equal quotas per env: taking whichever episodes finish first would favour short ones.
    quotas = [np.full(n, num_episodes // n) + (np.arange(n) < num_episodes % n) for n in sizes]
    gots = [np.zeros(n, dtype=int) for n in sizes]
    runs = [TargetRun() for _ in targets]
    for g in parts:
        g.start(targets[g.target], seed + g.rows.start)

    def wanted(g: _Group) -> np.ndarray:
        return gots[g.target][g.rows] < quotas[g.target][g.rows]

    pending = []
    for g in parts:
        if wanted(g).any():
            g.send(runs[g.target], wanted(g))
            pending.append(g)
    while pending:
        # Groups take turns in a fixed order, so episodes that end at the same step are listed in env order.
        still = []
        for g in pending:
            g.receive(runs[g.target], gots[g.target][g.rows], quotas[g.target][g.rows], bar)
            if wanted(g).any():
                g.send(runs[g.target], wanted(g))
                still.append(g)
        pending = still
    return runs


def _bounds(space: gym.Space) -> tuple[np.ndarray, np.ndarray] | None:
    if not isinstance(space, gym.spaces.Box) or not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
        return None
    return space.low.astype(np.float64), space.high.astype(np.float64)


def _at_bounds(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Which components sit within 0.1% of the range from a bound (a tanh head saturates there)."""
    tol = 1e-3 * (high - low)
    return (action <= low + tol) | (action >= high - tol)
