"""Scripted-expert recipes: a hand-written expert, with epsilon noise, instead of an SB3 agent.

A recipe names ``expert = "pkg.mod:ClassName"``. The class is built as
``ClassName(env)`` for each episode and must provide ``reset(obs, info)`` and
``act(obs, info) -> action``; it may read privileged state from
``env.unwrapped`` (a MiniGrid grid, the target word of a speech task): it
generates data, it does not learn. At each step, with probability ``epsilon``
the tier takes a uniformly random action instead, which gives mixed quality
(the data shows slips and the expert's recovery from them, as in DART,
Laskey et al., 2017).

Episodes are recorded by :class:`~dtkit.collect.record.RecordEpisodes` and
streamed to the dataset as they finish (:class:`~dtkit.collect.writer.DatasetStream`),
so memory holds one episode at a time whatever the tier size. Episode ``j``
of tier ``i`` is reset with a seed from ``(seed, i, j)`` and draws its noise
from an RNG seeded the same way: the dataset is a pure function of the recipe.

``ref_min_score`` is the mean return of uniform random actions and
``ref_max_score`` that of the noiseless expert, over ``ref_episodes`` episodes
on seeds no tier uses (D4RL's convention).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Iterator

import gymnasium as gym
import numpy as np

from dtkit.collect.build import Behaviour
from dtkit.collect.episodes import REF_STREAM, TIER_RNG_STREAM, TIER_STREAM, Episode, episode_seed
from dtkit.collect.recipe import Recipe, TierSpec
from dtkit.collect.record import RecordEpisodes
from dtkit.errors import DtkitError
from dtkit.gym_env import make_env

__all__ = ["load_expert", "run_scripted_episode", "scripted_behaviour"]


def load_expert(path: str) -> type:
    """The class at ``"pkg.mod:ClassName"``, checked to have ``reset`` and ``act``."""
    module, _, name = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise DtkitError(f"scripted expert {path!r} could not be loaded ({type(exc).__name__}: {exc}); "
                         "check the recipe's `expert = \"package.module:ClassName\"`") from None
    missing = [m for m in ("reset", "act") if not callable(getattr(cls, m, None))]
    if missing:
        raise DtkitError(f"scripted expert {path!r} lacks {', '.join(missing)}; an expert class needs "
                         "reset(obs, info) and act(obs, info) -> action")
    return cls


def run_scripted_episode(env: gym.Env, expert_cls: type | None, epsilon: float, seed: int, noise_seed: int) -> None:
    """Play one episode in ``env`` (usually wrapped in :class:`RecordEpisodes`).

    ``expert_cls`` None means uniform random actions throughout (epsilon 1).
    """
    space = copy.deepcopy(env.action_space)
    space.seed(noise_seed)
    rng = np.random.default_rng(noise_seed)
    obs, info = env.reset(seed=seed)
    expert = expert_cls(env) if expert_cls is not None else None
    if expert is not None:
        expert.reset(obs, info)
    while True:
        # The expert is asked every step, even when noise overrides it, so a stateful
        # expert sees every observation.
        action = expert.act(obs, info) if expert is not None else None
        if action is None or (epsilon > 0 and rng.random() < epsilon):
            action = space.sample()
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return


def _returns(env_id: str, expert_cls: type | None, episodes: int, seed: int) -> float:
    """Mean return over ``episodes`` episodes on the reference seeds (never stored)."""
    rets: list[float] = []
    env = RecordEpisodes(make_env(env_id), lambda ep: rets.append(ep.ret))
    try:
        for j in range(episodes):
            run_scripted_episode(env, expert_cls, 0.0, episode_seed(seed, REF_STREAM, j),
                                 episode_seed(seed, REF_STREAM, j, 1))
    finally:
        env.close()
    return float(np.mean(rets))


def scripted_behaviour(recipe: Recipe) -> Behaviour:
    """The tiers of a scripted-expert recipe, for :func:`dtkit.collect.build.build_datasets`."""
    expert_cls = load_expert(recipe.expert)

    def play(i: int, tier: TierSpec) -> Iterator[Episode]:
        """Episode ``j`` of tier ``i``: reset seed from ``(seed, i, j)``, noise from ``(seed, i, j)`` too."""
        finished: list[Episode] = []
        env, j, steps = RecordEpisodes(make_env(recipe.env_id), finished.append), 0, 0
        try:
            while j < (tier.episodes or 0) or steps < (tier.transitions or 0):  # a tier sets one of the two
                run_scripted_episode(env, None if tier.policy == "random" else expert_cls, tier.epsilon,
                                     episode_seed(recipe.seed, TIER_STREAM, j, i),
                                     episode_seed(recipe.seed, TIER_RNG_STREAM, i, j))
                j, steps = j + 1, steps + len(finished[-1])
                yield finished.pop()
        finally:
            env.close()

    return Behaviour(
        ref_min=_returns(recipe.env_id, None, recipe.ref_episodes, recipe.seed),
        ref_max=_returns(recipe.env_id, expert_cls, recipe.ref_episodes, recipe.seed),
        source=lambda tier: "uniform" if tier.policy == "random" else f"expert eps={tier.epsilon:g}",
        play=play, algorithm_name=lambda spec: f"scripted expert {recipe.expert}",
        info=lambda spec: {"algo": "scripted", "expert": recipe.expert, "trained_steps": None},
    )
