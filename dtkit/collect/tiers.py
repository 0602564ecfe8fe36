"""Quality tiers: pick a checkpoint per tier, and summarise each tier as it is rolled out.

Follows D4RL (Fu et al., 2020): "random" is a uniform policy, "expert" the
best (or final) checkpoint, "medium" the checkpoint whose evaluated return is
nearest a target. D4RL's medium agent scores about 1/3 of the expert; here the
target is given as a normalised score, ``ref_min + fraction * (ref_max - ref_min)``,
so it also means something for negative returns (Pendulum), or as a raw return.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from dtkit.collect.recipe import TierSpec
from dtkit.collect.record import Episode
from dtkit.collect.train import Checkpoint, PolicyIndex
from dtkit.errors import DtkitError

__all__ = ["TierRollout", "expert_checkpoint", "select_checkpoints"]


@dataclass
class TierRollout:
    """What a data card needs of a tier whose episodes went to disk: each one's return and length."""

    tier: TierSpec
    source: str  # "uniform", the checkpoint file, or how a scripted expert acted
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

    def watch(self, episodes: Iterable[Episode], progress: bool) -> Iterator[Episode]:
        """``episodes`` passed through, each summarised here and moving the tier's progress bar
        (episodes, or transitions up to the target)."""
        from tqdm.auto import tqdm

        by_episode = self.tier.transitions is None
        with tqdm(total=self.tier.episodes if by_episode else self.tier.transitions, desc=f"tier {self.tier.name}",
                  unit="ep" if by_episode else "step", disable=not progress, dynamic_ncols=True) as bar:
            for ep in episodes:
                bar.update(1 if by_episode else min(len(ep), bar.total - bar.n))
                self.returns.append(ep.ret)
                self.lengths.append(len(ep))
                yield ep

    def summary(self) -> dict[str, Any]:
        rets = self.returns
        return {
            "name": self.tier.name, "policy": self.tier.policy, "source": self.source,
            "deterministic": self.tier.acts_deterministically and self.tier.policy != "random",
            "epsilon": self.tier.epsilon,
            "episodes": len(rets), "steps": sum(self.lengths),
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
            det = t.acts_deterministically
            if t.checkpoint == "final":
                return index.final, det
            # Ties (CartPole saturates at 500) go to the later, more-trained checkpoint.
            return max(index.checkpoints, key=lambda c: (c.mean_return(det), c.steps)), det
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
            target = t.target_return
            if target is None:
                assert t.fraction is not None  # TierSpec: a medium tier sets fraction or target_return
                target = ref_min + t.fraction * (ref_max - ref_min)
            det = t.acts_deterministically
            # Ties go to the earlier checkpoint: fewer steps is the more "medium" agent.
            chosen[t.name] = min(index.checkpoints, key=lambda c: (abs(c.mean_return(det) - target), c.steps))
    return chosen
