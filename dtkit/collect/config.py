"""``CollectConfig`` and ``run_collect``: recipe -> behaviour policies -> Minari dataset."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dtkit.collect.recipe import Recipe, TierSpec, TrainSpec, load_recipe, recipe_dir
from dtkit.collect.train import read_index, train_run
from dtkit.errors import DtkitError

__all__ = ["CollectConfig", "build_recipe", "default_policy_dir", "resolve_recipe", "run_collect"]

DEFAULT_TIERS = ("random:50", "medium:100", "expert:30")


@dataclass(frozen=True)
class CollectConfig:
    """Train an SB3 behaviour agent and roll out a mixture of quality tiers into a Minari dataset."""

    recipe: str | None = None
    """Recipe name in datasets/ (e.g. cartpole) or a path to a .toml file; the flags below override it."""
    env_id: str | None = None
    """Gymnasium environment id (required without a recipe), e.g. CartPole-v1."""
    algo: Literal["ppo", "sac", "dqn"] | None = None
    """SB3 algorithm for the behaviour agent (default without a recipe: ppo)."""
    train_steps: int | None = None
    """Environment steps to train the behaviour agent for (default without a recipe: 100000)."""
    checkpoint_every: int | None = None
    """Save and evaluate a checkpoint every this many steps (default: train_steps / 20)."""
    tiers: tuple[str, ...] | None = None
    """Tiers as POLICY[@X]:COUNT, e.g. random:50 medium@0.3:100 expert:30 (the default). POLICY is random, medium or expert; X is medium's target normalised score (default 0.3) or expert's best|final; a COUNT ending in t counts transitions, not episodes. Medium samples actions; expert acts deterministically."""
    dataset_id: str | None = None
    """Minari dataset id to create (default: dtkit/<env>/mixed-v0)."""
    seed: int | None = None
    """Seed for training, evaluation and rollouts; the same seed gives the same dataset (default 0)."""
    force: bool = False
    """Rebuild the dataset if it already exists."""
    policy_dir: Path | None = None
    """Folder for the SB3 checkpoints and their index.json (default: the recipe's shipped policies, else ~/.cache/dtkit/policies/<env>-<algo>-<hash>)."""
    progress: bool = True
    """Show progress bars."""


def _parse_tier(text: str) -> TierSpec:
    """``medium@0.3:100`` -> TierSpec; the short CLI form of a recipe's [[tiers]] table."""
    try:
        head, count = text.rsplit(":", 1)
        policy, _, arg = head.partition("@")
        n = int(count.removesuffix("t"))
        if policy not in ("random", "medium", "expert") or n <= 0:
            raise ValueError
        kw: dict = {"transitions": n} if count.endswith("t") else {"episodes": n}
        if policy == "medium":
            kw |= {"fraction": float(arg or 0.3), "deterministic": False}
            if not 0.0 <= kw["fraction"] <= 1.0:
                raise ValueError
        elif policy == "expert" and arg:
            if arg not in ("best", "final"):
                raise ValueError
            kw["checkpoint"] = arg
        elif arg:
            raise ValueError
        return TierSpec(name=policy, policy=policy, **kw)
    except ValueError:
        raise DtkitError(
            f"bad tier {text!r}; write POLICY[@X]:COUNT with POLICY random|medium|expert, "
            "e.g. random:50 medium@0.3:100 expert@best:30 (COUNT ending in t = transitions)"
        ) from None


def resolve_recipe(cfg: CollectConfig) -> Recipe:
    """The recipe named by ``cfg.recipe`` (or the defaults), with the set flags applied."""
    if cfg.recipe is not None:
        base = load_recipe(cfg.recipe)
    else:
        if cfg.env_id is None:
            raise DtkitError("give a recipe (--recipe cartpole) or an environment (--env-id CartPole-v1)")
        steps = cfg.train_steps or 100_000
        slug = cfg.env_id.split("/")[-1].split("-v")[0].lower()
        base = Recipe(
            name=slug, env_id=cfg.env_id, dataset_id=cfg.dataset_id or f"dtkit/{slug}/mixed-v0",
            train=TrainSpec(algo=cfg.algo or "ppo", steps=steps, checkpoint_every=max(1, steps // 20)),
            tiers=tuple(_parse_tier(t) for t in DEFAULT_TIERS),
            description=f"Mixed random/medium/expert data on {cfg.env_id}, collected by dtkit.",
        )
    train = base.train
    if cfg.algo is not None and cfg.algo != train.algo:
        # A recipe's hyperparameters belong to its algorithm; they do not carry over.
        train = dataclasses.replace(train, algo=cfg.algo, hyperparams={}, policy="MlpPolicy")
    if cfg.train_steps is not None:
        train = dataclasses.replace(train, steps=cfg.train_steps)
    if cfg.checkpoint_every is not None:
        train = dataclasses.replace(train, checkpoint_every=cfg.checkpoint_every)
    if min(train.steps, train.checkpoint_every) <= 0:
        raise DtkitError("train_steps and checkpoint_every must be positive integers")
    changes: dict = {"train": train}
    if cfg.dataset_id is not None and base.datasets:
        raise DtkitError(f"recipe {base.name!r} makes several datasets ({', '.join(d.id for d in base.datasets)}); "
                         "--dataset-id applies only to one-dataset recipes")
    for key in ("env_id", "dataset_id", "seed"):
        if getattr(cfg, key) is not None:
            changes[key] = getattr(cfg, key)
    if cfg.tiers is not None:
        changes["tiers"] = tuple(_parse_tier(t) for t in cfg.tiers)
        names = [t.name for t in changes["tiers"]]
        if len(set(names)) != len(names) or not names:
            raise DtkitError(f"--tiers {' '.join(cfg.tiers)}: give each policy (random, medium, expert) at most once")
        missing = sorted({n for d in base.datasets for n in d.tiers} - set(names))
        if missing:
            raise DtkitError(f"--tiers drops tier(s) {', '.join(missing)} that the datasets of recipe {base.name!r} "
                             "use; keep them, or use a one-dataset recipe")
    return dataclasses.replace(base, **changes)


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dtkit"


def default_policy_dir(recipe: Recipe, packaged: bool) -> Path:
    """Where a recipe's checkpoints live when no ``policy_dir`` is given.

    A packaged recipe uses its shipped policies (``datasets/policies/<name>``)
    when they were trained the way the recipe says, or trains into that folder
    when it is absent and writable (a source checkout) so the result can be
    committed. Anything else gets its own folder in the user cache, keyed by the
    training fingerprint so different runs never share checkpoints.
    """
    run = train_run(recipe.env_id, recipe.train, recipe.seed)
    if packaged:
        shipped = recipe_dir() / "policies" / recipe.name
        index = read_index(shipped)
        if index is not None and index.run == run:
            return shipped
        if index is None and os.access(recipe_dir(), os.W_OK):
            return shipped
    key = hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()[:8]
    slug = recipe.env_id.split("/")[-1].lower()
    return _cache_dir() / "policies" / f"{slug}-{recipe.train.algo}-{key}"


def run_collect(cfg: CollectConfig) -> str:
    """Build the dataset ``cfg`` describes and return its id (ids, comma-separated, for a
    recipe with several ``[[datasets]]``).

    Reuses an existing dataset built from the same recipe (unless ``force``),
    existing checkpoints, and an existing training index.

    Example:
        >>> run_collect(CollectConfig(env_id="CartPole-v1", train_steps=2048,
        ...                           tiers=("random:5", "expert:5")))  # doctest: +SKIP
        'dtkit/cartpole/mixed-v0'
    """
    from dtkit.collect.build import build_datasets

    recipe = resolve_recipe(cfg)
    packaged = cfg.recipe is not None and not cfg.recipe.endswith(".toml")
    policy_dir = cfg.policy_dir or default_policy_dir(recipe, packaged)
    return ", ".join(build_datasets(recipe, policy_dir, force=cfg.force, progress=cfg.progress))


def build_recipe(name: str, *, force: bool = False, progress: bool = True, policy_dir: Path | None = None) -> str:
    """Build a packaged recipe's dataset; return at once if it already exists.

    Example:
        >>> build_recipe("cartpole", progress=False)  # doctest: +SKIP
        'dtkit/cartpole/mixed-v0'
    """
    return run_collect(CollectConfig(recipe=name, force=force, progress=progress, policy_dir=policy_dir))
