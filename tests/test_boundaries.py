"""DESIGN's module boundaries, checked in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _loaded_after(stmt: str) -> set[str]:
    code = f"import sys; {stmt}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("package", ["dtkit.model", "dtkit.encoders"])
def test_model_and_encoders_are_pure_torch(package):
    loaded = _loaded_after(f"import {package}")
    assert not {"gymnasium", "minari", "stable_baselines3"} & loaded


def test_data_never_imports_the_model():
    assert not any(m.startswith("dtkit.model") for m in _loaded_after("import dtkit.data"))


def test_envs_stand_alone_and_nothing_imports_the_cli():
    loaded = _loaded_after("import dtkit.envs, dtkit.trainer, dtkit.rollout, dtkit.collect, dtkit.api")
    assert "dtkit.cli" not in loaded
    assert not any(m.startswith(("dtkit.model", "dtkit.trainer")) for m in _loaded_after("import dtkit.envs"))


def test_wheel_installs_only_dtkit(tmp_path):
    """`datasets/` and `envs/` ship inside the dtkit namespace, never as top-level packages."""
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(root), "-w", str(tmp_path)],
                   check=True, capture_output=True)
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    assert {n.split("/")[0] for n in names} == {"dtkit", "dtkit_rl-0.1.0.dist-info"}
    assert "dtkit/recipes/cartpole.toml" in names and "dtkit/envs/__init__.py" in names
    assert "dtkit/recipes/policies/cartpole/index.json" in names
