"""scripts/compare_d3rlpy.py: episodes converted without d3rlpy's shift, targets, the table, a tiny dtkit-side run.

The d3rlpy side runs only where a python with d3rlpy 2.8 is known (DTKIT_D3RLPY_PYTHON, or d3rlpy importable here).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dtkit.data import load_trajectories

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "compare_d3rlpy.py"


@pytest.fixture
def compare():
    spec = importlib.util.spec_from_file_location("compare_d3rlpy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _d3rlpy_python() -> str | None:
    if os.environ.get("DTKIT_D3RLPY_PYTHON"):
        return os.environ["DTKIT_D3RLPY_PYTHON"]
    found = subprocess.run([sys.executable, "-c", "import d3rlpy"], capture_output=True, check=False).returncode == 0
    return sys.executable if found else None


def test_episodes_line_up_observation_t_with_action_t(compare, make_dataset, tmp_path):
    dataset_id = make_dataset("CartPole-v1", n_episodes=5)
    traj = load_trajectories(dataset_id)
    path = tmp_path / "episodes.npz"
    compare.write_episodes(traj, path)
    data = np.load(path)
    assert len(data["observations"]) == len(data["actions"]) == traj.num_steps  # no final observations
    np.testing.assert_array_equal(data["observations"], traj.obs["obs"])
    np.testing.assert_array_equal(data["actions"], traj.actions)
    ends = np.flatnonzero((data["terminals"] + data["timeouts"]) > 0)
    np.testing.assert_array_equal(ends, traj.episode_starts + traj.episode_lengths - 1)  # every episode end, nothing else
    assert not (data["terminals"] * data["timeouts"]).any()


def test_three_targets(compare):
    t = compare.targets_for(np.array([10.0, 20.0, 30.0, 40.0, 100.0]))
    assert t["best"] == 100.0 and t["mean"] == 40.0 and t["low"] < t["mean"] < t["best"]


def test_table_says_who_is_ahead_and_whether_returns_rise(compare):
    targets = {"best": 100.0, "mean": 50.0, "low": 10.0}

    def run(returns, seed):
        return {"seed": seed, "wall_s": 1.0, "per_target": [
            {"target_return": t, "episode_returns": [r], "episode_lengths": [int(r)], "action_at_bounds_fraction": 0.25}
            for t, r in zip(targets.values(), returns)]}

    runs = {"dtkit": [run((90, 45, 12), 0), run((80, 40, 8), 1)], "d3rlpy": [run((50, 50, 50), 0), run((40, 40, 40), 1)]}
    row = compare.dataset_row("x/y-v0", runs, targets, (0.0, 100.0))
    assert row["dtkit"]["per_target"]["best"]["normalized"]["mean"] == pytest.approx(85.0)
    assert row["dtkit"]["rises_with_target"] is True and row["d3rlpy"]["rises_with_target"] is False
    text = compare.tables([{**row, "steps": 10}], 10, 1)
    assert "| x/y-v0 | 2 | 85.0 ± 5.0 | 45.0 ± 5.0 | yes |" in text
    assert "0.250 ± 0.000" in text
    assert "| x/y-v0 | dtkit | 0: 90.0, 1: 80.0 |" in text  # each run's return at the best target
    # one side run alone (--only d3rlpy) still gives a table
    alone = compare.dataset_row("x/y-v0", {"d3rlpy": runs["d3rlpy"]}, targets, (0.0, 100.0))
    assert "| x/y-v0 | 2 | not run | 45.0 ± 5.0 | n/a |" in compare.tables([{**alone, "steps": 10}], 10, 1)


def test_tiny_dtkit_side_and_resume(compare, make_dataset, tmp_path, capsys):
    dataset_id = make_dataset("CartPole-v1", n_episodes=6)
    out = tmp_path / "out"
    args = ["--tiny", "--dataset", dataset_id, "--steps", "4", "--seeds", "0", "--eval-episodes", "2", "--only", "dtkit",
            "--out", str(out)]
    assert compare.main(args) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["dataset"] for r in rows] == [dataset_id] and "d3rlpy" not in rows[0]
    assert set(rows[0]["dtkit"]["per_target"]) == {"best", "mean", "low"}
    assert "| dtkit |" in (out / "results.md").read_text()
    result = out / "runs" / dataset_id.replace("/", "_") / "steps4" / "dtkit-seed0" / "result.json"
    before = result.stat().st_mtime_ns
    assert compare.main(args) == 0  # finished runs are skipped
    assert result.stat().st_mtime_ns == before
    checkpoint = (result.parent / "checkpoints" / "latest").read_text()
    args[args.index("--eval-episodes") + 1] = "3"
    assert compare.main(args) == 0  # more episodes: re-evaluated from the checkpoint, not retrained
    assert (result.parent / "checkpoints" / "latest").read_text() == checkpoint
    assert all(len(t["episode_returns"]) == 3 for t in json.loads(result.read_text())["per_target"])


@pytest.mark.skipif(_d3rlpy_python() is None, reason="no python with d3rlpy 2.8 (set DTKIT_D3RLPY_PYTHON)")
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_tiny_comparison_with_d3rlpy(compare, make_dataset, tmp_path, env_id):
    dataset_id = make_dataset(env_id, n_episodes=4)
    out = tmp_path / "out"
    assert compare.main(["--tiny", "--dataset", dataset_id, "--steps", "4", "--seeds", "0", "--eval-episodes", "1",
                         "--d3rlpy-python", _d3rlpy_python(), "--out", str(out)]) == 0
    row = json.loads((out / "results.json").read_text())["rows"][0]
    assert row["d3rlpy"]["per_target"]["best"]["return"]["n"] == 1
    bounds = row["d3rlpy"]["per_target"]["best"]["action_at_bounds_fraction"]["mean"]
    assert (bounds is None) == (env_id == "CartPole-v1")
    model = next(out.rglob("d3rlpy-seed0")) / "model.d3"
    before = model.stat().st_mtime_ns
    assert compare.main(["--tiny", "--dataset", dataset_id, "--steps", "4", "--seeds", "0", "--eval-episodes", "2",
                         "--d3rlpy-python", _d3rlpy_python(), "--out", str(out)]) == 0
    assert model.stat().st_mtime_ns == before  # re-evaluated from the saved model, not retrained
    assert all(len(t["episode_returns"]) == 2 for t in json.loads((model.parent / "result.json").read_text())["per_target"])
