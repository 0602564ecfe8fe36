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
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np

import dtkit
from dtkit.collect.card import card_files, make_card
from dtkit.collect.episodes import REF_STREAM, TIER_RNG_STREAM, TIER_STREAM, Episode, episode_seed
from dtkit.collect.recipe import Recipe, TierSpec
from dtkit.collect.record import RecordEpisodes
from dtkit.collect.tiers import EpisodeSummary, TierRollout
from dtkit.collect.writer import DatasetStream, datasets_to_build
from dtkit.errors import DtkitError
from dtkit.gym_env import make_env

__all__ = ["build_scripted", "load_expert", "run_scripted_episode"]


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


def _tier_episodes(env_id: str, expert_cls: type, tier: TierSpec, index: int, seed: int,
                   on_episode: Callable[[Episode], None], progress: bool) -> list[EpisodeSummary]:
    """Roll out one tier, handing each episode to ``on_episode`` as it ends."""
    from tqdm.auto import tqdm

    summaries: list[EpisodeSummary] = []

    def record(ep: Episode) -> None:
        summaries.append(EpisodeSummary(ep))
        on_episode(ep)

    env = RecordEpisodes(make_env(env_id), record)
    cls = None if tier.policy == "random" else expert_cls
    total = tier.episodes if tier.episodes is not None else tier.transitions
    unit = "ep" if tier.episodes is not None else "step"
    try:
        with tqdm(total=total, desc=f"tier {tier.name}", unit=unit, disable=not progress, dynamic_ncols=True) as bar:
            j, steps = 0, 0
            while (j < tier.episodes) if tier.episodes is not None else (steps < tier.transitions):
                run_scripted_episode(env, cls, tier.epsilon, episode_seed(seed, TIER_STREAM, j, index),
                                     episode_seed(seed, TIER_RNG_STREAM, index, j))
                steps += len(summaries[-1])
                bar.update(1 if unit == "ep" else min(len(summaries[-1]), bar.total - bar.n))
                j += 1
    finally:
        env.close()
    return summaries


def build_scripted(recipe: Recipe, *, force: bool = False, progress: bool = False) -> list[str]:
    """Build every dataset of a scripted-expert recipe; see :func:`dtkit.collect.build.build_datasets`.

    A tier shared by several datasets is rolled out again for each (the same
    seeds give the same episodes): streaming keeps no tier in memory to share.

    Example:
        >>> build_scripted(load_recipe("doorkey"))  # doctest: +SKIP
        ['dtkit/doorkey/mixed-v0']
    """
    todo = datasets_to_build(recipe, force)
    ids = [spec.id for spec in recipe.outputs()]
    if not todo:
        return ids
    expert_cls = load_expert(recipe.expert)
    ref_min = _returns(recipe.env_id, None, recipe.ref_episodes, recipe.seed)
    ref_max = _returns(recipe.env_id, expert_cls, recipe.ref_episodes, recipe.seed)
    position = {t.name: i for i, t in enumerate(recipe.tiers)}
    by_name = {t.name: t for t in recipe.tiers}
    for spec, fingerprint in todo:
        with DatasetStream(
            spec.id, env_id=recipe.env_id, algorithm_name=f"scripted expert {recipe.expert}", force=force,
            description=spec.description or recipe.description or f"dtkit recipe {recipe.name!r} on {recipe.env_id}",
            code_permalink=recipe.code_permalink or f"dtkit-rl {dtkit.__version__}: dtkit/collect, recipe {recipe.name}",
            jpeg=recipe.jpeg,
        ) as out:
            parts = []
            for name in spec.tiers:
                tier = by_name[name]
                eps = _tier_episodes(recipe.env_id, expert_cls, tier, position[name], recipe.seed,
                                     lambda ep, name=name: out.add(ep, name), progress)
                parts.append(TierRollout(tier, "uniform" if tier.policy == "random" else f"expert eps={tier.epsilon:g}",
                                         eps))
            build_info = {
                "recipe": recipe.name, "fingerprint": fingerprint, "dtkit_version": dtkit.__version__,
                "seed": recipe.seed, "algo": "scripted", "expert": recipe.expert, "trained_steps": None,
                "ref_episodes": recipe.ref_episodes, "tiers": [r.summary() for r in parts],
            }

            def card(folder: Path, spec_id: str = spec.id, parts: list = parts, build_info: dict = build_info) -> dict:
                return card_files(make_card(spec_id, parts, folder=folder, env_id=recipe.env_id, ref_min_score=ref_min,
                                            ref_max_score=ref_max, build_info=build_info))

            out.finish(ref_min_score=ref_min, ref_max_score=ref_max, ref_episodes=recipe.ref_episodes,
                       build_info=build_info, extra_files=card)
    return ids
