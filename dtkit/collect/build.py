"""One recipe, end to end: train (or reuse) policies, score references, roll out, write."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym

import dtkit
from dtkit.collect.episodes import REF_STREAM, evaluate, random_actor, sb3_actor
from dtkit.collect.recipe import Recipe
from dtkit.collect.tiers import expert_checkpoint, rollout_tiers, select_checkpoints
from dtkit.collect.train import load_checkpoint, prune_checkpoints, train_behaviour
from dtkit.collect.writer import dataset_build_info, write_dataset
from dtkit.errors import DtkitError

__all__ = ["build_dataset"]


def build_dataset(recipe: Recipe, policy_dir: str | Path, *, force: bool = False, progress: bool = False) -> str:
    """Build ``recipe.dataset_id`` from the policies in ``policy_dir`` (training them if needed).

    An existing dataset built from the same recipe fingerprint is returned as is
    unless ``force``; one built from anything else is an error, never silently reused.
    """
    fingerprint = recipe.fingerprint()
    info = dataset_build_info(recipe.dataset_id)
    if info is not None and not force:
        if info.get("fingerprint") == fingerprint:
            return recipe.dataset_id
        raise DtkitError(
            f"dataset {recipe.dataset_id!r} already exists but was built from a different recipe or "
            f"settings; pass force=True (--force) to rebuild it, or delete it (minari delete {recipe.dataset_id})"
        )

    index = train_behaviour(recipe.env_id, recipe.train, policy_dir, seed=recipe.seed, progress=progress)
    models: dict[str, object] = {}

    def model(file: str) -> object:
        if file not in models:
            ckpt = next(c for c in index.checkpoints if c.file == file)
            models[file] = load_checkpoint(policy_dir, ckpt, recipe.train.algo)
        return models[file]

    # D4RL's reference scores: a uniform policy and the expert, each averaged over
    # `ref_episodes` episodes on seeds no tier uses.
    expert, expert_det = expert_checkpoint(index, recipe.tiers)
    action_space = gym.make(recipe.env_id).action_space
    ref_min, _ = evaluate(recipe.env_id, random_actor(action_space, recipe.seed), recipe.ref_episodes,
                          recipe.seed, REF_STREAM)
    ref_max, _ = evaluate(recipe.env_id, sb3_actor(model(expert.file), expert_det), recipe.ref_episodes,
                          recipe.seed, REF_STREAM)

    chosen = select_checkpoints(recipe.tiers, index, ref_min, ref_max)
    rollouts = rollout_tiers(
        recipe.env_id, recipe.tiers, {name: model(c.file) for name, c in chosen.items()},
        seed=recipe.seed, sources={name: c.file for name, c in chosen.items()}, progress=progress,
    )
    build_info = {
        "recipe": recipe.name,
        "fingerprint": fingerprint,
        "dtkit_version": dtkit.__version__,
        "seed": recipe.seed,
        "algo": recipe.train.algo,
        "trained_steps": index.trained_steps,
        "ref_episodes": recipe.ref_episodes,
        "checkpoints": {
            name: {"file": c.file, "steps": c.steps, "eval_return_det": c.return_det,
                   "eval_return_stoch": c.return_stoch}
            for name, c in chosen.items()
        },
        "tiers": [r.summary() for r in rollouts],
    }
    algorithm_name = f"SB3-{recipe.train.algo.upper()} tiers: " + ", ".join(
        f"{r.tier.name}={r.source}" for r in rollouts)
    write_dataset(
        recipe.dataset_id, rollouts, env_id=recipe.env_id, ref_min_score=ref_min, ref_max_score=ref_max,
        ref_episodes=recipe.ref_episodes, algorithm_name=algorithm_name,
        description=recipe.description or f"dtkit recipe {recipe.name!r} on {recipe.env_id}",
        code_permalink=recipe.code_permalink or f"dtkit-rl {dtkit.__version__}: dtkit/collect, recipe {recipe.name}",
        build_info=build_info, force=force,
    )
    if recipe.train.prune:
        prune_checkpoints(policy_dir, {c.file for c in chosen.values()} | {expert.file})
    return recipe.dataset_id
