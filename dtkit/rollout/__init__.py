"""Vectorised evaluation over ``gymnasium.vector`` with batched, KV-cached inference."""

from __future__ import annotations

from dtkit.rollout.evaluate import EvalReport, TargetResult, evaluate, make_vector_env, normalized_score
from dtkit.rollout.reward_feed import RewardFeed

__all__ = ["EvalReport", "RewardFeed", "TargetResult", "evaluate", "make_vector_env", "normalized_score"]
