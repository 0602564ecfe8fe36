"""Quality tiers: pick a checkpoint per tier, then roll each tier out.

Follows D4RL (Fu et al., 2020): "random" is a uniform policy, "expert" the
best (or final) checkpoint, "medium" the checkpoint whose evaluated return is
nearest a target. D4RL's medium agent scores about 1/3 of the expert; here the
target is given as a normalised score, ``ref_min + fraction * (ref_max - ref_min)``,
so it also means something for negative returns (Pendulum), or as a raw return.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dtkit.collect.episodes import (
    TIER_RNG_STREAM,
    TIER_STREAM,
    Episode,
    episode_seed,
    random_actor,
    run_episodes,
    sb3_actor,
    seeded_rng,
)
from dtkit.collect.recipe import TierSpec
from dtkit.collect.train import Checkpoint, PolicyIndex
from dtkit.errors import DtkitError
from dtkit.gym_env import make_env

__all__ = ["EpisodeSummary", "TierRollout", "expert_checkpoint", "rollout_tiers", "select_checkpoints"]

class EpisodeSummary:
    """What a data card needs of an episode whose arrays went to disk: its return and length."""

    def __init__(self, episode: Episode) -> None:
        self.ret, self._len = episode.ret, len(episode)

    def __len__(self) -> int:
        return self._len


@dataclass
class TierRollout:
    """The episodes of one tier (or their summaries, when streamed) and where they came from."""

    tier: TierSpec
    source: str  # "uniform" or the checkpoint file
    episodes: list[Any]  # Episode, or EpisodeSummary when streamed

    @property
    def steps(self) -> int:
        return sum(len(e) for e in self.episodes)

    def summary(self) -> dict[str, Any]:
        rets = [e.ret for e in self.episodes]
        return {
            "name": self.tier.name, "policy": self.tier.policy, "source": self.source,
            "deterministic": self.tier.deterministic if self.tier.policy != "random" else False,
            "epsilon": self.tier.epsilon,
            "episodes": len(rets), "steps": self.steps,
            "mean_return": sum(rets) / len(rets), "min_return": min(rets), "max_return": max(rets),
        }


def expert_checkpoint(index: PolicyIndex, tiers: Sequence[TierSpec]) -> tuple[Checkpoint, bool]:
    """The checkpoint that defines ``ref_max_score`` and whether it acts deterministically.

    It is the first expert tier's checkpoint; without an expert tier, the final one.
    """
    if not index.checkpoints:
        raise DtkitError("the policy index lists no checkpoints; delete the policy dir to retrain")
    for t in tiers:
        if t.policy == "expert":
            if t.checkpoint == "final":
                return index.final, t.deterministic
            # Ties (CartPole saturates at 500) go to the later, more-trained checkpoint.
            return max(index.checkpoints, key=lambda c: (c.mean_return(t.deterministic), c.steps)), t.deterministic
    return index.final, True


def select_checkpoints(
    tiers: Sequence[TierSpec], index: PolicyIndex, ref_min: float, ref_max: float
) -> dict[str, Checkpoint]:
    """Map each non-random tier's name to its checkpoint, using the recorded eval returns."""
    chosen: dict[str, Checkpoint] = {}
    for t in tiers:
        if t.policy == "expert":
            chosen[t.name] = expert_checkpoint(index, [t])[0]
        elif t.policy in ("medium", "medium-replay"):
            target = t.target_return if t.target_return is not None else ref_min + t.fraction * (ref_max - ref_min)
            # Ties go to the earlier checkpoint: fewer steps is the more "medium" agent.
            chosen[t.name] = min(index.checkpoints, key=lambda c: (abs(c.mean_return(t.deterministic) - target), c.steps))
    return chosen


def rollout_tiers(
    env_id: str,
    tiers: Sequence[TierSpec],
    policies: Mapping[str, Any],
    *,
    seed: int = 0,
    sources: Mapping[str, str] | None = None,
    n_parallel: int = 16,
    progress: bool = False,
    only: Collection[str] | None = None,
    replays: Mapping[str, list[Episode]] | None = None,
    sink: Callable[[TierSpec, Episode], None] | None = None,
) -> list[TierRollout]:
    """Roll out every tier (or those named in ``only``); ``policies`` maps
    medium and expert tier names to SB3 models, ``replays`` maps medium-replay
    tier names to their episodes (:func:`dtkit.collect.replay.replay_episodes`).

    Episode ``j`` of tier ``i`` is reset with a seed derived from ``(seed, i, j)``
    and sampled actions draw from RNGs seeded the same way, so the whole mixture
    is a pure function of ``seed`` and the policies. ``i`` is the tier's position
    in ``tiers`` whether or not ``only`` skips others, so a tier's episodes are
    the same in every dataset that holds it.

    With ``sink``, each episode goes to ``sink(tier, episode)`` in order as
    soon as it can (streaming it to disk) and the rollouts hold only
    :class:`EpisodeSummary` objects, so no tier is held in memory.

    Example:
        >>> tiers = [TierSpec("random", "random", episodes=5)]
        >>> [r.steps for r in rollout_tiers("CartPole-v1", tiers, {}, seed=0)]  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    action_space = make_env(env_id).action_space
    out = []
    for i, t in enumerate(tiers):
        if only is not None and t.name not in only:
            continue
        if t.policy == "medium-replay":
            if replays is None or t.name not in replays:
                raise DtkitError(f"tier {t.name!r} needs its replay episodes; pass replays[{t.name!r}]")
            source = (sources or {}).get(t.name, "replay buffer")
            if sink is None:
                out.append(TierRollout(t, f"replay<={source}", list(replays[t.name])))
            else:
                for ep in replays[t.name]:
                    sink(t, ep)
                out.append(TierRollout(t, f"replay<={source}", [EpisodeSummary(ep) for ep in replays[t.name]]))
            continue
        rng_seed = episode_seed(seed, TIER_RNG_STREAM, i)
        if t.policy == "random":
            actor, source = random_actor(action_space, rng_seed), "uniform"
        else:
            if t.name not in policies:
                raise DtkitError(f"tier {t.name!r} needs a policy; pass policies[{t.name!r}]")
            actor = sb3_actor(policies[t.name], t.deterministic, t.epsilon)
            source = (sources or {}).get(t.name, type(policies[t.name]).__name__)
        total = t.episodes if t.episodes is not None else t.transitions
        unit = "ep" if t.episodes is not None else "step"
        with tqdm(total=total, desc=f"tier {t.name}", unit=unit, disable=not progress, dynamic_ncols=True) as bar:
            summaries: list[EpisodeSummary] = []

            def tick(ep: Episode, bar: Any = bar, t: TierSpec = t, summaries: list = summaries) -> None:
                bar.update(1 if unit == "ep" else min(len(ep), bar.total - bar.n))
                if sink is not None:
                    summaries.append(EpisodeSummary(ep))
                    sink(t, ep)

            with seeded_rng(rng_seed):
                eps = run_episodes(
                    env_id, actor, lambda j, i=i: episode_seed(seed, TIER_STREAM, j, i),
                    episodes=t.episodes, transitions=t.transitions, n_parallel=n_parallel, on_episode=tick,
                    keep=sink is None,
                )
        out.append(TierRollout(t, source, eps if sink is None else summaries))
    return out
