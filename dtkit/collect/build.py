"""One recipe, end to end: train (or reuse) policies, score references, roll out, write each dataset."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import dtkit
from dtkit.collect.card import card_files, make_card
from dtkit.collect.episodes import REF_STREAM, Episode, evaluate, random_actor, sb3_actor
from dtkit.collect.recipe import Recipe, TierSpec
from dtkit.collect.replay import replay_episodes
from dtkit.collect.tiers import expert_checkpoint, rollout_tiers, select_checkpoints
from dtkit.collect.train import PolicyIndex, load_checkpoint, prune_checkpoints, read_index, train_behaviour
from dtkit.collect.writer import DatasetStream, datasets_to_build
from dtkit.errors import DtkitError
from dtkit.gym_env import make_env

__all__ = ["build_dataset", "build_datasets"]


def build_dataset(recipe: Recipe, policy_dir: str | Path, *, force: bool = False, progress: bool = False) -> str:
    """Build the one dataset of a one-dataset recipe (``recipe.dataset_id``); see :func:`build_datasets`."""
    if len(recipe.outputs()) != 1:
        raise DtkitError(f"recipe {recipe.name!r} makes {len(recipe.outputs())} datasets; use build_datasets "
                         f"(dtkit datasets build {recipe.name})")
    return build_datasets(recipe, policy_dir, force=force, progress=progress)[0]


def build_datasets(recipe: Recipe, policy_dir: str | Path, *, force: bool = False, progress: bool = False) -> list[str]:
    """Build every dataset of ``recipe`` from the policies in ``policy_dir`` (training them if needed).

    An existing dataset built from the same recipe fingerprint is kept as is
    unless ``force``; one built from anything else is an error, never silently
    reused. Each dataset is written atomically, so a build killed half-way
    leaves the finished datasets, and running it again builds only the rest.
    A tier shared by several datasets (medium in medium and medium-expert) is
    rolled out once, so it holds the same episodes in each.

    Example:
        >>> build_datasets(load_recipe("hopper"), "runs/policies/hopper")  # doctest: +SKIP
        ['dtkit/hopper/random-v0', 'dtkit/hopper/medium-v0', ...]
    """
    if recipe.scripted:  # no policies to train: the expert is code
        from dtkit.collect.scripted import build_scripted

        return build_scripted(recipe, force=force, progress=progress)
    assert recipe.train is not None  # parse_recipe: a recipe without an expert has [train]
    policy_dir = Path(policy_dir)
    todo = datasets_to_build(recipe, force)
    ids = [spec.id for spec in recipe.outputs()]
    if not todo:
        return ids

    index = _train(recipe, policy_dir, progress)
    models: dict[str, object] = {}

    def model(file: str) -> object:
        if file not in models:
            ckpt = next(c for c in index.checkpoints if c.file == file)
            models[file] = load_checkpoint(policy_dir, ckpt, recipe.train.algo)
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
    needed = {name for spec, _ in todo for name in spec.tiers}
    kinds = {t.name: t.policy for t in recipe.tiers}
    replays = {name: replay_episodes(policy_dir, chosen[name].steps)
               for name in needed if kinds[name] == "medium-replay"}
    sources = {name: c.file for name, c in chosen.items()}
    source_of = {t.name: "uniform" if t.policy == "random" else
                 f"replay<={sources[t.name]}" if t.policy == "medium-replay" else sources[t.name]
                 for t in recipe.tiers if t.name in needed}
    policies = {name: model(c.file) for name, c in chosen.items() if name in needed and kinds[name] != "medium-replay"}
    recipe_order = [t.name for t in recipe.tiers]
    # Datasets whose tiers come in the recipe's order share one streamed pass over the tiers (a tier in
    # several datasets is rolled out once); any other order gets its own pass (same seeds, same episodes).
    in_order = [(s_, f) for s_, f in todo if [n for n in recipe_order if n in s_.tiers] == list(s_.tiers)]
    passes = ([in_order] if in_order else []) + [[(s_, f)] for s_, f in todo if (s_, f) not in in_order]
    for group in passes:
        _stream_pass(recipe, group, index, chosen, policies, replays, sources, source_of, ref_min, ref_max,
                     force=force, progress=progress)
    if recipe.train.prune:
        replay_steps = [chosen[t.name].steps for t in recipe.tiers if t.policy == "medium-replay"]
        prune_checkpoints(policy_dir, {c.file for c in chosen.values()} | {expert.file},
                          replay_upto=max(replay_steps) if replay_steps else None)
    return ids


def _stream_pass(recipe: Recipe, group: list, index: PolicyIndex, chosen: dict, policies: dict, replays: dict,
                 sources: dict, source_of: dict, ref_min: float, ref_max: float, *, force: bool, progress: bool) -> None:
    """Roll out the tiers of the datasets in ``group`` once, streaming each episode into every dataset that holds
    its tier; each dataset is published (with its card) when its last tier is done."""
    assert recipe.train is not None
    only = {name for spec, _ in group for name in spec.tiers}
    with ExitStack() as stack:
        streams = {}
        for spec, _ in group:
            algorithm_name = f"SB3-{recipe.train.algo.upper()} tiers: " + ", ".join(
                f"{name}={source_of[name]}" for name in spec.tiers)
            streams[spec.id] = stack.enter_context(DatasetStream(
                spec.id, env_id=recipe.env_id, algorithm_name=algorithm_name, force=force, jpeg=recipe.jpeg,
                description=spec.description or recipe.description or f"dtkit recipe {recipe.name!r} on {recipe.env_id}",
                code_permalink=recipe.code_permalink or f"dtkit-rl {dtkit.__version__}: dtkit/collect, recipe {recipe.name}",
            ))

        def sink(tier: TierSpec, ep: Episode) -> None:
            for spec, _ in group:
                if tier.name in spec.tiers:
                    streams[spec.id].add(ep, tier.name)

        rollouts = rollout_tiers(recipe.env_id, recipe.tiers, policies, seed=recipe.seed, sources=sources,
                                 progress=progress, only=only, replays=replays, sink=sink)
        by_name = {r.tier.name: r for r in rollouts}
        for spec, fingerprint in group:
            parts = [by_name[name] for name in spec.tiers]
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
                    for name, c in chosen.items() if name in spec.tiers
                },
                "tiers": [r.summary() for r in parts],
            }

            def card(folder: Path, spec_id: str = spec.id, parts: list = parts, build_info: dict = build_info) -> dict:
                return card_files(make_card(spec_id, parts, folder=folder, env_id=recipe.env_id, ref_min_score=ref_min,
                                            ref_max_score=ref_max, build_info=build_info))

            streams[spec.id].finish(ref_min_score=ref_min, ref_max_score=ref_max, ref_episodes=recipe.ref_episodes,
                                    build_info=build_info, extra_files=card)


def _train(recipe: Recipe, policy_dir: Path, progress: bool) -> PolicyIndex:
    """Train or load the behaviour policies; a failure keeps the checkpoints and says how to resume."""
    assert recipe.train is not None
    try:
        return train_behaviour(recipe.env_id, recipe.train, policy_dir, seed=recipe.seed, progress=progress,
                               record_replay=any(t.policy == "medium-replay" for t in recipe.tiers))
    except DtkitError:
        raise
    except Exception as e:
        index = read_index(policy_dir)
        done = index.trained_steps if index is not None else 0
        raise DtkitError(
            f"training {recipe.train.algo} on {recipe.env_id} failed after {done} of {recipe.train.steps} steps "
            f"({type(e).__name__}: {e}); the checkpoints so far are kept in {policy_dir}: run the same build "
            f"again to resume from step {done}"
        ) from e
