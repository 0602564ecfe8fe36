"""Dataset recipes: TOML files in ``datasets/`` parsed into frozen dataclasses.

A recipe is data, not code. It names the environment, then either the SB3
algorithm with its hyperparameters and training budget (``[train]``) or a
scripted expert (``expert = "pkg.mod:Class"``, see :mod:`dtkit.collect.scripted`),
and the quality tiers to roll out.

The dataclasses below are the schema: :func:`dtkit.collect.schema.from_table`
checks every key and value against their fields and type hints, so a typo, a
wrong type, a missing field or a value out of bounds is refused with the recipe
file, the key and the fix, before anything trains. Rules that tie several fields
together live in each class's ``__post_init__``.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import tomllib

from dtkit.collect.schema import Bounds, RecipeError, from_table
from dtkit.errors import DtkitError

__all__ = [
    "DatasetSpec",
    "Recipe",
    "TierSpec",
    "TrainSpec",
    "list_recipes",
    "load_recipe",
    "parse_recipe",
    "recipe_dir",
]

#: Algorithms whose replay buffer a ``medium-replay`` tier can read.
OFF_POLICY = ("sac", "dqn")
_MEDIUM = ("medium", "medium-replay")


Positive = Annotated[int, Bounds(low=1)]
Share = Annotated[float, Bounds(0.0, 1.0, " (a probability)")]


@dataclass(frozen=True)
class TierSpec:
    """One quality tier (D4RL style: random, medium, medium-replay, expert).

    Exactly one of ``episodes`` / ``transitions`` is set, except for
    ``medium-replay``, which sets neither: it is every transition the behaviour
    agent collected while training, up to the checkpoint its ``fraction`` /
    ``target_return`` selects (D4RL's "medium-replay"). With ``transitions``,
    whole episodes are collected until at least that many steps are held.
    """

    name: str = ""  # default: the policy
    policy: Literal["random", "medium", "medium-replay", "expert"] = "expert"
    episodes: Positive | None = None
    transitions: Positive | None = None
    deterministic: bool | None = None  # unset: see `acts_deterministically`; ignored by "random"
    fraction: Annotated[float, Bounds(0.0, 1.0, " (a normalised score)")] | None = None  # medium: target score
    target_return: float | None = None  # medium: target return, instead of fraction
    checkpoint: Literal["best", "final"] = "best"  # expert: highest eval return, or the last checkpoint
    epsilon: Share = 0.0  # share of steps whose action is replaced by a uniform-random one

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.policy)
        counted = [k for k in ("episodes", "transitions") if getattr(self, k) is not None]
        if self.policy == "medium-replay":
            if counted:
                raise RecipeError(counted[0], "does not apply to a medium-replay tier (it holds the whole replay "
                                              "buffer up to the medium checkpoint); remove it")
            if self.epsilon:
                raise RecipeError("epsilon", "does not apply to a medium-replay tier (its actions are the ones the "
                                             "agent took); remove it")
        elif not counted:
            raise RecipeError("episodes", "is missing: a tier needs `episodes` or `transitions`; add one")
        elif len(counted) == 2:
            raise RecipeError("transitions", "cannot be combined with `episodes`; keep one")
        targets = [k for k in ("fraction", "target_return") if getattr(self, k) is not None]
        if self.policy in _MEDIUM and not targets:
            raise RecipeError("fraction", f"is missing: a {self.policy} tier needs `fraction` (a normalised "
                                          "score) or `target_return`; add one")
        if len(targets) == 2:
            raise RecipeError("target_return", "cannot be combined with `fraction`; keep one")
        if self.policy not in _MEDIUM and targets:
            raise RecipeError(targets[0], "only applies to medium and medium-replay tiers; remove it")

    @property
    def acts_deterministically(self) -> bool:
        """``deterministic`` as the recipe gives it; unset, True except for medium tiers, which sample their actions."""
        return self.deterministic if self.deterministic is not None else self.policy not in _MEDIUM


@dataclass(frozen=True)
class TrainSpec:
    """How the behaviour agent is trained and checkpointed."""

    algo: Literal["ppo", "sac", "dqn"]
    steps: Positive
    checkpoint_every: Positive
    eval_episodes: Positive = 10
    n_envs: Positive = 1
    policy: str = "MlpPolicy"
    hyperparams: dict[str, Any] = field(default_factory=dict)  # SB3 keyword arguments
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

    def __post_init__(self) -> None:
        if not self.tiers:
            raise RecipeError("tiers", "is empty; list the names of the tiers this dataset holds")
        if len(set(self.tiers)) != len(self.tiers):
            raise RecipeError("tiers", f"lists a tier twice ({list(self.tiers)}); list each once")


@dataclass(frozen=True)
class Recipe:
    """A whole dataset recipe; see ``datasets/cartpole.toml`` (one dataset),
    ``datasets/hopper.toml`` (several, via ``[[datasets]]``) and
    ``datasets/doorkey.toml`` (a scripted expert) for annotated examples.

    Without ``datasets`` the recipe makes one dataset, ``dataset_id``, holding
    every tier; with ``datasets`` (then ``dataset_id`` is empty) each tier is
    rolled out once and shared by every dataset that lists it.
    """

    name: str
    env_id: str
    tiers: tuple[TierSpec, ...]
    dataset_id: str = ""
    train: TrainSpec | None = None  # None for a scripted-expert recipe
    seed: int = 0
    description: str = ""
    ref_episodes: Positive = 100  # episodes averaged for ref_min_score / ref_max_score
    datasets: tuple[DatasetSpec, ...] = ()
    expert: str = ""  # "pkg.mod:Class" of a scripted expert, instead of [train]
    jpeg: bool = False  # JPEG-encode image observations (lossy); the default stores them losslessly

    def __post_init__(self) -> None:
        if self.expert and self.train is not None:
            raise RecipeError("train", "cannot be combined with `expert`: a recipe either trains an SB3 agent or "
                                       "runs a scripted expert; remove one of them")
        if not self.expert and self.train is None:
            raise RecipeError("train", "is missing; add a [train] table (an SB3 agent) or `expert = "
                                       "\"package.module:ClassName\"` (a scripted expert)")
        if self.expert and not re.fullmatch(r"[\w.]+:\w+", self.expert):
            raise RecipeError("expert", f"must be a class path 'package.module:ClassName', got {self.expert!r}")
        if not self.tiers:
            raise RecipeError("tiers", "is empty; add at least one [[tiers]] table")
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise RecipeError("tiers", f"must have unique names, got {names}; rename one")
        for i, t in enumerate(self.tiers):
            if self.expert and t.policy not in ("expert", "random"):
                raise RecipeError(f"tiers[{i}].policy", f"must be 'expert' or 'random' in a scripted-expert recipe, "
                                                        f"got {t.policy!r}")
            if t.policy == "medium-replay" and self.train is not None and self.train.algo not in OFF_POLICY:
                raise RecipeError(f"tiers[{i}].policy", f"medium-replay reads the replay buffer of an off-policy "
                                                        f"agent ({', '.join(OFF_POLICY)}), but `train.algo` is "
                                                        f"{self.train.algo!r}; change one of them")
        if self.datasets and self.dataset_id:
            raise RecipeError("dataset_id", "cannot be combined with [[datasets]]; give each dataset its own `id`")
        if not self.datasets and not self.dataset_id:
            raise RecipeError("dataset_id", "is missing; add it (one dataset of all tiers) or [[datasets]] tables "
                                            "(several datasets, each with `id` and `tiers`)")
        ids = [d.id for d in self.datasets]
        if len(set(ids)) != len(ids):
            raise RecipeError("datasets[].id", f"must be unique, got {ids}")
        for i, d in enumerate(self.datasets):
            unknown = [n for n in d.tiers if n not in names]
            if unknown:
                raise RecipeError(f"datasets[{i}].tiers", f"names tier {unknown[0]!r}, which the recipe does not "
                                                          f"define; use one of {', '.join(names)}")
            # One streamed pass over the tiers fills every dataset, so each holds its tiers in the recipe's order.
            if sorted(d.tiers, key=names.index) != list(d.tiers):
                raise RecipeError(f"datasets[{i}].tiers", f"must follow the order of [[tiers]] ({', '.join(names)}); "
                                                          f"reorder it")

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
        for key in ("name", "description", "datasets"):
            data.pop(key)
        for tier, spec in zip(data["tiers"], self.tiers):
            tier["deterministic"] = spec.acts_deterministically  # hashed resolved, as built datasets were
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
        add_env_kwargs(data, self.env_id)
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def add_env_kwargs(blob: dict[str, Any], env_id: str) -> None:
    """Put the env's registered kwargs (dtkit/DoorKey's size, a frame skip) into a fingerprint ``blob``.

    Only when there are some, so the fingerprints and policy keys of plain envs (CartPole, Hopper, the
    shipped policies) made before kwargs were hashed stay the same.
    """
    env_kwargs = registered_env_kwargs(env_id)
    if env_kwargs:
        blob["env_kwargs"] = env_kwargs


def registered_env_kwargs(env_id: str) -> dict[str, Any]:
    """The kwargs gymnasium's registration of ``env_id`` passes to the env, as JSON values; {} when none.

    An id gymnasium does not know gives {} here: building it fails with a clear error anyway.
    A callable value is named by its import path (its ``repr`` holds a memory address).
    """
    from dtkit.gym_env import env_spec_for

    try:
        kwargs = env_spec_for(env_id).kwargs
    except DtkitError:
        return {}

    def name(value: Any) -> str:
        if callable(value) and hasattr(value, "__qualname__"):
            return f"{value.__module__}:{value.__qualname__}"
        return str(value)

    return json.loads(json.dumps(kwargs, sort_keys=True, default=name))


# --- finding and loading recipes -----------------------------------------------------------------


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


def load_recipe(name: str | os.PathLike, overrides: Sequence[str] = ()) -> Recipe:
    """Load a recipe by name (``"cartpole"``) or by path to a ``.toml`` file.

    ``overrides`` are ``KEY=VALUE`` edits applied before checking, such as
    ``train.steps=5000`` or ``tiers[0].episodes=10``; VALUE is read as TOML
    (a bare word is a string).

    Example:
        >>> load_recipe("cartpole", ["seed=3"]).seed
        3
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
    source = str(path) + "".join(f" --set {o}" for o in overrides)
    for text in overrides:
        _override(data, text, source)
    return parse_recipe(data, name=path.stem, source=source)


def parse_recipe(data: dict[str, Any], *, name: str, source: str = "<dict>") -> Recipe:
    """Check a recipe's keys and values and build a :class:`Recipe`; an error names the recipe and the key."""
    try:
        return from_table(Recipe, {"name": name, **data})
    except RecipeError as e:
        raise DtkitError(f"recipe {source}: {e}") from None


def _override(data: dict[str, Any], text: str, source: str) -> None:
    """Apply ``KEY=VALUE`` (KEY dotted, with ``[i]`` list indices) to the raw TOML ``data``."""
    key, sep, raw = (s.strip() for s in text.partition("="))
    if not sep or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*|\[\d+\])*", key):
        raise DtkitError(f"--set {text!r}: write KEY=VALUE, e.g. train.steps=5000 or tiers[0].episodes=10")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word (an env id) is a string
    *parents, last = [int(i) if i else p for p, i in re.findall(r"([A-Za-z_]\w*)|\[(\d+)\]", key)]
    node: Any = data
    try:
        for step in parents:  # a missing table is created: `--set train.steps=10` on a recipe without [train]
            node = node.setdefault(step, {}) if isinstance(step, str) else node[step]
        node[last] = value
    except (IndexError, KeyError, AttributeError, TypeError):
        raise DtkitError(f"recipe {source}: `{key}` does not exist; check the key") from None
