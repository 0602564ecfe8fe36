"""scripts/reproduce_mujoco.py end to end on tiny datasets: table, JSON, last vs best, resumability."""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "reproduce_mujoco.py"


@pytest.fixture
def reproduce(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # tiny policies never land in the real cache
    spec = importlib.util.spec_from_file_location("reproduce_mujoco", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_reproduction_writes_the_table(reproduce, tmp_path, capsys):
    out = tmp_path / "results"
    args = ["--tiny", "--recipes", "hopper", "--seeds", "0", "--steps", "6", "--eval-every", "3", "--eval-episodes", "1",
            "--jobs", "1", "--out", str(out)]
    assert reproduce.main(args) == 0
    results = json.loads((out / "results.json").read_text())
    rows = {(r["dataset"], r["algo"]): r for r in results["rows"]}
    assert set(rows) == {(d, a) for d in ("medium", "medium-replay", "medium-expert") for a in ("dt", "bc")}
    for r in rows.values():
        run = r["runs"][0]
        assert run["evaluations"] == 2 and run["last"] is not None
        assert run["best"] >= run["last"]  # best is the max over every evaluation, the final one included
    table = (out / "results.md").read_text()
    assert "| hopper-medium-expert |" in table and "not D4RL" in table
    # returns beside the scores, and the dataset's own mean return as the bar DT should clear
    from dtkit.data import load_trajectories

    medium = rows[("medium", "dt")]
    assert medium["last_return"]["mean"] == medium["runs"][0]["last_return"]
    assert medium["data_return"] == pytest.approx(float(load_trajectories(medium["dataset_id"]).episode_returns.mean()))
    assert "data's mean return" in table and f"{medium['data_return']:.1f} |" in table
    # finished runs are skipped: a second call trains nothing and gives the same table
    mtime = (out / "runs" / "hopper" / "medium" / "dt-seed0" / "eval.json").stat().st_mtime
    assert reproduce.main(args) == 0
    assert (out / "runs" / "hopper" / "medium" / "dt-seed0" / "eval.json").stat().st_mtime == mtime
    assert (out / "results.md").read_text() == table
    # --datasets picks the datasets; the finished runs are reused and the rows of earlier calls are kept
    assert reproduce.main([*args, "--datasets", "medium-expert"]) == 0
    assert (out / "results.md").read_text() == table
    # other training settings in the same --out are refused before anything trains
    steps = args.index("--steps") + 1
    ckpts = sorted((out / "runs" / "hopper" / "medium" / "dt-seed0" / "checkpoints").iterdir())
    assert reproduce.main([*args[:steps], "7", *args[steps + 1:]]) == 2
    assert "holds results made with other settings (steps, train.steps differ)" in capsys.readouterr().err
    assert (out / "results.md").read_text() == table
    assert sorted((out / "runs" / "hopper" / "medium" / "dt-seed0" / "checkpoints").iterdir()) == ckpts


def test_bc_runs_have_no_return_token(reproduce, tmp_path):
    """Also the --jobs path: each run in its own child process, two at a time."""
    out = tmp_path / "r"
    assert reproduce.main(["--tiny", "--recipes", "hopper", "--seeds", "0", "--steps", "2", "--eval-every", "2",
                           "--eval-episodes", "1", "--jobs", "2", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert all(run["wall_s"] > 0 and run["threads"] == threads for r in results["rows"] for run in r["runs"])
    meta = json.loads(next((out / "runs" / "hopper" / "medium" / "bc-seed0" / "checkpoints").glob("step_*/meta.json")).read_text())
    assert meta["spec"]["layout"] == ["obs", "action"]


def test_a_failed_run_stops_the_queue_at_once(reproduce, monkeypatch):
    """With --jobs, a failing run is raised when it fails; queued runs never start."""
    from dtkit.errors import DtkitError

    started = []

    def fake_child(cfg, threads, child_args):
        started.append(cfg)
        if cfg == "bad":
            raise DtkitError("run bad failed")
        time.sleep(0.3)
        return {"last": 1.0, "best": 1.0}

    monkeypatch.setattr(reproduce, "_run_in_child", fake_child)
    configs = {("hopper", "medium", "dt", seed): "bad" if seed == 0 else f"ok{seed}" for seed in range(8)}
    with pytest.raises(DtkitError, match="run bad failed"):
        reproduce._run_all(configs, 2, 1, [])
    assert "bad" in started and len(started) <= 3  # bad, the run beside it, at most one picked up meanwhile


@pytest.mark.parametrize("where", ["script", "trainer"])
def test_ctrl_c_says_how_to_resume(reproduce, monkeypatch, tmp_path, capsys, where):
    from dtkit.errors import TrainingInterrupted

    def interrupted(*args, **kwargs):
        if where == "trainer":  # the trainer checkpointed and raised its own error
            raise TrainingInterrupted("interrupted at step 3; continue with --resume", "runs/x/step_00000003")
        raise KeyboardInterrupt

    monkeypatch.setattr(reproduce, "_run_all", interrupted)
    assert reproduce.main(["--tiny", "--recipes", "hopper", "--datasets", "medium", "--seeds", "0",
                           "--out", str(tmp_path / "r")]) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    assert not (tmp_path / "r" / "results.json").exists()
