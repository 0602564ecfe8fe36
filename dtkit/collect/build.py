"""One recipe, end to end: get the behaviour (train SB3 policies, or load a scripted expert), score the
references, roll the tiers out and stream each dataset to disk, published with its data card."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dtkit
from dtkit.collect.card import card_files
from dtkit.collect.episodes import (
    REF_STREAM,
    TIER_RNG_STREAM,
    TIER_STREAM,
    Episode,
    episode_seed,
    evaluate,
    random_actor,
    run_episodes,
    sb3_actor,
    seeded_rng,
)
from dtkit.collect.recipe import DatasetSpec, Recipe, TierSpec, recipe_dir
from dtkit.collect.replay import replay_episodes
from dtkit.collect.tiers import TierRollout, expert_checkpoint, select_checkpoints
from dtkit.collect.train import load_checkpoint, prune_checkpoints, read_index, train_behaviour, train_run
from dtkit.collect.writer import DatasetStream, dataset_build_info
from dtkit.errors import DtkitError
from dtkit.gym_env import env_spec_for, make_env

__all__ = ["Behaviour", "build_datasets", "default_policy_dir"]


@dataclass
class Behaviour:
    """Where a recipe's tiers come from, whichever kind of agent acts."""

    ref_min: float  # D4RL's reference scores: uniform random actions, and the expert
    ref_max: float
    source: Callable[[TierSpec], str]  # how a tier acts: "uniform", a checkpoint file, "expert eps=0.2", ...
    # Tier number i of the recipe, episode by episode; i (not the tier's place among those built) seeds them.
    play: Callable[[int, TierSpec], Iterator[Episode]]
    algorithm_name: Callable[[DatasetSpec], str]  # Minari's algorithm_name for a dataset
    info: Callable[[DatasetSpec], dict[str, Any]]  # what the dataset's metadata records about the agent
    finish: Callable[[], None] = lambda: None  # after every dataset is written (pruning checkpoints)


def build_datasets(recipe: Recipe, policy_dir: str | Path | None = None, *, force: bool = False,
                   progress: bool = False) -> list[str]:
    """Build every dataset of ``recipe`` and return their ids.

    An SB3 recipe trains (or resumes, or reuses) its policies in ``policy_dir``
    (default: :func:`default_policy_dir`); a scripted recipe needs none. An
    existing dataset built from the same recipe fingerprint is kept as is
    unless ``force``; one built from anything else is an error, never silently
    reused. Each dataset is written atomically, so a build killed half-way
    leaves the finished datasets, and running it again builds only the rest.
    A tier shared by several datasets (medium in medium and medium-expert) is
    rolled out once, so it holds the same episodes in each.

    Example:
        >>> build_datasets(load_recipe("hopper"), "runs/policies/hopper")  # doctest: +SKIP
        ['dtkit/hopper/random-v0', 'dtkit/hopper/medium-v0', ...]
    """
    todo = [spec for spec in recipe.outputs() if force or _missing(recipe, spec)]
    if todo:
        make_env(recipe.env_id).close()  # an unknown env fails here, before a policy folder is made
        if recipe.scripted:
            from dtkit.collect.scripted import scripted_behaviour

            behaviour = scripted_behaviour(recipe)
        else:
            behaviour = _sb3_behaviour(recipe, Path(policy_dir or default_policy_dir(recipe)), progress)
        _stream_pass(recipe, todo, behaviour, force=force, progress=progress)
        behaviour.finish()
    return [spec.id for spec in recipe.outputs()]


def _missing(recipe: Recipe, spec: DatasetSpec) -> bool:
    """Whether ``spec`` is missing; one built from another recipe or settings is refused, so a changed
    recipe never silently leaves stale data under its id."""
    info = dataset_build_info(spec.id)
    if info is not None and info.get("fingerprint") != recipe.fingerprint(spec):
        raise DtkitError(f"dataset {spec.id!r} already exists but was built from a different recipe or settings; "
                         f"pass force=True (--force) to rebuild it, or delete it (minari delete {spec.id})")
    return info is None


def _stream_pass(recipe: Recipe, group: list[DatasetSpec], behaviour: Behaviour, *, force: bool,
                 progress: bool) -> None:
    """Roll out the tiers of the datasets in ``group`` once, in the recipe's order, streaming each episode into
    every dataset that holds its tier; each dataset is published (with its card) when every tier is done."""
    # Minari looks the id up with gym.spec, which does not import the module of a 'module:Env-v0' id;
    # env_spec_for has imported it, and the spec Minari records names the entry point a fresh process imports.
    registered_id = env_spec_for(recipe.env_id).id
    with ExitStack() as stack:
        streams = {spec.id: stack.enter_context(DatasetStream(
            spec.id, env_id=registered_id, algorithm_name=behaviour.algorithm_name(spec), force=force, jpeg=recipe.jpeg,
            description=spec.description or recipe.description or f"dtkit recipe {recipe.name!r} on {recipe.env_id}",
            code_permalink=f"dtkit-rl {dtkit.__version__}: dtkit/collect, recipe {recipe.name}",
        )) for spec in group}
        rollouts: dict[str, TierRollout] = {}
        for i, tier in enumerate(recipe.tiers):
            holders = [streams[spec.id] for spec in group if tier.name in spec.tiers]
            if holders:
                rollouts[tier.name] = rollout = TierRollout(tier, behaviour.source(tier))
                for ep in rollout.watch(behaviour.play(i, tier), progress):
                    for out in holders:
                        out.add(ep, tier.name)
        for spec in group:
            parts = [rollouts[name] for name in spec.tiers]
            build_info = {"recipe": recipe.name, "fingerprint": recipe.fingerprint(spec), "dtkit_version": dtkit.__version__,
                          "seed": recipe.seed, "ref_episodes": recipe.ref_episodes, **behaviour.info(spec),
                          "tiers": [r.summary() for r in parts]}
            card = functools.partial(card_files, spec.id, parts, env_id=recipe.env_id, ref_min_score=behaviour.ref_min,
                                     ref_max_score=behaviour.ref_max, build_info=build_info)  # finish() passes the staged folder
            streams[spec.id].finish(ref_min_score=behaviour.ref_min, ref_max_score=behaviour.ref_max,
                                    ref_episodes=recipe.ref_episodes, build_info=build_info, extra_files=card)


def _sb3_behaviour(recipe: Recipe, policy_dir: Path, progress: bool) -> Behaviour:
    """Train or load the SB3 policies, score the references and pick a checkpoint per tier."""
    train = recipe.train
    assert train is not None  # Recipe: a recipe without an expert has [train]
    index = train_behaviour(recipe.env_id, train, policy_dir, seed=recipe.seed, progress=progress,
                            record_replay=any(t.policy == "medium-replay" for t in recipe.tiers))
    models: dict[str, object] = {}

    def model(file: str) -> object:
        if file not in models:
            models[file] = load_checkpoint(policy_dir, file, train.algo)
        return models[file]

    # D4RL's reference scores: a uniform policy and the expert, each averaged over
    # `ref_episodes` episodes on seeds no tier uses.
    expert, expert_det = expert_checkpoint(index, recipe.tiers)
    action_space = make_env(recipe.env_id).action_space
    ref_min, _ = evaluate(recipe.env_id, random_actor(action_space, recipe.seed), recipe.ref_episodes,
                          recipe.seed, REF_STREAM)
    ref_max, _ = evaluate(recipe.env_id, sb3_actor(model(expert.file), expert_det), recipe.ref_episodes,
                          recipe.seed, REF_STREAM)
    chosen = select_checkpoints(recipe.tiers, index, ref_min, ref_max)
    tiers = {t.name: t for t in recipe.tiers}

    def source(tier: TierSpec) -> str:
        if tier.policy == "random":
            return "uniform"
        file = chosen[tier.name].file
        return f"replay<={file}" if tier.policy == "medium-replay" else file

    def play(i: int, tier: TierSpec) -> Iterator[Episode]:
        """Episode ``j`` is reset with a seed from ``(seed, i, j)``; sampled actions draw from RNGs seeded by
        ``(seed, i)``: the tier is a pure function of the seed and the policy."""
        if tier.policy == "medium-replay":
            yield from replay_episodes(policy_dir, chosen[tier.name].steps)
            return
        rng_seed = episode_seed(recipe.seed, TIER_RNG_STREAM, i)
        actor = (random_actor(action_space, rng_seed) if tier.policy == "random"
                 else sb3_actor(model(chosen[tier.name].file), tier.acts_deterministically, tier.epsilon))
        with seeded_rng(rng_seed):
            yield from run_episodes(recipe.env_id, actor, lambda j: episode_seed(recipe.seed, TIER_STREAM, j, i),
                                    episodes=tier.episodes, transitions=tier.transitions)

    def info(spec: DatasetSpec) -> dict[str, Any]:
        return {"algo": train.algo, "trained_steps": index.trained_steps, "checkpoints": {
            name: {"file": c.file, "steps": c.steps, "eval_return_det": c.return_det, "eval_return_stoch": c.return_stoch}
            for name, c in chosen.items() if name in spec.tiers}}

    def finish() -> None:
        if train.prune:
            replay_steps = [chosen[t.name].steps for t in recipe.tiers if t.policy == "medium-replay"]
            prune_checkpoints(policy_dir, {c.file for c in chosen.values()} | {expert.file},
                              replay_upto=max(replay_steps) if replay_steps else None)

    return Behaviour(ref_min, ref_max, source, play, lambda spec: f"SB3-{train.algo.upper()} tiers: " + ", ".join(
        f"{name}={source(tiers[name])}" for name in spec.tiers), info, finish)


def default_policy_dir(recipe: Recipe, packaged: bool = False) -> Path:
    """Where a recipe's checkpoints live when no ``policy_dir`` is given.

    A ``packaged`` recipe (a name in ``datasets/``, unmodified) uses its shipped
    policies (``datasets/policies/<name>``) when they were trained the way the
    recipe says, or trains into that folder when it is absent and writable (a
    source checkout) so the result can be committed. Anything else gets its own
    folder in the user cache, keyed by the training fingerprint so different
    runs never share checkpoints.
    """
    assert recipe.train is not None
    run = train_run(recipe.env_id, recipe.train, recipe.seed)
    if packaged:
        shipped = recipe_dir() / "policies" / recipe.name
        index = read_index(shipped)
        if (index is not None and index.run == run) or (index is None and os.access(recipe_dir(), os.W_OK)):
            return shipped
    key = hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()[:8]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dtkit"
    return cache / "policies" / f"{recipe.env_id.rpartition(':')[2].split('/')[-1].lower()}-{recipe.train.algo}-{key}"
