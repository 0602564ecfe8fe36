"""Dataset recipes: TOML files in ``datasets/`` parsed into frozen dataclasses.

A recipe is data, not code. It names the environment, then either the SB3
algorithm with its hyperparameters and training budget (``[train]``) or a
scripted expert (``expert = "pkg.mod:Class"``, see :mod:`dtkit.collect.scripted`),
and the quality tiers to roll out. Every field is checked here, so a typo fails
with the field's name before any training.
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
    "DatasetSpec",
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
TIER_POLICIES = ("random", "medium", "medium-replay", "expert")
#: Algorithms whose replay buffer a ``medium-replay`` tier can read.
OFF_POLICY = ("sac", "dqn")
_MISSING = object()


@dataclass(frozen=True)
class TierSpec:
    """One quality tier (D4RL style: random, medium, medium-replay, expert).

    Exactly one of ``episodes`` / ``transitions`` is set, except for
    ``medium-replay``, which sets neither: it is every transition the behaviour
    agent collected while training, up to the checkpoint its ``fraction`` /
    ``target_return`` selects (D4RL's "medium-replay"). With ``transitions``,
    whole episodes are collected until at least that many steps are held.
    """

    name: str
    policy: str  # "random" | "medium" | "medium-replay" | "expert"
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
class DatasetSpec:
    """One dataset a recipe produces: its Minari id and the tiers it holds, in order.

    D4RL's medium-expert is ``tiers = ["medium", "expert"]``: the same episodes as
    the medium and expert datasets, concatenated.
    """

    id: str
    tiers: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class Recipe:
    """A whole dataset recipe; see ``datasets/cartpole.toml`` (one dataset) and
    ``datasets/hopper.toml`` (several, via ``[[datasets]]``) for annotated examples.

    Without ``datasets`` the recipe makes one dataset, ``dataset_id``, holding
    every tier; with ``datasets`` (then ``dataset_id`` is empty) each tier is
    rolled out once and shared by every dataset that lists it.
    """

    name: str
    env_id: str
    dataset_id: str
    train: TrainSpec | None  # None for a scripted-expert recipe
    tiers: tuple[TierSpec, ...]
    seed: int = 0
    description: str = ""
    ref_episodes: int = 100  # episodes averaged for ref_min_score / ref_max_score
    code_permalink: str = ""
    datasets: tuple[DatasetSpec, ...] = ()
    expert: str = ""  # "pkg.mod:Class" of a scripted expert, instead of [train]
    jpeg: bool = False  # JPEG-encode image observations (lossy); the default stores them losslessly

    @property
    def scripted(self) -> bool:
        """Whether the tiers come from a scripted expert rather than a trained SB3 agent."""
        return bool(self.expert)

    def outputs(self) -> tuple[DatasetSpec, ...]:
        """The datasets this recipe builds: its ``datasets``, or one ``dataset_id`` of all tiers."""
        if self.datasets:
            return self.datasets
        return (DatasetSpec(self.dataset_id, tuple(t.name for t in self.tiers), self.description),)

    def fingerprint(self, dataset: DatasetSpec | None = None) -> str:
        """Hash of everything that shapes the data (not the name or the description).

        For a ``[[datasets]]`` recipe, pass the dataset: its hash covers only the
        tiers it holds (with their positions, which seed their episodes) and the
        expert tier that sets ``ref_max_score``, so editing the random tier does
        not make the expert dataset stale. A one-dataset recipe hashes exactly
        as before ``datasets`` existed, so already built datasets stay valid.
        """
        data = asdict(self)
        for key in ("name", "description", "code_permalink", "datasets"):
            data.pop(key)
        # Fields added later hash only when set, so datasets built before them stay valid.
        for key in ("expert", "jpeg"):
            if not data[key]:
                data.pop(key)
        if data["train"] is not None:
            data["train"].pop("prune")
        else:
            data.pop("train")
        if self.datasets:
            if dataset is None:
                raise ValueError("a [[datasets]] recipe has one fingerprint per dataset; pass the dataset")
            data.pop("dataset_id")
            ref = next((t.name for t in self.tiers if t.policy == "expert"), None)
            used = set(dataset.tiers) | {ref}
            data["tiers"] = [dict(t, index=i) for i, t in enumerate(data["tiers"]) if t["name"] in used]
            data["dataset"] = {"id": dataset.id, "tiers": list(dataset.tiers)}
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
    expert = r.get("expert", str, "")
    if expert:
        if "train" in data:
            r.fail("train", "cannot be combined with `expert`: a recipe either trains an SB3 agent or runs a "
                            "scripted expert; remove one of them")
        if expert.count(":") != 1 or not all(expert.split(":")):
            r.fail("expert", f"must be a class path 'package.module:ClassName', got {expert!r}")
        train = None
    else:
        train = r.table("train")
    tiers_raw = r.get("tiers", list)
    if not tiers_raw:
        raise DtkitError(f"recipe {source}: `tiers` is empty; add at least one [[tiers]] table")
    datasets_raw = r.get("datasets", list, None)
    if datasets_raw is None:
        if "dataset_id" not in data:
            r.fail("dataset_id", "is missing; add it (one dataset of all tiers) or [[datasets]] tables "
                                 "(several datasets, each with `id` and `tiers`)")
        dataset_id = r.get("dataset_id", str)
    else:
        if "dataset_id" in data:
            r.fail("dataset_id", "cannot be combined with [[datasets]]; give each dataset its own `id` there")
        if not datasets_raw:
            r.fail("datasets", "is empty; add at least one [[datasets]] table, or use `dataset_id`")
        dataset_id = ""
    recipe = Recipe(
        name=r.get("name", str, name),
        env_id=r.get("env_id", str),
        dataset_id=dataset_id,
        seed=r.get("seed", int, 0),
        description=r.get("description", str, ""),
        ref_episodes=r.positive("ref_episodes", 100),
        code_permalink=r.get("code_permalink", str, ""),
        train=None if train is None else _parse_train(train),
        tiers=tuple((_parse_scripted_tier if expert else _parse_tier)(_Reader(t, source, f"tiers[{i}]."))
                    for i, t in enumerate(tiers_raw)),
        datasets=tuple(_parse_dataset(_Reader(d, source, f"datasets[{i}].")) for i, d in enumerate(datasets_raw or ())),
        expert=expert,
        jpeg=r.get("jpeg", bool, False),
    )
    r.done()
    names = [t.name for t in recipe.tiers]
    if len(set(names)) != len(names):
        raise DtkitError(f"recipe {source}: tier names must be unique, got {names}")
    for i, t in enumerate(recipe.tiers):
        if t.policy == "medium-replay" and recipe.train is not None and recipe.train.algo not in OFF_POLICY:
            raise DtkitError(
                f"recipe {source}: field `tiers[{i}].policy` medium-replay reads the replay buffer of an "
                f"off-policy agent ({', '.join(OFF_POLICY)}), but `train.algo` is {recipe.train.algo!r}"
            )
    ids = [d.id for d in recipe.datasets]
    if len(set(ids)) != len(ids):
        raise DtkitError(f"recipe {source}: field `datasets[].id` must be unique, got {ids}")
    for i, d in enumerate(recipe.datasets):
        for name_ in d.tiers:
            if name_ not in names:
                raise DtkitError(f"recipe {source}: field `datasets[{i}].tiers` names tier {name_!r}, "
                                 f"which the recipe does not define (its tiers: {', '.join(names)})")
    return recipe


def _parse_dataset(r: _Reader) -> DatasetSpec:
    tiers = r.get("tiers", list)
    if not tiers or not all(isinstance(t, str) for t in tiers):
        r.fail("tiers", f"must be a non-empty list of tier names, got {tiers!r}")
    if len(set(tiers)) != len(tiers):
        r.fail("tiers", f"lists a tier twice: {tiers}")
    spec = DatasetSpec(id=r.get("id", str), tiers=tuple(tiers), description=r.get("description", str, ""))
    r.done()
    return spec


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


def _parse_scripted_tier(r: _Reader) -> TierSpec:
    """A tier of a scripted-expert recipe: the expert (or uniform actions) with ``epsilon`` noise."""
    policy = r.get("policy", str, "expert")
    if policy not in ("expert", "random"):
        r.fail("policy", f"must be 'expert' or 'random' in a scripted-expert recipe, got {policy!r}")
    episodes = r.positive("episodes", None)
    transitions = r.positive("transitions", None)
    if (episodes is None) == (transitions is None):
        r.fail("episodes", "set exactly one of `episodes` or `transitions`")
    epsilon = r.get("epsilon", (int, float), 0.0)
    if not 0.0 <= epsilon <= 1.0:
        r.fail("epsilon", f"must lie in [0, 1] (the probability of a random action at each step), got {epsilon}")
    spec = TierSpec(name=r.get("name", str, policy), policy=policy, episodes=episodes, transitions=transitions,
                    epsilon=float(epsilon))
    r.done()
    return spec


def _parse_tier(r: _Reader) -> TierSpec:
    policy = r.get("policy", str)
    if policy not in TIER_POLICIES:
        r.fail("policy", f"must be one of {list(TIER_POLICIES)}, got {policy!r}")
    medium = policy in ("medium", "medium-replay")
    episodes = r.positive("episodes", None)
    transitions = r.positive("transitions", None)
    if policy == "medium-replay":
        if episodes is not None or transitions is not None:
            r.fail("episodes" if episodes is not None else "transitions",
                   "does not apply to a medium-replay tier: it holds the whole replay buffer up to the medium checkpoint")
    elif (episodes is None) == (transitions is None):
        r.fail("episodes", "set exactly one of `episodes` or `transitions`")
    fraction = r.get("fraction", (int, float), None)
    target = r.get("target_return", (int, float), None)
    if medium and (fraction is None) == (target is None):
        r.fail("fraction", f"a {policy} tier needs exactly one of `fraction` or `target_return`")
    if fraction is not None and not 0.0 <= fraction <= 1.0:
        r.fail("fraction", f"must lie in [0, 1] (a normalised score), got {fraction}")
    if not medium and (fraction is not None or target is not None):
        r.fail("fraction", "`fraction` / `target_return` only apply to medium and medium-replay tiers")
    epsilon = r.get("epsilon", (int, float), 0.0)
    if not 0.0 <= epsilon <= 1.0:
        r.fail("epsilon", f"must lie in [0, 1] (the share of random actions), got {epsilon}")
    if policy == "medium-replay" and epsilon:
        r.fail("epsilon", "does not apply to a medium-replay tier: its actions are the ones the agent took")
    checkpoint = r.get("checkpoint", str, "best")
    if checkpoint not in ("best", "final"):
        r.fail("checkpoint", f"must be 'best' or 'final', got {checkpoint!r}")
    spec = TierSpec(
        name=r.get("name", str, policy),
        policy=policy,
        episodes=episodes,
        transitions=transitions,
        deterministic=r.get("deterministic", bool, not medium),
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
