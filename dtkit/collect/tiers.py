"""Quality tiers: pick a checkpoint per tier, then roll each tier out.

Follows D4RL (Fu et al., 2020): "random" is a uniform policy, "expert" the
best (or final) checkpoint, "medium" the checkpoint whose evaluated return is
nearest a target. D4RL's medium agent scores about 1/3 of the expert; here the
target is given as a normalised score, ``ref_min + fraction * (ref_max - ref_min)``,
so it also means something for negative returns (Pendulum), or as a raw return.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
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

__all__ = ["TierRollout", "expert_checkpoint", "rollout_tiers", "select_checkpoints", "streamed"]


@dataclass
class TierRollout:
    """What a data card needs of a tier whose episodes went to disk: each one's return and length."""

    tier: TierSpec
    source: str  # "uniform", the checkpoint file, or how a scripted expert acted
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return sum(self.lengths)

    def summary(self) -> dict[str, Any]:
        rets = self.returns
        return {
            "name": self.tier.name, "policy": self.tier.policy, "source": self.source,
            "deterministic": self.tier.deterministic if self.tier.policy != "random" else False,
            "epsilon": self.tier.epsilon,
            "episodes": len(rets), "steps": self.steps,
            "mean_return": sum(rets) / len(rets), "min_return": min(rets), "max_return": max(rets),
        }


@contextmanager
def streamed(tier: TierSpec, source: str, sink: Callable[[TierSpec, Episode], None],
             progress: bool) -> Iterator[tuple[TierRollout, Callable[[Episode], None]]]:
    """A tier being rolled out: each episode given to the yielded ``add`` goes to ``sink``, is summarised
    in the yielded rollout and moves the tier's progress bar (episodes, or transitions up to the target)."""
    from tqdm.auto import tqdm

    rollout, by_episode = TierRollout(tier, source), tier.transitions is None
    with tqdm(total=tier.episodes if by_episode else tier.transitions, desc=f"tier {tier.name}",
              unit="ep" if by_episode else "step", disable=not progress, dynamic_ncols=True) as bar:

        def add(ep: Episode) -> None:
            bar.update(1 if by_episode else min(len(ep), bar.total - bar.n))
            rollout.returns.append(ep.ret)
            rollout.lengths.append(len(ep))
            sink(tier, ep)

        yield rollout, add


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
    sink: Callable[[TierSpec, Episode], None],
    *,
    seed: int = 0,
    sources: Mapping[str, str] | None = None,
    n_parallel: int = 16,
    progress: bool = False,
    only: Collection[str] | None = None,
    replays: Mapping[str, list[Episode]] | None = None,
) -> list[TierRollout]:
    """Roll out every tier (or those named in ``only``), handing each episode to ``sink(tier, episode)``.

    ``policies`` maps medium and expert tier names to SB3 models, ``replays``
    maps medium-replay tier names to their episodes
    (:func:`dtkit.collect.replay.replay_episodes`). Episodes reach ``sink`` in
    order as soon as they can (streamed to disk), and the rollouts hold only
    returns and lengths, so no tier is held in memory.

    Episode ``j`` of tier ``i`` is reset with a seed derived from ``(seed, i, j)``
    and sampled actions draw from RNGs seeded the same way, so the whole mixture
    is a pure function of ``seed`` and the policies. ``i`` is the tier's position
    in ``tiers`` whether or not ``only`` skips others, so a tier's episodes are
    the same in every dataset that holds it.

    Example:
        >>> tiers = [TierSpec("random", "random", episodes=5)]
        >>> [r.steps for r in rollout_tiers("CartPole-v1", tiers, {}, lambda t, ep: None)]  # doctest: +SKIP
        [...]
    """
    action_space = make_env(env_id).action_space
    out = []
    for i, t in enumerate(tiers):
        if only is not None and t.name not in only:
            continue
        if t.policy == "medium-replay":
            if replays is None or t.name not in replays:
                raise DtkitError(f"tier {t.name!r} needs its replay episodes; pass replays[{t.name!r}]")
            with streamed(t, f"replay<={(sources or {}).get(t.name, 'replay buffer')}", sink, progress) as (rollout, add):
                for ep in replays[t.name]:
                    add(ep)
            out.append(rollout)
            continue
        rng_seed = episode_seed(seed, TIER_RNG_STREAM, i)
        if t.policy == "random":
            actor, source = random_actor(action_space, rng_seed), "uniform"
        else:
            if t.name not in policies:
                raise DtkitError(f"tier {t.name!r} needs a policy; pass policies[{t.name!r}]")
            actor = sb3_actor(policies[t.name], t.deterministic, t.epsilon)
            source = (sources or {}).get(t.name, type(policies[t.name]).__name__)
        with streamed(t, source, sink, progress) as (rollout, add), seeded_rng(rng_seed):
            run_episodes(env_id, actor, lambda j, i=i: episode_seed(seed, TIER_STREAM, j, i), episodes=t.episodes,
                         transitions=t.transitions, n_parallel=n_parallel, on_episode=add, keep=False)
        out.append(rollout)
    return out
