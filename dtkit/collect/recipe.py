"""Dataset recipes: TOML files in ``datasets/`` parsed into frozen dataclasses.

A recipe is data, not code. It names the environment, the SB3 algorithm with its
hyperparameters and training budget, and the quality tiers to roll out. Every
field is checked here, so a typo fails with the field's name before any training.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dtkit.errors import DtkitError

__all__ = [
    "ALGOS",
    "Recipe",
    "TierSpec",
    "TrainSpec",
    "list_recipes",
    "load_recipe",
    "parse_recipe",
    "recipe_dir",
]

#: SB3 algorithms a recipe may name, as lazy ``module:Class`` paths.
ALGOS: dict[str, str] = {
    "ppo": "stable_baselines3:PPO",
    "sac": "stable_baselines3:SAC",
    "dqn": "stable_baselines3:DQN",
}
TIER_POLICIES = ("random", "medium", "expert")
_MISSING = object()


@dataclass(frozen=True)
class TierSpec:
    """One quality tier of the mixture (D4RL style: random, medium, expert).

    Exactly one of ``episodes`` / ``transitions`` is set. With ``transitions``,
    whole episodes are collected until at least that many steps are held.
    """

    name: str
    policy: str  # "random" | "medium" | "expert"
    episodes: int | None = None
    transitions: int | None = None
    deterministic: bool = True  # ignored by "random"
    fraction: float | None = None  # medium: target normalised score in [0, 1]
    target_return: float | None = None  # medium: target return, instead of fraction
    checkpoint: str = "best"  # expert: "best" (highest eval return) or "final"
    epsilon: float = 0.0  # share of steps whose action is replaced by a uniform-random one


@dataclass(frozen=True)
class TrainSpec:
    """How the behaviour agent is trained and checkpointed."""

    algo: str
    steps: int
    checkpoint_every: int
    eval_episodes: int = 10
    n_envs: int = 1
    policy: str = "MlpPolicy"
    hyperparams: dict[str, Any] = field(default_factory=dict)
    prune: bool = False  # keep only the checkpoints the tiers use


@dataclass(frozen=True)
class Recipe:
    """A whole dataset recipe; see ``datasets/cartpole.toml`` for an annotated example."""

    name: str
    env_id: str
    dataset_id: str
    train: TrainSpec
    tiers: tuple[TierSpec, ...]
    seed: int = 0
    description: str = ""
    ref_episodes: int = 100  # episodes averaged for ref_min_score / ref_max_score
    code_permalink: str = ""

    def fingerprint(self) -> str:
        """Hash of everything that shapes the data (not the name or the description)."""
        data = asdict(self)
        for key in ("name", "description", "code_permalink"):
            data.pop(key)
        data["train"].pop("prune")
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def recipe_dir() -> Path:
    """Folder holding the recipe TOMLs and ``policies/``.

    Installed, ``datasets/`` is the package ``dtkit.recipes`` (pyproject
    ``package-dir``); from a plain checkout we fall back to the folder beside ``dtkit/``.
    """
    try:
        path = Path(str(importlib.resources.files("dtkit.recipes")))
        if path.is_dir():
            return path
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[2] / "datasets"


def list_recipes() -> list[str]:
    """Names of the known recipes (TOML stems in :func:`recipe_dir`), sorted."""
    return sorted(p.stem for p in recipe_dir().glob("*.toml"))


def load_recipe(name: str | os.PathLike) -> Recipe:
    """Load a recipe by name (``"cartpole"``) or by path to a ``.toml`` file.

    Example:
        >>> load_recipe("cartpole").env_id
        'CartPole-v1'
    """
    path = Path(name)
    if path.suffix != ".toml":
        path = recipe_dir() / f"{name}.toml"
        if not path.is_file():
            known = ", ".join(list_recipes()) or "(none)"
            raise DtkitError(f"unknown recipe {str(name)!r}; known recipes: {known}")
    elif not path.is_file():
        raise DtkitError(f"recipe file {path} does not exist; check the path")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise DtkitError(f"recipe {path}: invalid TOML ({e}); fix the syntax") from e
    return parse_recipe(data, name=path.stem, source=str(path))


def parse_recipe(data: dict[str, Any], *, name: str, source: str = "<dict>") -> Recipe:
    """Check a recipe's fields and build a :class:`Recipe`; errors name the field."""
    r = _Reader(data, source, "")
    train = r.table("train")
    tiers_raw = r.get("tiers", list)
    if not tiers_raw:
        raise DtkitError(f"recipe {source}: `tiers` is empty; add at least one [[tiers]] table")
    recipe = Recipe(
        name=r.get("name", str, name),
        env_id=r.get("env_id", str),
        dataset_id=r.get("dataset_id", str),
        seed=r.get("seed", int, 0),
        description=r.get("description", str, ""),
        ref_episodes=r.positive("ref_episodes", 100),
        code_permalink=r.get("code_permalink", str, ""),
        train=_parse_train(train),
        tiers=tuple(_parse_tier(_Reader(t, source, f"tiers[{i}].")) for i, t in enumerate(tiers_raw)),
    )
    r.done()
    names = [t.name for t in recipe.tiers]
    if len(set(names)) != len(names):
        raise DtkitError(f"recipe {source}: tier names must be unique, got {names}")
    return recipe


def _parse_train(r: _Reader) -> TrainSpec:
    algo = r.get("algo", str).lower()
    if algo not in ALGOS:
        r.fail("algo", f"must be one of {sorted(ALGOS)}, got {algo!r}")
    spec = TrainSpec(
        algo=algo,
        steps=r.positive("steps"),
        checkpoint_every=r.positive("checkpoint_every"),
        eval_episodes=r.positive("eval_episodes", 10),
        n_envs=r.positive("n_envs", 1),
        policy=r.get("policy", str, "MlpPolicy"),
        hyperparams=r.get("hyperparams", dict, {}),
        prune=r.get("prune", bool, False),
    )
    r.done()
    return spec


def _parse_tier(r: _Reader) -> TierSpec:
    policy = r.get("policy", str)
    if policy not in TIER_POLICIES:
        r.fail("policy", f"must be one of {list(TIER_POLICIES)}, got {policy!r}")
    episodes = r.positive("episodes", None)
    transitions = r.positive("transitions", None)
    if (episodes is None) == (transitions is None):
        r.fail("episodes", "set exactly one of `episodes` or `transitions`")
    fraction = r.get("fraction", (int, float), None)
    target = r.get("target_return", (int, float), None)
    if policy == "medium" and (fraction is None) == (target is None):
        r.fail("fraction", "a medium tier needs exactly one of `fraction` or `target_return`")
    if fraction is not None and not 0.0 <= fraction <= 1.0:
        r.fail("fraction", f"must lie in [0, 1] (a normalised score), got {fraction}")
    if policy != "medium" and (fraction is not None or target is not None):
        r.fail("fraction", "`fraction` / `target_return` only apply to medium tiers")
    epsilon = r.get("epsilon", (int, float), 0.0)
    if not 0.0 <= epsilon <= 1.0:
        r.fail("epsilon", f"must lie in [0, 1] (the share of random actions), got {epsilon}")
    checkpoint = r.get("checkpoint", str, "best")
    if checkpoint not in ("best", "final"):
        r.fail("checkpoint", f"must be 'best' or 'final', got {checkpoint!r}")
    spec = TierSpec(
        name=r.get("name", str, policy),
        policy=policy,
        episodes=episodes,
        transitions=transitions,
        deterministic=r.get("deterministic", bool, policy != "medium"),
        fraction=None if fraction is None else float(fraction),
        target_return=None if target is None else float(target),
        checkpoint=checkpoint,
        epsilon=float(epsilon),
    )
    r.done()
    return spec


class _Reader:
    """Reads one TOML table, tracking which keys were used so leftovers are typos."""

    def __init__(self, data: Any, source: str, prefix: str) -> None:
        if not isinstance(data, dict):
            raise DtkitError(f"recipe {source}: `{prefix.rstrip('.')}` must be a table")
        self.data, self.source, self.prefix, self.used = data, source, prefix, set()

    def fail(self, key: str, why: str) -> None:
        raise DtkitError(f"recipe {self.source}: field `{self.prefix}{key}` {why}")

    def get(self, key: str, typ: type | tuple[type, ...], default: Any = _MISSING) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is _MISSING:
                self.fail(key, "is missing; add it to the recipe")
            return default
        value = self.data[key]
        # bool is an int subclass: `steps = true` must not pass as an integer.
        bad_bool = isinstance(value, bool) and typ is not bool
        if bad_bool or not isinstance(value, typ):
            want = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
            self.fail(key, f"must be {want}, got {value!r} ({type(value).__name__})")
        return value

    def positive(self, key: str, default: Any = _MISSING) -> Any:
        value = self.get(key, int, default)
        if value is not None and value <= 0:
            self.fail(key, f"must be a positive integer, got {value}")
        return value

    def table(self, key: str) -> _Reader:
        return _Reader(self.get(key, dict), self.source, f"{self.prefix}{key}.")

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used))
            self.fail(unknown[0], f"is not a known field (known: {known}); check the spelling")
