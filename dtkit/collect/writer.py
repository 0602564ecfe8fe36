"""Write episodes into a local Minari dataset atomically: complete or absent.

Minari writes straight into ``$MINARI_DATASETS_PATH/<dataset_id>/``, so a crash
half-way would leave a dataset that lists but does not load. We point Minari at
a hidden staging root inside the real one (same filesystem, and Minari skips
hidden folders when listing), build there, then ``os.rename`` the finished
folder into place. ``minari.DataCollector`` is not used: it imports jax (~500 MB);
``EpisodeBuffer`` built from numpy arrays needs nothing beyond h5py.

Episodes are streamed: :class:`DatasetStream` appends them to the staged
dataset a few at a time as they are produced, so a build never holds a tier in
memory. Images are stored losslessly (Minari's ``jpeg_encoding=False``, new in
minari 0.5.4; Minari's default JPEG is lossy and crashes on 4-channel frame
stacks); JPEG only when a recipe asks for it (``jpeg = true``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dtkit.collect.record import Episode
from dtkit.errors import DtkitError
from dtkit.io import atomic_write_json

__all__ = ["DatasetStream", "dataset_build_info", "datasets_root"]

_ENV = "MINARI_DATASETS_PATH"
_NS_FILE = "namespace_metadata.json"


def datasets_root() -> Path:
    """The real Minari root, as Minari itself resolves it."""
    from minari.storage import get_dataset_path

    return Path(get_dataset_path()).resolve()


def dataset_build_info(dataset_id: str) -> dict[str, Any] | None:
    """The ``dtkit`` block of an existing dataset's metadata; ``{}`` if it has none; None if absent.

    Reads ``metadata.json`` directly: importing minari costs more than the check.
    """
    meta = datasets_root() / dataset_id / "data" / "metadata.json"
    if not meta.is_file():
        return None
    return json.loads(meta.read_text()).get("dtkit", {})


@contextmanager
def _minari_root(path: Path) -> Iterator[None]:
    old = os.environ.get(_ENV)
    os.environ[_ENV] = str(path)
    try:
        yield
    finally:  # restore even on error: later minari calls must see the real root
        if old is None:
            del os.environ[_ENV]
        else:
            os.environ[_ENV] = old


def _clean_stale_staging(root: Path) -> None:
    """Remove staging folders left by killed builds (their pid is gone)."""
    for d in root.glob(".staging-*"):
        try:
            pid = int(d.name.split("-")[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue


class DatasetStream:
    """A Minari dataset written episode by episode into staging, published whole by :meth:`finish`.

    Leaving the ``with`` block without ``finish`` (an error, Ctrl-C) removes the
    staged data, so the dataset stays absent (or as it was).

    Example:
        >>> with DatasetStream("me/task/mixed-v0", env_id="CartPole-v1", algorithm_name="x",
        ...                    description="d", code_permalink="c") as out:  # doctest: +SKIP
        ...     for ep in episodes: out.add(ep, "expert")
        ...     out.finish(ref_min_score=None, ref_max_score=None, ref_episodes=0, build_info={})
    """

    #: Episodes are appended once this many steps are buffered: few HDF5 opens, little memory.
    FLUSH_STEPS = 2_000

    def __init__(self, dataset_id: str, *, env_id: str | None, algorithm_name: str, description: str, code_permalink: str,
                 force: bool = False, jpeg: bool = False, observation_space: Any = None, action_space: Any = None) -> None:
        """``env_id`` None (data from no registered env, e.g. synthetic) needs both spaces."""
        from minari.dataset.minari_dataset import parse_dataset_id

        try:
            self.namespace = parse_dataset_id(dataset_id)[0]
        except ValueError as e:
            raise DtkitError(f"dataset id {dataset_id!r} is malformed; use NAMESPACE/NAME-vN, e.g. me/cartpole/mixed-v0") from e
        self.dataset_id, self.force = dataset_id, force
        self.root = datasets_root()
        final = self.root / dataset_id
        if final.exists() and not force:
            raise DtkitError(f"dataset {dataset_id!r} already exists at {final}; pass force (--force) or delete it")
        self._create = {"env": env_id, "eval_env": env_id, "algorithm_name": algorithm_name, "author": "dtkit",
                        "code_permalink": code_permalink, "description": description, "jpeg_encoding": jpeg,
                        "observation_space": observation_space, "action_space": action_space}
        self.tags: list[dict[str, Any]] = []
        self._pending: list[Any] = []
        self._pending_steps = 0
        self._storage: Any = None
        self._staging: Path | None = None

    def __enter__(self) -> DatasetStream:
        import minari

        _clean_stale_staging(self.root)
        self._staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f".staging-{os.getpid()}-"))
        try:
            with _minari_root(self._staging), warnings.catch_warnings():
                # We have no author e-mail to give; every other field minari asks for is set.
                warnings.filterwarnings("ignore", message=".*author_email.*")
                if self._create["env"] is None:  # synthetic data: no env to record, which minari warns about
                    warnings.filterwarnings("ignore", message=".*(eval_env|env_spec)`? is.*None.*")
                ds = minari.create_dataset_from_buffers(self.dataset_id, [], data_format="hdf5", **self._create)
        except BaseException:  # __exit__ does not run when __enter__ fails
            shutil.rmtree(self._staging, ignore_errors=True)
            raise
        self._storage = ds.storage
        return self

    def __exit__(self, *exc: object) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)

    def add(self, episode: Episode, tier: str) -> None:
        """Append one finished episode (tagged with its ``tier``); written once enough steps are buffered."""
        from minari.data_collector.episode_buffer import EpisodeBuffer

        self._pending.append(EpisodeBuffer(
            id=len(self.tags), seed=episode.seed, observations=episode.observations, actions=episode.actions,
            rewards=episode.rewards, terminations=episode.terminations, truncations=episode.truncations, infos={},
        ))
        self.tags.append({"tier": tier})
        self._pending_steps += len(episode)
        if self._pending_steps >= self.FLUSH_STEPS:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._storage.update_episodes(self._pending)
        self._pending, self._pending_steps = [], 0

    def finish(self, *, ref_min_score: float | None, ref_max_score: float | None, ref_episodes: int,
               build_info: dict[str, Any], extra_files: Callable[[Path], dict[str, str]] | None = None) -> None:
        """Write the metadata and ``extra_files``, then publish the dataset in one rename."""
        self._flush()
        if not self.tags:
            raise DtkitError(f"dataset {self.dataset_id!r} would hold no episodes; give the tiers episodes")
        meta: dict[str, Any] = {"dtkit": build_info}
        if ref_min_score is not None and ref_max_score is not None:
            meta |= {"ref_min_score": ref_min_score, "ref_max_score": ref_max_score,
                     "num_episodes_average_score": ref_episodes}
        self._storage.update_metadata(meta)
        self._storage.update_episode_metadata(self.tags)
        assert self._staging is not None
        if extra_files is not None:
            folder = self._staging / self.dataset_id
            for name, text in extra_files(folder).items():
                (folder / name).write_text(text)
        _publish(self._staging, self.root, self.dataset_id, self.namespace, self.force)


def _publish(staging: Path, root: Path, dataset_id: str, namespace: str | None, force: bool) -> None:
    """Move the staged dataset into the real root; namespace metadata first, dataset last."""
    if namespace is not None:
        parts = namespace.split("/")
        for k in range(1, len(parts) + 1):
            ns = "/".join(parts[:k])
            target = root / ns / _NS_FILE
            if not target.is_file():
                src = staging / ns / _NS_FILE
                atomic_write_json(target, json.loads(src.read_text()) if src.is_file() else {})
    final = root / dataset_id
    final.parent.mkdir(parents=True, exist_ok=True)
    trash = None
    if final.exists():
        if not force:  # someone else finished the same build meanwhile
            raise DtkitError(f"dataset {dataset_id!r} appeared at {final} during the build; pass force or delete it")
        # Move the old one aside (one rename) rather than deleting it before the new one is in place.
        trash = Path(tempfile.mkdtemp(dir=root, prefix=f".staging-{os.getpid()}-old-"))
        os.rename(final, trash / "old")
    os.rename(staging / dataset_id, final)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
