"""Training guards: a NaN loss stops the run without a non-finite checkpoint; settings are named by flag."""

from __future__ import annotations

import math

import pytest
import torch

import dtkit.trainer.loop as loop
from dtkit.cli import main
from dtkit.errors import DtkitError
from dtkit.trainer import TrainConfig
from dtkit.trainer.checks import FiniteLossWatch, check_resume_flags

ARGS = ["--steps", "12", "--batch-size", "4", "--context-len", "4", "--log-every", "100", "--checkpoint-every", "4",
        "--eval-episodes", "1", "--eval-envs", "1", "--warmup-steps", "1", "--model.d-model", "16", "--model.n-layer", "1",
        "--no-progress"]


def test_nan_loss_stops_before_any_bad_checkpoint(make_dataset, tmp_path, monkeypatch, capsys):
    """The loss turns NaN at step 6 (log boundaries are far apart): the step-4 checkpoint stays the latest."""

    class TurnsNaN(loop.DecisionTransformer):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            real, calls = self.head.loss, []

            def loss(*args, **kwargs):
                calls.append(1)
                out = real(*args, **kwargs)
                return out * float("nan") if len(calls) >= 6 else out

            self.head.loss = loss

    monkeypatch.setattr(loop, "DecisionTransformer", TurnsNaN)
    dataset_id = make_dataset("CartPole-v1", n_episodes=4)
    run = tmp_path / "run"
    assert main(["train", "--dataset", dataset_id, "--run-dir", str(run), *ARGS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NaN or inf at step 6" in err[0] and "step_00000004" in err[0], err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step_00000004"]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_00000004"
    assert not (run / "eval.json").exists()


def test_watch_keeps_the_first_bad_step_and_reads_back_only_on_check():
    watch = FiniteLossWatch(torch.device("cpu"), distributed=True)  # distributed: no eager read-back
    for step, value in enumerate([1.0, 2.0, math.inf, math.nan, 3.0], start=1):
        watch.update(torch.tensor(value), step)
    with pytest.raises(DtkitError, match="at step 3"):
        watch.check()


def test_save_refuses_non_finite_weights(tmp_path):
    import gymnasium as gym

    from dtkit.data import spec_from_spaces
    from dtkit.model import DecisionTransformer, ModelConfig
    from dtkit.trainer import save_checkpoint

    env = gym.make("CartPole-v1")
    model = DecisionTransformer(spec_from_spaces(env.observation_space, env.action_space, context_len=4), ModelConfig(d_model=16, n_layer=1))
    with torch.no_grad():
        next(model.parameters()).fill_(float("inf"))
    with pytest.raises(DtkitError, match="no checkpoint was written"):
        save_checkpoint(tmp_path, 1, model, {})
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_encoder_params_json_cannot_hold_are_refused_before_training(make_dataset, tmp_path):
    from dtkit.encoders import EncoderConfig
    from dtkit.trainer import TrainConfig, train

    dataset_id = make_dataset("CartPole-v1", n_episodes=2)
    cfg = TrainConfig(dataset=dataset_id, run_dir=str(tmp_path / "run"), steps=2, progress=False)
    with pytest.raises(DtkitError, match="not JSON-serialisable"):
        train(cfg, obs_encoders={"obs": EncoderConfig("mlp", {"hidden": object()})})
    assert not (tmp_path / "run").exists()


def test_resume_refuses_a_changed_key_order():
    # The key order lays out each step's tokens; a resumed run with another order would be another model.
    saved = TrainConfig(dataset="test/speech/mixed-v0", obs_order=("audio", "image")).to_dict()
    check_resume_flags(saved, TrainConfig(dataset="test/speech/mixed-v0", obs_order=("audio", "image")), "runs/x")
    with pytest.raises(DtkitError, match=r"--obs-order \['audio', 'image'\] \(checkpoint\) vs \['image', 'audio'\] \(given\)"):
        check_resume_flags(saved, TrainConfig(dataset="test/speech/mixed-v0", obs_order=("image", "audio")), "runs/x")


def test_resume_refuses_other_windows_and_reads_a_checkpoint_from_before_the_choice_as_start():
    # Window placement shapes the data the model sees; a checkpoint saved before the choice existed names none,
    # and those runs had start windows (the default then), not today's default.
    saved = TrainConfig(windows="start").to_dict()
    with pytest.raises(DtkitError, match=r"--windows 'start' \(checkpoint\) vs 'cover' \(given\)"):
        check_resume_flags(saved, TrainConfig().resolved(), "runs/x")
    before_the_choice = {k: v for k, v in saved.items() if k != "windows"}
    with pytest.raises(DtkitError, match=r"--windows 'start' \(checkpoint\) vs 'cover' \(given\)"):
        check_resume_flags(before_the_choice, TrainConfig().resolved(), "runs/x")
    check_resume_flags(before_the_choice, TrainConfig(windows="start").resolved(), "runs/x")
