"""Minari datasets -> columnar trajectories with returns-to-go and normalisation statistics."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from dtkit.data.lazy import LazyObs, lazy_obs_keys, open_obs_cache, read_episodes
from dtkit.data.spaces import check_supported
from dtkit.errors import DtkitError

__all__ = ["Trajectories", "load_trajectories", "returns_to_go", "obs_statistics"]


@dataclass
class Trajectories:
    """All episodes of a dataset, concatenated step by step.

    Observations exclude each episode's final observation (no action follows it).

    Attributes:
        obs: key -> (N, *shape) observations ("obs" for a plain space); large integer keys (images,
            audio) are a :class:`~dtkit.data.lazy.LazyObs` on disk, read per batch.
        actions: (N, dim) float32 for Box, (N,) int64 for Discrete, in env units.
        rewards: (N,) float32.
        returns_to_go: (N,) float64, undiscounted sum of rewards from each step to its episode's end.
        timesteps: (N,) int64 step index within the episode.
        episode_starts, episode_lengths: (E,) int64.
    """

    obs: dict[str, np.ndarray | LazyObs]
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    episode_starts: np.ndarray
    episode_lengths: np.ndarray
    observation_space: gym.Space
    action_space: gym.Space
    dataset_id: str = "<in-memory>"
    env_id: str | None = None
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    env_spec: str | None = None
    """The dataset's recorded gymnasium env spec (JSON), to remake the env it was collected in."""
    returns_to_go: np.ndarray = field(init=False)
    timesteps: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        check_finite(self)
        self.returns_to_go = returns_to_go(self.rewards, self.episode_starts, self.episode_lengths)
        self.timesteps = np.arange(len(self.rewards), dtype=np.int64) - np.repeat(self.episode_starts, self.episode_lengths)

    @property
    def num_steps(self) -> int:
        return int(len(self.rewards))

    @property
    def num_episodes(self) -> int:
        return int(len(self.episode_lengths))

    @property
    def episode_returns(self) -> np.ndarray:
        return self.returns_to_go[self.episode_starts]

    def top_episodes(self, fraction: float) -> Trajectories:
        """The best ``fraction`` of episodes by return (at least one), as new Trajectories."""
        keep = max(1, int(round(fraction * self.num_episodes)))
        order = np.sort(np.argsort(-self.episode_returns, kind="stable")[:keep])
        idx = np.concatenate([np.arange(s, s + n) for s, n in zip(self.episode_starts[order], self.episode_lengths[order])])
        lengths = self.episode_lengths[order]
        return Trajectories(
            obs={k: v.take(idx, axis=0) for k, v in self.obs.items()}, actions=self.actions[idx], rewards=self.rewards[idx],
            terminations=self.terminations[idx], truncations=self.truncations[idx],
            episode_starts=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64), episode_lengths=lengths,
            observation_space=self.observation_space, action_space=self.action_space, dataset_id=self.dataset_id,
            env_id=self.env_id, ref_min_score=self.ref_min_score, ref_max_score=self.ref_max_score, env_spec=self.env_spec,
        )

    @classmethod
    def from_episodes(cls, episodes: list[dict[str, Any]], observation_space: gym.Space, action_space: gym.Space, **meta: Any) -> Trajectories:
        """Build from episode dicts with ``observations`` (n+1 steps), ``actions``, ``rewards``,
        ``terminations`` and ``truncations`` (n steps each)."""
        if not episodes:
            raise DtkitError(f"dataset {meta.get('dataset_id', '<in-memory>')!r} holds no episodes; build or choose a dataset with data")
        lengths = np.array([len(e["rewards"]) for e in episodes], dtype=np.int64)
        if (lengths == 0).any():
            raise DtkitError(f"dataset {meta.get('dataset_id', '<in-memory>')!r}: episode {int(np.argmin(lengths))} "
                             "has no steps; "
                             "every episode needs at least one action, so rebuild the dataset without empty episodes")
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        first = episodes[0]["observations"]
        keys = list(first.keys()) if isinstance(first, dict) else ["obs"]

        def obs_of(e: dict[str, Any], key: str) -> np.ndarray:
            o = e["observations"][key] if isinstance(e["observations"], dict) else e["observations"]
            return np.asarray(o)[: len(e["rewards"])]

        obs: dict[str, np.ndarray | LazyObs] = {k: np.concatenate([obs_of(e, k) for e in episodes]) for k in keys}
        act_dtype = np.int64 if isinstance(action_space, gym.spaces.Discrete) else np.float32
        actions = np.concatenate([np.asarray(e["actions"], dtype=act_dtype) for e in episodes])
        return cls(
            obs=obs,
            actions=actions,
            rewards=np.concatenate([np.asarray(e["rewards"], np.float32).reshape(-1) for e in episodes]),
            terminations=np.concatenate([np.asarray(e["terminations"], bool).reshape(-1) for e in episodes]),
            truncations=np.concatenate([np.asarray(e["truncations"], bool).reshape(-1) for e in episodes]),
            episode_starts=starts,
            episode_lengths=lengths,
            observation_space=observation_space,
            action_space=action_space,
            **meta,
        )


def check_finite(traj: Trajectories) -> None:
    """Raise a :class:`DtkitError` naming the first episode and step whose reward, action or float observation is NaN or inf."""
    columns: list[tuple[str, np.ndarray]] = [("reward", traj.rewards)]
    if np.issubdtype(traj.actions.dtype, np.floating):
        columns.append(("action", traj.actions))
    # In-memory float columns only: lazy keys (dtkit.data.lazy) are integer images/audio, never NaN, never loaded here.
    columns += [(f"observation {k!r}", v) for k, v in traj.obs.items()
                if isinstance(v, np.ndarray) and np.issubdtype(v.dtype, np.floating)]
    for what, col in columns:
        ok = np.isfinite(col.reshape(len(col), -1)).all(1)
        if not ok.all():
            i = int(np.argmin(ok))
            ep = int(np.searchsorted(traj.episode_starts, i, side="right") - 1)
            raise DtkitError(f"dataset {traj.dataset_id!r}: {what} at episode {ep}, step {i - int(traj.episode_starts[ep])} is "
                             f"{col.reshape(len(col), -1)[i].tolist()[:4]} (not finite); "
                             "fix or drop that episode and rebuild the dataset")


def returns_to_go(rewards: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Undiscounted returns-to-go per step, vectorised over episodes (float64 to keep sums exact).

    Example:
        >>> returns_to_go(np.array([1., 2., 3., 4.]), np.array([0, 2]), np.array([2, 2])).tolist()
        [3.0, 2.0, 7.0, 4.0]
    """
    r = rewards.astype(np.float64)
    c = np.cumsum(r)
    ends = np.repeat(starts + lengths - 1, lengths)
    return c[ends] - c + r


def obs_statistics(obs: Mapping[str, np.ndarray | LazyObs], keys: list[str]) -> dict[str, dict[str, list]]:
    """Per-key mean and std over all steps; std gets a floor so constant features stay finite.

    Normalised keys are float vectors, held in memory; a lazy key would be read whole.
    """
    stats = {}
    for k in keys:
        column = np.asarray(obs[k])
        x = column.reshape(len(column), -1).astype(np.float64)
        mean = x.mean(0).reshape(column.shape[1:])
        std = np.maximum(x.std(0), 1e-6).reshape(column.shape[1:])
        stats[k] = {"mean": mean.astype(np.float32).tolist(), "std": std.astype(np.float32).tolist()}
    return stats


def load_trajectories(dataset_id: str) -> Trajectories:
    """Load a local Minari dataset into :class:`Trajectories`.

    Raises:
        DtkitError: the id is unknown (the message lists the local datasets), or its spaces are unsupported.

    Example:
        >>> traj = load_trajectories("dtkit/cartpole/mixed-v0")  # doctest: +SKIP
        >>> traj.episode_returns.mean()  # doctest: +SKIP
    """
    import minari

    local = sorted(minari.list_local_datasets())
    if dataset_id not in local:
        _explain_unlisted(dataset_id)
        hint = f"local datasets: {', '.join(local)}" if local else "no local datasets yet"
        raise DtkitError(
            f"unknown dataset id {dataset_id!r} ({hint}; MINARI_DATASETS_PATH decides where they live). "
            "Build one with `dtkit datasets build RECIPE` or `dtkit demo`"
        )
    try:
        ds = minari.load_dataset(dataset_id)
        obs_space, act_space = ds.observation_space, ds.action_space
        check_supported(obs_space, act_space, where=f"dataset {dataset_id!r}")
        if isinstance(act_space, gym.spaces.Discrete) and int(act_space.start) != 0:
            raise DtkitError(f"dataset {dataset_id!r}: action space {act_space} starts at {int(act_space.start)}; dtkit's "
                             "categorical head needs Discrete actions numbered from 0, so record actions as a - start")
        # Large integer keys (images, audio) are read lazily from a cache file (dtkit.data.lazy), not held here.
        lazy = lazy_obs_keys(obs_space)
        episodes = read_episodes(ds, lazy)
        meta = ds.storage.metadata
    except (OSError, KeyError, ValueError, TypeError) as exc:  # h5py raises OSError for truncated or zeroed files
        folder = _dataset_folder(dataset_id)
        raise DtkitError(f"dataset {dataset_id!r} at {folder} could not be read ({type(exc).__name__}: {exc}); "
                         "its files are damaged or incomplete: delete the folder and rebuild it with `dtkit datasets build RECIPE`") from None
    env_spec = meta.get("env_spec")
    env_id = json.loads(env_spec)["id"] if isinstance(env_spec, str) else None
    traj = Trajectories.from_episodes(
        episodes, obs_space, act_space, dataset_id=dataset_id, env_id=env_id,
        env_spec=env_spec if isinstance(env_spec, str) else None,
        ref_min_score=_maybe_float(meta.get("ref_min_score")), ref_max_score=_maybe_float(meta.get("ref_max_score")),
    )
    if lazy:
        traj.obs.update(open_obs_cache(ds, lazy, traj.episode_starts, traj.episode_lengths))
    return traj



def _dataset_folder(dataset_id: str) -> Any:
    """Where Minari keeps ``dataset_id``, resolved by Minari itself (its root and environment variable)."""
    from pathlib import Path

    from minari.storage import get_dataset_path

    return Path(get_dataset_path()) / dataset_id


def _explain_unlisted(dataset_id: str) -> None:
    """A folder Minari skips (bad or missing metadata.json) is named as such, not as an unknown id."""
    try:
        data = _dataset_folder(dataset_id) / "data"
    except Exception:  # an id Minari cannot even turn into a path: the unknown-id message fits
        return
    if not data.parent.is_dir():
        return
    meta = data / "metadata.json"
    if not meta.is_file():
        raise DtkitError(f"dataset {dataset_id!r}: {meta} is missing; the dataset folder is incomplete, "
                         "delete it and rebuild it with `dtkit datasets build RECIPE`")
    try:
        json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DtkitError(f"dataset {dataset_id!r}: {meta} is not valid JSON ({exc}); the dataset is damaged, "
                         "delete its folder and rebuild it with `dtkit datasets build RECIPE`") from None


def _maybe_float(x: Any) -> float | None:
    return None if x is None else float(x)
