"""`dtkit demo` end to end: the acceptance figures (about 4-5 minutes on 2 cores: marked slow)."""

from __future__ import annotations

import json

import pytest

from dtkit.api import DemoConfig, run_demo


@pytest.mark.slow
def test_demo_meets_its_acceptance_figures(tmp_path, capsys):
    run = tmp_path / "demo"
    summary = run_demo(DemoConfig(run_dir=str(run), progress=False))
    out = capsys.readouterr().out
    assert "mean return" in out and str(run) in out
    assert summary["dataset_mean_return"] <= 250
    assert summary["dataset_full_length_episodes"] > 0
    assert summary["dt_mean_return"] >= 475
    assert (run / "checkpoints" / "latest").is_file() and any((run / "tb").iterdir())
    report = json.loads((run / "eval.json").read_text())
    assert report["target_returns"] == [500.0] and report["mean_return"] == summary["dt_mean_return"]
