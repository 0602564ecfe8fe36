"""Lazy observations: large observation keys stay on disk and are read per batch.

A 1M-frame 84x84x4 Atari dataset is ~28 GB as stacked uint8 frames; holding
it in RAM (twice while concatenating) is what this module avoids. At the first
load, each large observation key of a Minari dataset is copied once into a flat
binary file beside the dataset (``<dataset>/obs_cache/<key>.bin``), one row
per step in the dataset's own dtype, written to a temporary folder and renamed
into place, so the cache is complete or absent. Training then reads the rows
of each window with ``os.preadv`` into the batch buffer: the pages go through
the kernel's page cache, which every process (every DDP rank) on the machine
shares, and are not counted in any process's RSS, unlike a memory map, whose
touched pages are. A window is contiguous in the file, so a batch costs B reads.

Frame stacks are stored once: when every step's stack (leading axis, as
gymnasium's ``FrameStackObservation`` makes it) equals the last frames of its
episode, with the first frame repeated before the start, only the newest frame
of each step is kept (4x smaller for Atari) and the stacks are rebuilt per
window. A dataset whose stacks do not follow that rule is cached as is.

The rule is generic per key, not image-only: any integer-typed key of at least
:data:`LAZY_MIN_BYTES` per step (uint8 images, int16 audio) is lazy. Float keys
stay in memory, where the non-finite checks and normalisation statistics run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from dtkit.errors import DtkitError

__all__ = ["LAZY_MIN_BYTES", "LazyObs", "lazy_obs_keys", "open_obs_cache", "read_episodes"]

#: Integer keys at least this large per step are read lazily (a 32x32 grey image is 1 KiB).
LAZY_MIN_BYTES = 1024
_CACHE = "obs_cache"
_FORMAT = 1


def lazy_obs_keys(observation_space: gym.Space) -> list[str]:
    """The observation keys (``"obs"`` for a plain space) that are read lazily."""
    items = observation_space.spaces.items() if isinstance(observation_space, gym.spaces.Dict) else [("obs", observation_space)]
    return [k for k, s in items if isinstance(s, gym.spaces.Box) and np.issubdtype(s.dtype, np.integer)
            and int(np.prod(s.shape)) * s.dtype.itemsize >= LAZY_MIN_BYTES]


def _stack_depth(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Frames in a candidate stack (leading axis of a 3D+ uint8 key), else 0."""
    return shape[0] if dtype == np.uint8 and len(shape) >= 3 and 2 <= shape[0] <= 16 else 0


def _is_stacked(obs: np.ndarray, depth: int) -> bool:
    """Whether ``obs`` (n, depth, ...) holds each step's last ``depth`` frames, the first repeated before the start."""
    n = len(obs)
    frames = obs[:, -1]
    for j in range(depth):
        src = np.maximum(np.arange(n) - (depth - 1) + j, 0)
        if not np.array_equal(obs[:, j], frames[src]):
            return False
    return True


def _raw_hdf5(ds: Any) -> Path | None:
    """The HDF5 file of a dataset stored raw (no JPEG), which can be read without Minari's decoding; else None.

    Minari decodes every observation of an episode into new arrays; reading the
    HDF5 datasets directly (into one reused buffer) keeps the allocator from
    growing the heap with each episode's frames (measured: +310 MiB RSS over
    2,500 episodes of 200 40x40x3 frames through ``iterate_episodes``).
    """
    meta = ds.storage.metadata
    path = Path(ds.storage.data_path) / "main_data.hdf5"
    if meta.get("data_format") != "hdf5" or meta.get("jpeg_encoding", True) or not path.is_file():
        return None
    return path


def _obs_node(group: Any, key: str, dict_obs: bool) -> Any:
    return group["observations"][key] if dict_obs else group["observations"]


def read_episodes(ds: Any, skip: list[str]) -> list[dict[str, Any]]:
    """Every episode as a dict of arrays, without the observation keys in ``skip`` (those read lazily)."""
    fields = ("actions", "rewards", "terminations", "truncations")
    dict_obs = isinstance(ds.observation_space, gym.spaces.Dict)
    path = _raw_hdf5(ds) if skip else None
    if path is None:
        return [{"observations": _drop(e.observations, skip), **{k: getattr(e, k) for k in fields}}
                for e in ds.iterate_episodes()]
    import h5py

    keep = [k for k in ds.observation_space.spaces] if dict_obs else ([] if "obs" in skip else ["obs"])
    keep = [k for k in keep if k not in skip]
    out = []
    with h5py.File(path, "r") as f:
        for i in range(ds.total_episodes):
            g = f[f"episode_{i}"]
            ep: dict[str, Any] = {k: g[k][()] for k in fields}
            if dict_obs:
                ep["observations"] = {k: g["observations"][k][()] for k in keep}
            else:
                ep["observations"] = g["observations"][()] if keep else {}
            out.append(ep)
    return out


def _drop(observations: Any, keys: list[str]) -> Any:
    if isinstance(observations, dict):
        return {k: v for k, v in observations.items() if k not in keys}
    return {} if "obs" in keys else observations


def _episode_obs(ds: Any, keys: list[str]) -> Any:
    """Yield (n_steps, {key: (n, *shape) array}) per episode; the arrays may be a reused buffer."""
    dict_obs = isinstance(ds.observation_space, gym.spaces.Dict)
    path = _raw_hdf5(ds)
    if path is None:
        for ep in ds.iterate_episodes():
            n = len(ep.rewards)
            yield n, {k: np.asarray(ep.observations[k] if dict_obs else ep.observations)[:n] for k in keys}
        return
    import h5py

    buffers: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        for i in range(ds.total_episodes):
            g = f[f"episode_{i}"]
            n = int(g["rewards"].shape[0])
            got = {}
            for k in keys:
                node = _obs_node(g, k, dict_obs)
                if k not in buffers or len(buffers[k]) < n:
                    buffers[k] = np.empty((max(n, 2 * len(buffers.get(k, ()))), *node.shape[1:]), dtype=node.dtype)
                node.read_direct(buffers[k], np.s_[0:n], np.s_[0:n])
                got[k] = buffers[k][:n]
            yield n, got


def _build(ds: Any, folder: Path, keys: list[str], unstacked: set[str]) -> None:
    """Write every key's rows (and the stack rule per key) into ``folder`` (a temporary one).

    Raises :class:`_NotStacked` when a candidate frame-stack key (not in ``unstacked``) breaks the rule.
    """
    spaces = {k: _key_box(ds.observation_space, k) for k in keys}
    depth = {k: 0 if k in unstacked else _stack_depth(tuple(spaces[k].shape), np.dtype(spaces[k].dtype)) for k in keys}
    files = {k: open(folder / f"{k}.bin", "wb") for k in keys}
    rows = 0
    try:
        for n, episode_obs in _episode_obs(ds, keys):
            for k in keys:
                obs = episode_obs[k].astype(spaces[k].dtype, copy=False)
                if depth[k] and not _is_stacked(obs, depth[k]):
                    raise _NotStacked(k)
                files[k].write(np.ascontiguousarray(obs[:, -1] if depth[k] else obs).tobytes())
            rows += n
    finally:
        for f in files.values():
            f.close()
    info = {"format": _FORMAT, "rows": rows, "keys": {
        k: {"shape": list(spaces[k].shape), "dtype": str(np.dtype(spaces[k].dtype)), "stack": depth[k]} for k in keys}}
    (folder / "index.json").write_text(json.dumps(info, indent=1))


def _key_box(space: gym.Space, key: str) -> gym.spaces.Box:
    """The Box of lazy key ``key`` (:func:`lazy_obs_keys` picks Box keys only)."""
    sub = space[key] if isinstance(space, gym.spaces.Dict) else space
    if not isinstance(sub, gym.spaces.Box):
        raise TypeError(f"observation key {key!r} is {sub}, not a Box; only Box keys are read lazily")
    return sub


class _NotStacked(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _build_atomic(ds: Any, final: Path, keys: list[str]) -> None:
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{_CACHE}-{os.getpid()}-"))
    try:
        unstacked: set[str] = set()
        while True:
            try:
                _build(ds, tmp, keys, unstacked)
                break
            except _NotStacked as e:  # stacks that are not sliding windows: keep them whole (rare; still lazy)
                unstacked.add(e.key)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is as readable as the dataset beside it
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same cache first: keep theirs
            if not (final / "index.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def open_obs_cache(ds: Any, keys: list[str], episode_starts: np.ndarray, episode_lengths: np.ndarray) -> dict[str, LazyObs]:
    """:class:`LazyObs` for ``keys`` of the Minari dataset ``ds``, building its cache on first use.

    Under ``torch.distributed`` rank 0 builds while the others wait, then all read the same files.
    """
    final = Path(ds.storage.data_path).parent / _CACHE
    rank, world = _dist()
    if rank == 0 and not (final / "index.json").is_file():
        if not os.access(final.parent, os.W_OK):
            raise DtkitError(f"dataset folder {final.parent} is not writable, so its observation cache cannot be "
                             "written; copy the dataset somewhere writable (MINARI_DATASETS_PATH)")
        _build_atomic(ds, final, keys)
    if world > 1:
        # Every rank waits, whether or not the cache existed when it looked: a rank that
        # skipped the barrier because rank 0 had just finished would leave rank 0 waiting.
        import torch.distributed as dist

        dist.barrier()
    info = json.loads((final / "index.json").read_text())
    total = int(episode_lengths.sum())
    if info.get("format") != _FORMAT or info["rows"] != total or set(keys) - set(info["keys"]):
        raise DtkitError(f"observation cache {final} does not match the dataset ({info.get('rows')} rows for "
                         f"{total} steps); delete that folder and load again to rebuild it")
    first = np.repeat(episode_starts, episode_lengths)
    return {k: LazyObs(final / f"{k}.bin", tuple(info["keys"][k]["shape"]), np.dtype(info["keys"][k]["dtype"]),
                       int(info["keys"][k]["stack"]), np.arange(total, dtype=np.int64), first) for k in keys}


def _dist() -> tuple[int, int]:
    try:
        import torch.distributed as dist
    except ImportError:
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class LazyObs:
    """The per-step observations of one key, read from its cache file on demand.

    Behaves like a read-only ``(N, *shape)`` array for what dtkit needs:
    ``len``, ``shape``, ``dtype``, ``take`` (whole episodes) and integer
    indexing (reads the rows), plus :meth:`windows`, the sampler's fast path.

    Args:
        path: the cache file, one row per step (a single frame when ``stack`` > 0).
        shape: per-step shape as the dataset stores it (the whole stack).
        stack: frames per stack rebuilt from single frames, 0 for none.
        rows: (N,) file row of each step.
        first: (N,) file row of each step's episode start (where a stack's padding repeats from).
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype, stack: int, rows: np.ndarray,
                 first: np.ndarray) -> None:
        self.path, self.step_shape, self.dtype, self.stack = Path(path), tuple(shape), np.dtype(dtype), stack
        self.rows, self.first = rows, first
        self.row_shape = self.step_shape[1:] if stack else self.step_shape
        self.row_bytes = int(np.prod(self.row_shape)) * self.dtype.itemsize
        self._fd: int | None = None
        self._pid = -1

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.step_shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None, "_pid": -1}

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked child opens its own descriptor
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)  # absent when __init__ raised before setting it
        if fd is not None and self._pid == os.getpid():
            os.close(fd)

    def take(self, idx: np.ndarray, axis: int = 0) -> LazyObs:
        """The steps ``idx`` (whole episodes, in order) as a new LazyObs on the same file; nothing is read."""
        if axis != 0:
            raise ValueError("LazyObs.take selects steps (axis 0) only")
        idx = np.asarray(idx)
        return LazyObs(self.path, self.step_shape, self.dtype, self.stack, self.rows[idx], self.first[idx])

    def __getitem__(self, idx: Any) -> np.ndarray:
        """Read steps ``idx`` (an int, slice or integer array) into memory."""
        steps = np.arange(len(self))[idx]
        flat = np.atleast_1d(steps)
        out = self.windows(flat, np.ones(len(flat), dtype=np.int64), 1)[:, 0]
        return out[0] if np.ndim(steps) == 0 else out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[np.arange(len(self))]
        return out if dtype is None else out.astype(dtype)

    def windows(self, starts: np.ndarray, n_real: np.ndarray, length: int) -> np.ndarray:
        """(B, length, *shape): steps ``starts[b] .. starts[b] + n_real[b] - 1`` of one episode each,
        then the last real step repeated (padding, hidden by the batch mask)."""
        fd = self._file()
        B = len(starts)
        out = np.empty((B, length, *self.step_shape), dtype=self.dtype)
        depth = self.stack
        for b in range(B):
            s, n = int(starts[b]), int(n_real[b])
            r0, first = int(self.rows[s]), int(self.first[s])
            if depth:
                lo = max(first, r0 - depth + 1)
                frames = self._read(fd, lo, r0 + n - lo)  # (m, *frame)
                # Stack j of step t holds frame t - (depth - 1) + j, clamped at the episode start.
                src = np.maximum(r0 + np.arange(n)[:, None] - (depth - 1) + np.arange(depth), first) - lo
                out[b, :n] = frames[src]
            else:
                out[b, :n] = self._read(fd, r0, n)
            out[b, n:] = out[b, n - 1]
        return out

    def _read(self, fd: int, row: int, count: int) -> np.ndarray:
        buf = np.empty((count, *self.row_shape), dtype=self.dtype)
        want = count * self.row_bytes
        got = os.preadv(fd, [buf.data.cast("B")], row * self.row_bytes)  # buf.data: a memoryview of the new buffer
        if got != want:
            raise DtkitError(f"observation cache {self.path} is truncated (read {got} of {want} bytes at row {row}); "
                             f"delete {self.path.parent} and load again to rebuild it")
        return buf
