"""The ``medium-replay`` tier: what an off-policy agent collected while it trained.

D4RL's medium-replay (Fu et al., 2020) is "all samples in the replay buffer
observed during training until the policy reaches the medium level of
performance". The replay buffer of a finished run holds only its last
``buffer_size`` transitions, and a zoo-sized buffer of a 1M-step run would be
~250 MB as a pickle, so it cannot be regenerated from the final model or kept
whole. Instead, while training, each checkpoint's chunk of new transitions is
saved as ``replay-<steps>.npz`` beside ``step-<steps>.zip``; the tier is the
concatenation of the chunks up to the medium checkpoint, split into episodes.

What a chunk holds (P buffer rows, E envs; SB3's buffer is row-major over envs):

- ``obs`` (P, E, *obs): the observation each action was taken in;
- ``actions`` (P, E, *act): the action the env received (SB3 stores SAC's
  actions rescaled to [-1, 1]; they are mapped back, exactly as SB3 does);
- ``rewards`` (P, E) float32 (SB3's buffer dtype), ``terminated``/``truncated`` (P, E);
- ``end_obs`` (K, *obs) with ``end_at`` (K, 2) = (row, env): the final
  observation of each episode that ended inside the chunk;
- ``last_next_obs`` (E, *obs): the observation after each env's last row.

Only the observation after an episode's end (or the chunk's end) is stored
separately, since inside an episode ``next_obs[t] == obs[t + 1]``: half the size
of storing both. An episode still running when the chunk ends continues in the
next chunk when that chunk starts from ``last_next_obs``; when it does not (a
resumed run resets its envs), or at the medium checkpoint, the episode is cut
there and marked truncated, which is what happened to the data.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from dtkit.collect.episodes import Episode
from dtkit.errors import DtkitError
from dtkit.io import atomic_file

__all__ = ["replay_chunks", "replay_episodes", "replay_file", "save_replay_chunk"]

_CHUNK = re.compile(r"replay-(\d{9})\.npz")


def replay_file(steps: int) -> str:
    """The chunk file of the transitions that ended at ``steps`` environment steps."""
    return f"replay-{steps:09d}.npz"


def replay_chunks(policy_dir: str | Path) -> dict[int, Path]:
    """Chunk files in ``policy_dir`` by the step count they end at."""
    out = {}
    for p in Path(policy_dir).glob("replay-*.npz"):
        if m := _CHUNK.fullmatch(p.name):
            out[int(m.group(1))] = p
    return dict(sorted(out.items()))


def save_replay_chunk(model: Any, start_pos: int, rows: int, path: str | Path) -> None:
    """Save the ``rows`` buffer rows written since ``start_pos`` (atomically).

    Call it right after ``model.learn``; ``rows`` is the number of new
    transitions per env, which must fit in the (ring) buffer.
    """
    from gymnasium import spaces

    rb = model.replay_buffer
    if rows > rb.buffer_size:
        raise DtkitError(
            f"medium-replay: a checkpoint chunk of {rows} steps per env does not fit the replay buffer "
            f"({rb.buffer_size}); lower train.checkpoint_every or raise train.hyperparams.buffer_size"
        )
    if getattr(rb, "optimize_memory_usage", False) or not isinstance(rb.observations, np.ndarray):
        raise DtkitError("medium-replay needs SB3's plain ReplayBuffer (Box/Discrete observations, "
                         "optimize_memory_usage=False)")
    if not getattr(rb, "handle_timeout_termination", True):
        raise DtkitError("medium-replay needs replay_buffer_kwargs.handle_timeout_termination=true "
                         "to tell time-limit truncations from terminations")
    idx = (start_pos + np.arange(rows)) % rb.buffer_size
    obs, next_obs = rb.observations[idx], rb.next_observations[idx]
    actions = rb.actions[idx]
    space = model.action_space
    if isinstance(space, spaces.Box):  # SB3 stores Box actions rescaled to [-1, 1] (its _sample_action)
        actions = np.clip(model.policy.unscale_action(actions), space.low, space.high)
    actions = actions.reshape(rows, rb.n_envs, *space.shape).astype(space.dtype)
    dones, timeouts = rb.dones[idx].astype(bool), rb.timeouts[idx].astype(bool)
    end_at = np.argwhere(dones)  # (K, 2): row, env
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(
            f, obs=obs, actions=actions, rewards=rb.rewards[idx],
            terminated=dones & ~timeouts, truncated=timeouts,
            end_obs=next_obs[end_at[:, 0], end_at[:, 1]], end_at=end_at, last_next_obs=next_obs[-1],
        )


def replay_episodes(policy_dir: str | Path, upto: int) -> list[Episode]:
    """Every transition collected up to ``upto`` steps, as episodes ordered by when they ended.

    Episodes carry ``seed=None``: training resets are not seeded one by one.

    Example:
        >>> eps = replay_episodes("datasets/policies/hopper", 300_000)  # doctest: +SKIP
    """
    chunks = [(s, p) for s, p in replay_chunks(policy_dir).items() if s <= upto]
    data = [dict(np.load(p)) for _, p in chunks]
    held = sum(d["rewards"].size for d in data)
    if not chunks or chunks[-1][0] != upto or held != upto:
        raise DtkitError(
            f"medium-replay needs the replay chunks up to step {upto} in {policy_dir}, but they hold {held} "
            "steps: those policies were trained without recording them (or the files were deleted). "
            "Retrain with a medium-replay tier in the recipe (delete the folder, or use another policy dir)"
        )
    found: list[tuple[int, int, Episode]] = []
    n_envs = data[0]["rewards"].shape[1]
    for e in range(n_envs):
        pieces: list[tuple[np.ndarray, ...]] = []
        row0 = 0
        for c, d in enumerate(data):
            term, trunc = d["terminated"][:, e], d["truncated"][:, e]
            ends = {int(r): k for k, (r, col) in enumerate(d["end_at"]) if col == e}
            start = 0
            for t in np.flatnonzero(term | trunc).tolist():
                pieces.append(_rows(d, e, start, t + 1))
                found.append((row0 + t, e, _episode(pieces, d["end_obs"][ends[t]], cut=False)))
                pieces, start = [], t + 1
            rows = len(term)
            if start < rows:
                pieces.append(_rows(d, e, start, rows))
                after = d["last_next_obs"][e]
                follows = c + 1 < len(data) and np.array_equal(data[c + 1]["obs"][0, e], after)
                if not follows:
                    found.append((row0 + rows - 1, e, _episode(pieces, after, cut=True)))
                    pieces = []
            row0 += rows
    return [ep for _, _, ep in sorted(found, key=lambda x: (x[0], x[1]))]


def _rows(d: dict[str, np.ndarray], e: int, a: int, b: int) -> tuple[np.ndarray, ...]:
    return (d["obs"][a:b, e], d["actions"][a:b, e], d["rewards"][a:b, e], d["terminated"][a:b, e], d["truncated"][a:b, e])


def _episode(pieces: list[tuple[np.ndarray, ...]], final_obs: np.ndarray, *, cut: bool) -> Episode:
    obs, act, rew, term, trunc = (np.concatenate(x) for x in zip(*pieces))
    trunc = trunc.copy()
    if cut:
        trunc[-1] = True
    return Episode(
        seed=None, observations=np.concatenate([obs, final_obs[None]]), actions=act,
        rewards=rew.astype(np.float64), terminations=term, truncations=trunc,
    )
