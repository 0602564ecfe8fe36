"""dtkit.collect: behaviour data from Stable-Baselines3 agents or scripted experts into local Minari datasets.

Recipes (``datasets/*.toml``, parsed into the dataclasses of
``dtkit.collect.recipe``) say what to train, or which scripted expert to run,
and which quality tiers to roll out; this package trains the agent with
evaluated checkpoints, picks a checkpoint per tier (random / medium /
medium-replay / expert, as in D4RL), rolls the tiers out and streams each of
the recipe's Minari datasets to disk, published atomically with a data card.
:func:`build_recipe` (``dtkit datasets build``) is the one front end.

Example:
    >>> from dtkit.collect import build_recipe
    >>> build_recipe("cartpole", progress=False)  # doctest: +SKIP
    ['dtkit/cartpole/mixed-v0']

SB3 and minari are imported only when something is trained or written, so
importing this package stays cheap for the CLI.
"""

from __future__ import annotations

from dtkit.collect.build import build_datasets
from dtkit.collect.card import read_card
from dtkit.collect.catalog import build_recipe, tiny_recipe
from dtkit.collect.episodes import run_episodes
from dtkit.collect.recipe import DatasetSpec, Recipe, TierSpec, TrainSpec, list_recipes, load_recipe, parse_recipe, recipe_dir
from dtkit.collect.replay import replay_episodes
from dtkit.collect.train import prune_checkpoints, read_index, train_behaviour

__all__ = [
    "DatasetSpec",
    "Recipe",
    "TierSpec",
    "TrainSpec",
    "build_datasets",
    "build_recipe",
    "list_recipes",
    "load_recipe",
    "parse_recipe",
    "prune_checkpoints",
    "read_card",
    "read_index",
    "recipe_dir",
    "replay_episodes",
    "run_episodes",
    "tiny_recipe",
    "train_behaviour",
]
