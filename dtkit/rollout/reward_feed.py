"""A gymnasium wrapper that reports each reward to a :class:`~dtkit.policy.DTPolicy`.

Stable-Baselines3's ``predict`` API carries no rewards, yet a decision
transformer needs them to keep its return-to-go. The wrapper closes that gap.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["RewardFeed"]


class RewardFeed(gym.Wrapper):
    def __init__(self, env: gym.Env, policy: Any, index: int = 0) -> None:
        super().__init__(env)
        self.policy, self.index = policy, index

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.policy.record(np.array([reward]), rows=np.array([self.index]))
        return obs, reward, terminated, truncated, info
