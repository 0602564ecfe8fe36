"""``dtkit datasets list | info NAME | build NAME``: the one front end for building datasets.

``build`` takes a recipe name in ``datasets/`` or a path to any recipe
``.toml``, with ``--set KEY=VALUE`` overrides, and builds every dataset of it
(training or loading SB3 policies, or running a scripted expert); ``list``
shows every recipe with its dataset ids and whether each is built; ``info``
prints a recipe and the data cards of its built datasets. ``--tiny`` shrinks
any recipe to a few hundred training steps and a few episodes (of at most 100
steps) per tier, under ids in a ``<namespace>-tiny/`` namespace, so every recipe
can be exercised end to end in seconds (the tests do). :func:`build_recipe` is
the same from Python. ``dtkit collect`` is a deprecated alias of ``build``
(:func:`collect_argv`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import gymnasium as gym
import tyro

from dtkit.collect.build import build_datasets, default_policy_dir
from dtkit.collect.card import CARD_MD, read_card
from dtkit.collect.recipe import DatasetSpec, Recipe, list_recipes, load_recipe, recipe_dir
from dtkit.collect.train import read_index
from dtkit.collect.writer import dataset_build_info, datasets_root
from dtkit.errors import DtkitError
from dtkit.gym_env import env_spec_for

__all__ = ["DatasetsConfig", "build_recipe", "collect_argv", "info_text", "list_text", "run_datasets", "tiny_recipe"]

# What --tiny keeps of a recipe's training: two checkpoints of a few dozen steps,
# small networks, and batches/buffers that fit (only keys the algorithm takes).
_TINY_CHUNK = {"ppo": 64, "sac": 100, "dqn": 100}
_TINY_HP: dict[str, dict[str, Any]] = {
    "ppo": {"n_steps": 64, "batch_size": 64, "n_epochs": 1},
    "sac": {"learning_starts": 150, "batch_size": 32, "buffer_size": 1_000},  # 50 gradient steps
    "dqn": {"learning_starts": 150, "batch_size": 32, "buffer_size": 1_000},
}
_TINY_EPISODES, _TINY_TRANSITIONS, _TINY_REF_EPISODES = 2, 200, 2
# HalfCheetah never terminates: at its 1000-step limit a tiny build would spend
# ~90% of its time on a dozen full-length evaluation episodes.
_TINY_MAX_EPISODE_STEPS = 100


@dataclass(frozen=True)
class DatasetsConfig:
    """Build, list or describe datasets made from recipes: datasets/*.toml or your own recipe file (D4RL-style tiers)."""

    action: Annotated[Literal["list", "info", "build"], tyro.conf.Positional] = "list"
    """list: recipes, their dataset ids and whether each is built; info NAME: a recipe and its data cards; build NAME: train (or load) the SB3 policies, or run the scripted expert, and build every dataset of the recipe."""
    name: Annotated[str | None, tyro.conf.Positional, tyro.conf.arg(metavar="NAME")] = None
    """Recipe name (e.g. hopper) or path to a recipe .toml; for info also a dataset id (e.g. dtkit/hopper/medium-v0)."""
    overrides: Annotated[tuple[str, ...], tyro.conf.arg(name="set", metavar="KEY=VALUE")] = ()
    """Change recipe keys before building, each checked like the file: e.g. --set train.steps=5000 seed=3 tiers[0].episodes=10 env_id=Acrobot-v1 (VALUE is TOML; a bare word is a string)."""
    force: bool = False
    """Rebuild datasets that already exist (the trained policies are kept)."""
    tiny: bool = False
    """A few hundred training steps and a few episodes per tier, as dtkit-tiny/... ids: a check in seconds, not a benchmark."""
    policy_dir: Path | None = None
    """Folder for the SB3 checkpoints (default: datasets/policies/<recipe> in a checkout, else ~/.cache/dtkit/policies/...)."""
    progress: bool = True
    """Show progress bars."""


def tiny_recipe(recipe: Recipe) -> Recipe:
    """``recipe`` shrunk to a seconds-long build, with its dataset ids moved to ``<namespace>-tiny/``.

    Example:
        >>> tiny_recipe(load_recipe("hopper")).outputs()[0].id
        'dtkit-tiny/hopper/random-v0'
    """
    tiers = tuple(dataclasses.replace(t, episodes=t.episodes and min(t.episodes, _TINY_EPISODES),
                                      transitions=t.transitions and min(t.transitions, _TINY_TRANSITIONS))
                  for t in recipe.tiers)
    train = None if recipe.train is None else _tiny_train(recipe.train)  # a scripted expert: nothing to train
    return dataclasses.replace(
        recipe, env_id=_tiny_env(recipe.env_id), train=train, tiers=tiers, ref_episodes=min(recipe.ref_episodes, _TINY_REF_EPISODES),
        dataset_id=_tiny_id(recipe.dataset_id) if recipe.dataset_id else "",
        datasets=tuple(dataclasses.replace(d, id=_tiny_id(d.id)) for d in recipe.datasets),
        description=f"[tiny, for tests] {recipe.description}",
    )


def _tiny_train(spec: Any) -> Any:
    algo = spec.algo
    hp = copy.deepcopy(spec.hyperparams)
    hp.update(_TINY_HP[algo])
    hp["policy_kwargs"] = dict(hp.get("policy_kwargs", {}), net_arch=[32, 32])
    chunk = _TINY_CHUNK[algo]
    return dataclasses.replace(spec, steps=2 * chunk, checkpoint_every=chunk, eval_episodes=1, n_envs=1,
                               hyperparams=hp, prune=False)


def _tiny_env(env_id: str) -> str:
    """Register (once) and return ``dtkit_tiny/<env>``: the same env, episodes capped at 100 steps.

    Registered in this process only; a tiny dataset's metadata keeps the entry
    point, so ``minari``'s ``recover_environment`` can still rebuild the env.
    """
    spec = env_spec_for(env_id)  # imports dtkit.envs for a dtkit/... id
    tiny_id = f"dtkit_tiny/{spec.name}" + (f"-v{spec.version}" if spec.version is not None else "")
    if tiny_id not in gym.registry:
        limit = min(spec.max_episode_steps or _TINY_MAX_EPISODE_STEPS, _TINY_MAX_EPISODE_STEPS)
        gym.register(tiny_id, entry_point=spec.entry_point, kwargs=dict(spec.kwargs), max_episode_steps=limit)
    return tiny_id


def _tiny_id(dataset_id: str) -> str:
    head, sep, rest = dataset_id.partition("/")
    return f"{head}-tiny/{rest}" if sep else f"tiny/{dataset_id}"


def _recipe(name: str, tiny: bool, overrides: Sequence[str] = ()) -> Recipe:
    recipe = load_recipe(name, overrides)  # an unknown name lists the known ones
    return tiny_recipe(recipe) if tiny else recipe


def _status(recipe: Recipe, spec: DatasetSpec) -> str:
    info = dataset_build_info(spec.id)
    if info is None:
        return "not built"
    if info.get("fingerprint") != recipe.fingerprint(spec):
        return "built from another version of the recipe (rebuild: --force)"
    card = read_card(spec.id)
    return "built" + (f": {card['episodes']} episodes, {card['transitions']} transitions" if card else "")


def _training_status(recipe: Recipe, tiny: bool) -> str:
    if recipe.train is None:
        return "scripted expert, nothing to train"
    folder = default_policy_dir(recipe, packaged=not tiny)
    index = read_index(folder)
    if index is None:
        return "policies not trained"
    if index.trained_steps >= recipe.train.steps:
        return "policies trained"
    return f"policies trained to {index.trained_steps:,} steps (build resumes there)"


def list_text(*, tiny: bool = False) -> str:
    """Every recipe, its environment and training budget, and each dataset's id and state."""
    lines = []
    for name in list_recipes():
        try:
            recipe = _recipe(name, tiny)
        except DtkitError as e:  # one broken recipe must not hide the others
            lines.append(f"{name}: invalid recipe: {e}")
            continue
        agent = (f"scripted expert {recipe.expert}" if recipe.train is None
                 else f"SB3 {recipe.train.algo.upper()} {recipe.train.steps:,} steps")
        lines.append(f"{name}: {recipe.env_id}, {agent}, "
                     f"tiers {', '.join(t.name for t in recipe.tiers)}; {_training_status(recipe, tiny)}")
        width = max(len(d.id) for d in recipe.outputs())
        lines += [f"  {d.id:<{width}}  {_status(recipe, d)}" for d in recipe.outputs()]
    return "\n".join(lines) if lines else f"no recipes in {recipe_dir()}"


def _recipe_for(name: str, tiny: bool, overrides: Sequence[str]) -> tuple[Recipe, list[DatasetSpec]]:
    """The recipe named ``name`` (or at that path), or the one that makes dataset ``name``, and the datasets asked about."""
    if "/" not in name or name.endswith(".toml"):
        recipe = _recipe(name, tiny, overrides)
        return recipe, list(recipe.outputs())
    tiny = tiny or name.split("/")[0].endswith("-tiny")  # a tiny id needs no --tiny
    for rname in list_recipes():
        try:
            recipe = _recipe(rname, tiny)
        except DtkitError:
            continue
        for d in recipe.outputs():
            if d.id == name:
                return recipe, [d]
    raise DtkitError(f"no recipe makes dataset {name!r}; `dtkit datasets list` shows the dataset ids "
                     f"(known recipes: {', '.join(list_recipes())})")


def info_text(name: str, *, tiny: bool = False, overrides: Sequence[str] = ()) -> str:
    """A recipe (or the recipe of a dataset id) and the data cards of its built datasets.

    A local dataset that no recipe made gets a card read from its data.
    """
    try:
        recipe, specs = _recipe_for(name, tiny, overrides)
    except DtkitError:
        import minari

        if "/" in name and name in minari.list_local_datasets():
            from dtkit.data.summary import dataset_card_text

            return dataset_card_text(name)
        raise
    t = recipe.train
    if t is None:
        agent = f"  behaviour agent: scripted expert {recipe.expert}, with epsilon-random actions per tier"
    else:
        hp = ", ".join(f"{k}={v}" for k, v in t.hyperparams.items()) or "SB3 defaults"
        agent = (f"  behaviour agent: SB3 {t.algo.upper()} {t.policy}, {t.steps:,} steps, a checkpoint every "
                 f"{t.checkpoint_every:,} ({hp})")
    lines = [
        f"recipe {recipe.name}: {recipe.env_id}, seed {recipe.seed}",
        agent,
        "  tiers: " + "; ".join(_tier_text(x) for x in recipe.tiers),
        "",
    ]
    for d in specs:
        card = datasets_root() / d.id / CARD_MD
        if card.is_file():
            lines.append(card.read_text())
        else:
            flag = " --tiny" if tiny else ""
            lines += [f"# {d.id}", "", f"tiers {' + '.join(d.tiers)}; {_status(recipe, d)}"
                      + (f": dtkit datasets build {recipe.name}{flag}" if dataset_build_info(d.id) is None else ""), ""]
    return "\n".join(lines).rstrip() + "\n"


def _tier_text(t: Any) -> str:
    if t.policy == "medium-replay":
        count = "replay buffer up to medium"
    else:
        count = f"{t.episodes} episodes" if t.episodes is not None else f"{t.transitions:,} transitions"
    pick = f" at {t.fraction:g} normalised" if t.fraction is not None else (
        f" at return {t.target_return:g}" if t.target_return is not None else "")
    return f"{t.name} ({t.policy}{pick}, {count})"


def build_recipe(name: str | Path, *, tiny: bool = False, force: bool = False, progress: bool = True,
                 policy_dir: Path | None = None, overrides: Sequence[str] = ()) -> list[str]:
    """Build every dataset of recipe ``name`` (or of the recipe file at that path); return their ids.

    Datasets already built from the same recipe are kept (returned at once).
    ``overrides`` are ``KEY=VALUE`` edits of the recipe (see :func:`load_recipe`).

    Example:
        >>> build_recipe("cartpole", progress=False)  # doctest: +SKIP
        ['dtkit/cartpole/mixed-v0']
    """
    recipe = _recipe(str(name), tiny, overrides)
    if policy_dir is None and recipe.train is not None:
        # Only an unchanged recipe of datasets/ uses the shipped policies; a tiny or edited one trains in the cache.
        packaged = not (tiny or overrides or str(name).endswith(".toml"))
        policy_dir = default_policy_dir(recipe, packaged)
    return build_datasets(recipe, policy_dir, force=force, progress=progress)


def run_datasets(cfg: DatasetsConfig) -> str:
    """Carry out ``dtkit datasets ...`` and return what to print."""
    if cfg.action == "list":
        if cfg.name is not None or cfg.overrides:
            raise DtkitError(f"`dtkit datasets list` takes no name or --set (got {cfg.name or cfg.overrides[0]!r}); "
                             f"try `dtkit datasets info {cfg.name or 'NAME'}`")
        return list_text(tiny=cfg.tiny)
    if cfg.name is None:
        raise DtkitError(f"`dtkit datasets {cfg.action}` needs a recipe name, one of: {', '.join(list_recipes())}")
    if cfg.action == "info":
        return info_text(cfg.name, tiny=cfg.tiny, overrides=cfg.overrides)
    ids = build_recipe(cfg.name, force=cfg.force, tiny=cfg.tiny, progress=cfg.progress, policy_dir=cfg.policy_dir,
                       overrides=cfg.overrides)
    return "\n".join(f"dataset ready: {i}" for i in ids)


# The recipe key that replaces each flag of the old `dtkit collect`.
_COLLECT_FLAGS = {"--env-id": "env_id", "--algo": "train.algo", "--train-steps": "train.steps",
                  "--checkpoint-every": "train.checkpoint_every", "--tiers": "tiers", "--seed": "seed",
                  "--dataset-id": "dataset_id"}


def collect_argv(args: Sequence[str]) -> list[str]:
    """``dtkit collect --recipe NAME ...`` (deprecated) as the ``dtkit datasets build NAME ...`` it stands for.

    Its flags that set a recipe key (``--env-id``, ``--train-steps``, ...) are
    gone; each is refused with the ``--set`` that replaces it.
    """
    args = list(args)
    for flag, key in _COLLECT_FLAGS.items():
        if any(a.split("=")[0] == flag for a in args):
            raise DtkitError(f"`dtkit collect {flag}` is gone: use `dtkit datasets build RECIPE --set {key}=VALUE` "
                             f"(RECIPE a name in datasets/ or your own .toml; see datasets/cartpole.toml)")
    if "--recipe" in args[:-1]:
        at = args.index("--recipe")
        args[at:at + 2] = [args[at + 1]]
    return ["datasets", "build", *args]
