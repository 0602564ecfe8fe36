"""Making envs: an unknown id is one clear error; MuJoCo's deprecation notice stays out of the terminal."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from dtkit.errors import DtkitError
from dtkit.gym_env import make_env


def test_unknown_env_id_names_it():
    with pytest.raises(DtkitError, match="'NoSuchEnv-v0' is not registered"):
        make_env("NoSuchEnv-v0")


def test_halfcheetah_makes_quietly_and_leaves_no_mujoco_log(tmp_path):
    pytest.importorskip("mujoco")
    code = ("import warnings; warnings.simplefilter('error'); from dtkit.gym_env import make_env; "
            "[make_env('HalfCheetah-v5').reset(seed=0) for _ in range(3)]; print('made')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "made"
    assert "settotalmass" not in proc.stderr
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_other_mujoco_warnings_reach_python_warnings():
    mujoco = pytest.importorskip("mujoco")
    make_env("HalfCheetah-v5").close()  # installs dtkit's handler
    handler = mujoco.get_mju_user_warning()
    assert handler is not None
    with pytest.warns(RuntimeWarning, match="MuJoCo: something else"):
        handler("something else")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        handler("compiler attribute 'x' is deprecated")
    assert caught == []
