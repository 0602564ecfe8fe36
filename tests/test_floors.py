"""The dependency floors in pyproject.toml hold: scripts/check_floors.sh installs each at its oldest allowed
version in a fresh venv and runs the train -> eval path there (minutes, and it downloads packages: slow)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_declared_floors_install_and_run(tmp_path):
    proc = subprocess.run(["bash", str(REPO / "scripts" / "check_floors.sh"), str(tmp_path / "venv")],
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0 and "check_floors: OK" in proc.stdout, (proc.stdout[-3000:], proc.stderr[-3000:])
