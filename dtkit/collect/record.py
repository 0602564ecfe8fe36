"""Recording episodes through an env wrapper, whatever acts in the env.

The wrapper sees every ``reset`` and ``step``, so it records the same data
whether a scripted expert, an SB3 agent (while training or rolling out) or a
person drives the env, without reaching into any algorithm's internals. Each
finished episode is handed to ``on_episode`` and then forgotten, so a caller
that writes it to disk holds one episode in memory at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

__all__ = ["Episode", "RecordEpisodes", "stack"]


@dataclass
class Episode:
    """One finished episode as numpy arrays (``observations`` has one more row)."""

    seed: int | None  # the reset seed; None for replay-buffer episodes (training resets are not seeded one by one)
    observations: Any  # (n+1, *obs_shape), or a dict of such arrays
    actions: np.ndarray  # (n, *act_shape)
    rewards: np.ndarray  # (n,)
    terminations: np.ndarray  # (n,) bool
    truncations: np.ndarray  # (n,) bool

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def ret(self) -> float:
        return float(self.rewards.sum())


def stack(items: list[Any]) -> Any:
    """Stack observations (arrays, or dicts of arrays) on a new first axis."""
    if isinstance(items[0], dict):
        return {k: stack([it[k] for it in items]) for k in items[0]}
    return np.stack(items)


class RecordEpisodes(gym.Wrapper):
    """Calls ``on_episode(Episode)`` when an episode ends (terminated or truncated).

    Observations keep the env's dtype (uint8 images stay uint8). An episode cut
    by a new ``reset`` before it ended is dropped: it has no end to learn from.

    Example:
        >>> got = []
        >>> env = RecordEpisodes(gym.make("CartPole-v1"), got.append)
        >>> obs, _ = env.reset(seed=0)
        >>> while not got:
        ...     _ = env.step(env.action_space.sample())
        >>> got[0].observations.shape[0] == len(got[0]) + 1
        True
    """

    def __init__(self, env: gym.Env, on_episode: Callable[[Episode], None]) -> None:
        super().__init__(env)
        self.on_episode = on_episode
        self._seed: int | None = None
        self._obs: list[Any] = []
        self._steps: list[tuple[np.ndarray, float, bool, bool]] = []  # action, reward, terminated, truncated

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._seed, self._obs, self._steps = seed, [obs], []
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._obs.append(obs)
        self._steps.append((np.asarray(action), float(reward), bool(terminated), bool(truncated)))
        if terminated or truncated:
            actions, rewards, terms, truncs = zip(*self._steps)
            episode = Episode(
                seed=self._seed, observations=stack(self._obs), actions=np.stack(actions),
                rewards=np.asarray(rewards, dtype=np.float64), terminations=np.asarray(terms, dtype=bool),
                truncations=np.asarray(truncs, dtype=bool),
            )
            self._obs, self._steps = [], []
            self.on_episode(episode)
        return obs, reward, terminated, truncated, info
