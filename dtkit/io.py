"""Atomic writes: a file or folder is either complete or absent."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["STAGING_GLOB", "atomic_dir", "atomic_file", "atomic_write_json", "atomic_write_text", "remove_stale_staging",
           "writable_dir_error"]

STAGING_GLOB = ".*.tmp"
"""What a write killed half-way leaves beside its target (see :func:`remove_stale_staging`)."""


def _os_error(path: Path, exc: OSError) -> Exception:
    """A :class:`DtkitError` for the OS errors a user can fix (full disk, permissions); others pass through."""
    from dtkit.errors import DtkitError

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DtkitError(f"no space left on device while writing {path} (ENOSPC); free some space or write elsewhere")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return DtkitError(f"cannot write {path}: {exc.strerror}; choose a folder you can write to")
    if exc.errno in (errno.ENOTDIR, errno.EEXIST) and not path.parent.is_dir():
        return DtkitError(f"cannot write {path}: {path.parent} exists but is not a folder; choose another path")
    return exc


def writable_dir_error(path: str | os.PathLike) -> str | None:
    """Why files could not be created under ``path`` (a file in the way, no write permission), or None."""
    p = Path(path)
    while not p.exists():
        if p.parent == p:
            return None
        p = p.parent
    if not p.is_dir():
        return f"{p} is a file, not a folder"
    if not os.access(p, os.W_OK | os.X_OK):
        return f"{p} is not writable"
    return None


def remove_stale_staging(folder: str | os.PathLike) -> list[Path]:
    """Delete staging files and folders a killed write left in ``folder``; returns what was removed.

    Only call this where no other process is writing (e.g. rank 0 before training starts).
    """
    removed = []
    for p in Path(folder).glob(STAGING_GLOB):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only on success.

    Example:
        >>> with atomic_file("out.bin") as tmp:  # doctest: +SKIP
        ...     tmp.write_bytes(b"...")
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _os_error(path, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes it owner-only; give it a normal file's mode
        os.replace(tmp_path, path)
    except OSError as exc:
        raise _os_error(path, exc) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden staging folder; rename it to ``path`` only on success.

    ``path`` must not exist yet: a complete folder is never replaced half-way.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    except OSError as exc:
        raise _os_error(path, exc) from None
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it owner-only
        os.rename(staging, path)
    except OSError as exc:
        raise _os_error(path, exc) from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask
