"""dtkit.io: atomic writes leave either the whole result or nothing, with normal permissions."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from dtkit.errors import DtkitError
from dtkit.io import atomic_dir, atomic_file, atomic_write_json, remove_stale_staging, writable_dir_error


def test_atomic_file_appears_only_on_success(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash while writing")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_file(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]


def test_atomic_writes_get_the_umask_mode_not_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        with atomic_dir(tmp_path / "folder") as staging:
            (staging / "f").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755


def test_full_disk_is_named_and_the_staging_folder_removed(tmp_path):
    with pytest.raises(DtkitError, match=r"no space left on device while writing .*step_1 \(ENOSPC\)"):
        with atomic_dir(tmp_path / "step_1") as staging:
            (staging / "part").write_bytes(b"x")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_write_under_a_file_is_named(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DtkitError, match="afile exists but is not a folder"):
        with atomic_file(tmp_path / "afile" / "out.json") as tmp:
            tmp.write_text("{}")
    assert writable_dir_error(tmp_path / "afile" / "run") == f"{tmp_path / 'afile'} is a file, not a folder"
    assert writable_dir_error(tmp_path / "new" / "run") is None


def test_stale_staging_is_removed(tmp_path):
    (tmp_path / ".step_00000008.abc.tmp").mkdir()
    (tmp_path / ".latest.xyz.tmp").write_text("step_00000008")
    (tmp_path / "step_00000004").mkdir()
    removed = remove_stale_staging(tmp_path)
    assert len(removed) == 2 and [p.name for p in tmp_path.iterdir()] == ["step_00000004"]
