"""Data cards: what a built dataset holds, as JSON and as markdown, beside its ``data/``.

The card is written into the staged dataset folder before it is renamed into
place (:meth:`dtkit.collect.writer.DatasetStream.finish`), so a dataset never appears
without its card. It holds no timestamps: the same build gives the same card.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dtkit.collect.tiers import TierRollout
from dtkit.collect.writer import datasets_root

__all__ = ["CARD_JSON", "CARD_MD", "card_files", "card_markdown", "read_card"]

CARD_JSON = "datacard.json"
CARD_MD = "DATACARD.md"


def _stats(x: np.ndarray) -> dict[str, float]:
    return {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()),
            "p25": float(np.percentile(x, 25)), "median": float(np.median(x)),
            "p75": float(np.percentile(x, 75)), "max": float(x.max())}


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def card_files(
    dataset_id: str,
    rollouts: Sequence[TierRollout],
    folder: Path,
    *,
    env_id: str,
    ref_min_score: float | None,
    ref_max_score: float | None,
    build_info: dict[str, Any],
) -> dict[str, str]:
    """The card of the dataset staged in ``folder`` (its size is measured there), as JSON and markdown files."""
    returns = np.array([x for r in rollouts for x in r.returns])
    lengths = np.array([n for r in rollouts for n in r.lengths], dtype=np.float64)
    card: dict[str, Any] = {
        "dataset_id": dataset_id,
        "env_id": env_id,
        **{key: build_info.get(key) for key in ("recipe", "algo", "expert", "trained_steps", "seed", "fingerprint",
                                                 "dtkit_version")},
        "episodes": len(returns),
        "transitions": int(lengths.sum()),
        "size_bytes": _size(folder),
        "returns": _stats(returns),
        "episode_length": _stats(lengths),
        "ref_min_score": ref_min_score,
        "ref_max_score": ref_max_score,
        "tiers": [r.summary() for r in rollouts],
        "checkpoints": build_info.get("checkpoints", {}),
    }
    if ref_min_score is not None and ref_max_score is not None and ref_max_score != ref_min_score:
        # D4RL's normalised score: 0 = uniform random, 100 = the expert.
        card["normalized_return_mean"] = 100 * (card["returns"]["mean"] - ref_min_score) / (ref_max_score - ref_min_score)
    return {CARD_JSON: json.dumps(card, indent=2) + "\n", CARD_MD: card_markdown(card)}


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def card_markdown(card: dict[str, Any]) -> str:
    """The card as a short markdown page (what ``dtkit datasets info`` prints)."""
    r, n = card["returns"], card["episode_length"]
    if card["algo"] == "scripted":
        agent = f"scripted expert `{card.get('expert')}`, seed {card['seed']} (recipe `{card['recipe']}`)"
    else:
        agent = (f"SB3 {str(card['algo']).upper()}, {card['trained_steps']} steps, seed {card['seed']} "
                 f"(recipe `{card['recipe']}`)")
    lines = [
        f"# {card['dataset_id']}",
        "",
        f"- environment: {card['env_id']}; behaviour agent: {agent}",
        f"- {card['episodes']} episodes, {card['transitions']} transitions, {_mib(card['size_bytes'])} on disk",
        (f"- return: mean {r['mean']:.1f} ± {r['std']:.1f}, min {r['min']:.1f}, median {r['median']:.1f}, "
         f"max {r['max']:.1f}; episode length mean {n['mean']:.1f} (min {n['min']:.0f}, max {n['max']:.0f})"),
        f"- ref_min_score {card['ref_min_score']} (uniform random), ref_max_score {card['ref_max_score']} (expert)",
    ]
    if "normalized_return_mean" in card:
        lines.append(f"- normalised mean return: {card['normalized_return_mean']:.1f}")
    lines += ["", "| tier | source | episodes | steps | mean return | min | max |", "|---|---|---:|---:|---:|---:|---:|"]
    for t in card["tiers"]:
        lines.append(f"| {t['name']} | {t['source']} | {t['episodes']} | {t['steps']} | {t['mean_return']:.1f} "
                     f"| {t['min_return']:.1f} | {t['max_return']:.1f} |")
    lines += ["", f"fingerprint `{card['fingerprint']}`, dtkit {card['dtkit_version']}", ""]
    return "\n".join(lines)


def read_card(dataset_id: str) -> dict[str, Any] | None:
    """A built dataset's card, or None (not built, or built before cards existed)."""
    path = datasets_root() / dataset_id / CARD_JSON
    return json.loads(path.read_text()) if path.is_file() else None
