"""Training defaults: the schedule scales with --steps, and --preset paper is the paper's schedule."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace

import pytest

from dtkit.cli import main
from dtkit.model import ModelConfig
from dtkit.trainer import TrainConfig, train
from dtkit.trainer.config import PRESETS, Preset
from dtkit.trainer.loop import lr_factor


@pytest.mark.parametrize("steps", [100, 2_000, 3_000, 100_000])
def test_budget_warmup_is_a_tenth_of_the_steps(steps):
    cfg = TrainConfig(steps=steps).resolved()
    assert cfg.warmup_steps == round(0.1 * steps)
    assert cfg.lr == PRESETS["budget"].lr and cfg.lr_schedule == "cosine" and cfg.return_scale is None


@pytest.mark.parametrize("steps", [1_000, 2_000, 30_000])
def test_budget_schedule_has_the_same_shape_at_every_budget(steps):
    cfg = TrainConfig(steps=steps)
    factors = [lr_factor(cfg, round(f * steps)) for f in (0.0, 0.05, 0.1, 0.55, 1.0)]
    assert factors[0] == pytest.approx(1 / (0.1 * steps))  # warm-up starts near zero
    assert factors[1] == pytest.approx(0.5, abs=0.015)  # halfway through the warm-up
    assert factors[2] == pytest.approx(1.0)  # peak at the end of the warm-up
    assert factors[3] == pytest.approx(0.55, abs=0.01)  # cosine midpoint between 1 and 0.1
    assert factors[4] == pytest.approx(0.1)  # decayed to 10% at the last step
    # never rises after the peak
    after = [lr_factor(cfg, s) for s in range(round(0.1 * steps), steps + 1, max(1, steps // 50))]
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(after))


def test_paper_preset_is_the_papers_schedule():
    cfg = TrainConfig(preset="paper").resolved()
    assert (cfg.steps, cfg.lr, cfg.warmup_steps, cfg.lr_schedule, cfg.return_scale) == (100_000, 1e-4, 10_000, "constant", 1000.0)
    assert lr_factor(cfg, 4_999) == pytest.approx(0.5)
    assert lr_factor(cfg, 10_000) == lr_factor(cfg, 99_999) == 1.0


@pytest.mark.parametrize("preset", ["budget", "paper"])
def test_explicit_settings_win_over_the_preset(preset):
    cfg = TrainConfig(preset=preset, steps=500, lr=3e-4, warmup_steps=7, lr_schedule="constant", return_scale=50.0).resolved()
    assert (cfg.steps, cfg.lr, cfg.warmup_steps, cfg.lr_schedule, cfg.return_scale) == (500, 3e-4, 7, "constant", 50.0)


def test_resolving_twice_changes_nothing():
    once = TrainConfig(steps=1234, preset="budget").resolved()
    assert once.resolved() == once
    assert math.isclose(lr_factor(once, 600), lr_factor(TrainConfig(steps=1234), 600))


def test_help_says_how_to_choose(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--preset" in text and "paper" in text and "10% of" in text


def test_run_saves_the_resolved_config_and_cli_takes_the_preset(make_dataset, tmp_path):
    dataset_id = make_dataset("CartPole-v1", n_episodes=6)
    run = tmp_path / "run"
    assert main(["train", "--dataset", dataset_id, "--steps", "20", "--run-dir", str(run), "--preset", "paper",
                 "--batch-size", "8", "--context-len", "4", "--eval-episodes", "1", "--eval-envs", "1",
                 "--model.d-model", "16", "--model.n-layer", "1", "--no-progress"]) == 0
    meta = json.loads((run / "checkpoints" / "step_00000020" / "meta.json").read_text())
    assert meta["config"]["preset"] == "paper" and meta["config"]["windows"] == "start"  # the original DT's windows
    assert (meta["config"]["lr"], meta["config"]["warmup_steps"], meta["config"]["lr_schedule"]) == (1e-4, 10_000, "constant")
    assert meta["spec"]["return_scale"] == 1000.0


def test_budget_run_scales_returns_by_the_best_episode(make_dataset, tmp_path):
    dataset_id = make_dataset("CartPole-v1", n_episodes=6)
    cfg = TrainConfig(dataset=dataset_id, steps=10, batch_size=8, context_len=4, eval_episodes=1, eval_envs=1,
                      run_dir=str(tmp_path / "run"), model=ModelConfig(d_model=16, n_layer=1, n_head=1))
    result = train(replace(cfg, progress=False), progress=False)
    meta = json.loads((result.checkpoint / "meta.json").read_text())
    assert meta["config"]["warmup_steps"] == 1 and meta["config"]["lr"] == 6e-4
    assert meta["spec"]["return_scale"] == max(meta["target_returns"])  # default target: the best episode return


def test_windows_default_to_cover_and_configs_saved_before_the_choice_read_as_start():
    assert TrainConfig().windows is None and TrainConfig().resolved().windows == "cover"
    assert TrainConfig(preset="paper").resolved().windows == "start"
    assert TrainConfig(preset="paper", windows="cover").resolved().windows == "cover"  # a flag wins over the preset
    saved_before_the_choice = {k: v for k, v in TrainConfig().to_dict().items() if k != "windows"}
    assert TrainConfig.from_dict(saved_before_the_choice).windows == "start"
    assert TrainConfig.from_dict(TrainConfig(windows="end").to_dict()).windows == "end"


def test_windows_choices_are_the_samplers():
    # The CLI's choices come from the Literal; the sampler validates against WINDOWS. They must not drift apart.
    from typing import get_args, get_type_hints

    from dtkit.data.sampler import WINDOWS

    choices, unset = get_args(get_type_hints(TrainConfig)["windows"])  # Literal[...] | None
    assert get_args(choices) == WINDOWS and unset is type(None)
    assert get_args(get_type_hints(Preset)["windows"]) == WINDOWS
