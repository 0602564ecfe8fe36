"""In-process CLI runs on tiny local datasets, and one clear error line for each bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import pytest
import torch

from dtkit.cli import main
from dtkit.encoders import Encoder

TINY = ["--steps", "12", "--batch-size", "8", "--context-len", "4", "--log-every", "4", "--checkpoint-every", "6",
        "--eval-episodes", "2", "--eval-envs", "2", "--warmup-steps", "2", "--model.d-model", "16", "--model.n-layer", "1"]


class SumTokens(Encoder):
    """A user encoder defined in a test module: vector -> 2 tokens."""

    def __init__(self, field, d_model, width: int = 8):
        super().__init__(field, d_model)
        self.n_tokens = 2
        self.net = torch.nn.Sequential(torch.nn.Linear(field.shape[0], width), torch.nn.Tanh(), torch.nn.Linear(width, 2 * d_model))

    def forward(self, x):
        return self.net(x.float()).view(-1, 2, self.d_model)


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dtkit: error:"), err
    assert "Traceback" not in err[0]
    return err[0]


def test_help_for_every_command(capsys):
    for cmd in ("datasets", "train", "eval", "demo"):
        with pytest.raises(SystemExit) as exit_:
            main([cmd, "--help"])
        assert exit_.value.code == 0
        assert "usage: dtkit " + cmd in capsys.readouterr().out


def test_train_then_eval(make_dataset, tmp_path, capsys):
    dataset_id = make_dataset("CartPole-v1", n_episodes=4)
    run = tmp_path / "run"
    assert main(["train", "--dataset", dataset_id, "--run-dir", str(run), *TINY]) == 0
    assert "run folder" in capsys.readouterr().out
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(run), "--target-returns", "50", "10", "--episodes", "3", "--num-envs", "2",
                 "--out", str(out), "--no-progress"]) == 0
    report = json.loads(out.read_text())
    assert report["target_returns"] == [50.0, 10.0] and len(report["episode_returns"]) == 3
    assert report["normalized_score"] is not None  # the tiny dataset records reference scores
    assert report["env_id"] == "CartPole-v1" and report["num_envs"] == 2 and report["env_steps_per_s"] > 0
    meta = json.loads((run / "checkpoints" / "step_00000012" / "meta.json").read_text())
    assert report["return_to_go_range"] == meta["spec"]["return_to_go_range"]  # clamped by default
    assert "return-to-go fed to the model clamped to the training data's" in capsys.readouterr().out
    assert main(["eval", "--checkpoint", str(run), "--episodes", "1", "--num-envs", "1", "--out", str(out),
                 "--no-clamp-return-to-go", "--no-progress"]) == 0
    assert json.loads(out.read_text())["return_to_go_range"] is None


def test_custom_encoder_by_class_path(make_dataset, tmp_path):
    dataset_id = make_dataset("CartPole-v1", n_episodes=3)
    run = tmp_path / "run"
    assert main(["train", "--dataset", dataset_id, "--run-dir", str(run), *TINY,
                 "--obs-encoder", f"{__name__}:SumTokens", "--obs-encoder-params", '{"width": 4}']) == 0
    meta = json.loads((run / "checkpoints" / "step_00000012" / "meta.json").read_text())
    assert meta["spec"]["obs"][0]["encoder"] == {"type": f"{__name__}:SumTokens", "params": {"width": 4}}
    assert meta["spec"]["obs"][0]["n_tokens"] == 2
    assert main(["eval", "--checkpoint", str(run), "--episodes", "2", "--num-envs", "1", "--no-progress"]) == 0


def test_unknown_dataset(capsys):
    assert main(["train", "--dataset", "nobody/nothing-v0", *TINY]) == 2
    assert "unknown dataset id 'nobody/nothing-v0'" in _error_line(capsys)


def test_unsupported_dataset_spaces(tmp_path, capsys):
    import minari
    import numpy as np
    from minari.data_collector.episode_buffer import EpisodeBuffer

    obs_space = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(2)))
    ep = EpisodeBuffer(id=0, observations=(np.zeros(3, np.int64), np.zeros(3, np.int64)), actions=np.zeros(2, np.int64),
                       rewards=np.zeros(2), terminations=np.array([False, True]), truncations=np.zeros(2, bool), infos={})
    minari.create_dataset_from_buffers("test/tuple/bad-v0", [ep], observation_space=obs_space, action_space=gym.spaces.Discrete(2),
                                       algorithm_name="x", author="t", author_email="t", code_permalink="t", description="t",
                                       data_format="hdf5")
    assert main(["train", "--dataset", "test/tuple/bad-v0", *TINY]) == 2
    line = _error_line(capsys)
    assert "test/tuple/bad-v0" in line and "unsupported" in line


def test_checkpoint_env_mismatch(make_dataset, tmp_path, capsys):
    dataset_id = make_dataset("CartPole-v1", n_episodes=2)
    run = tmp_path / "run"
    assert main(["train", "--dataset", dataset_id, "--run-dir", str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run), "--env-id", "Acrobot-v1", "--no-progress"]) == 2
    line = _error_line(capsys)
    assert "Acrobot-v1" in line and "shape (4,)" in line
    assert not (run / "eval.json").exists() or json.loads((run / "eval.json").read_text())["env_id"] == "CartPole-v1"


def test_unknown_encoder(make_dataset, capsys):
    dataset_id = make_dataset("CartPole-v1", n_episodes=2)
    assert main(["train", "--dataset", dataset_id, *TINY, "--obs-encoder", "resnet9000"]) == 2
    line = _error_line(capsys)
    assert "unknown encoder 'resnet9000'" in line and "mlp" in line


def test_non_finite_target_return(make_dataset, tmp_path, capsys):
    dataset_id = make_dataset("CartPole-v1", n_episodes=2)
    assert main(["train", "--dataset", dataset_id, *TINY, "--target-returns", "nan"]) == 2
    assert "not finite" in _error_line(capsys)
    run = tmp_path / "run"
    assert main(["train", "--dataset", dataset_id, "--run-dir", str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run), "--target-returns", "inf", "--no-progress"]) == 2
    assert "not finite" in _error_line(capsys)


def test_context_length_below_one(make_dataset, tmp_path, capsys):
    dataset_id = make_dataset("CartPole-v1", n_episodes=2)
    args = [a for a in TINY]
    args[args.index("--context-len") + 1] = "0"
    assert main(["train", "--dataset", dataset_id, "--run-dir", str(tmp_path / "r"), *args]) == 2
    assert "K must be >= 1" in _error_line(capsys)
    assert not (tmp_path / "r").exists(), "nothing is written for a rejected run"


def test_missing_checkpoint(tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path / "nothing")]) == 2
    assert "no checkpoint found" in _error_line(capsys)


def test_behaviour_cloning_through_the_same_trunk(make_dataset, tmp_path):
    """--no-return-token drops the return token (BC); --top-fraction keeps the best episodes (%BC)."""
    dataset_id = make_dataset("CartPole-v1", n_episodes=6)
    run = tmp_path / "bc"
    assert main(["train", "--dataset", dataset_id, "--run-dir", str(run), *TINY, "--no-return-token", "--top-fraction", "0.5"]) == 0
    meta = json.loads((run / "checkpoints" / "step_00000012" / "meta.json").read_text())
    assert meta["spec"]["layout"] == ["obs", "action"] and meta["config"]["top_fraction"] == 0.5
    # Without a return token the target cannot reach the model: two far-apart targets play identical episodes.
    out = run / "targets.json"
    assert main(["eval", "--checkpoint", str(run), "--target-returns", "5", "500", "--episodes", "2", "--num-envs", "2",
                 "--out", str(out), "--no-progress"]) == 0
    low, high = json.loads(out.read_text())["per_target"]
    assert low["episode_returns"] == high["episode_returns"]


def test_build_then_train(tmp_path, capsys):
    """The whole CLI path on a tiny behaviour run: datasets build (a recipe file with --set) -> train (with its final evaluation)."""
    recipe = tmp_path / "cli.toml"
    recipe.write_text('env_id = "CartPole-v1"\ndataset_id = "test/cartpole/cli-v0"\nref_episodes = 3\n'
                      '[train]\nalgo = "ppo"\nsteps = 256\ncheckpoint_every = 128\neval_episodes = 2\n'
                      '[[tiers]]\npolicy = "random"\nepisodes = 3\n[[tiers]]\npolicy = "expert"\nepisodes = 1\n')
    assert main(["datasets", "build", str(recipe), "--set", "tiers[1].episodes=2", "train.hyperparams={n_steps=64}",
                 "--policy-dir", str(tmp_path / "policies"), "--no-progress"]) == 0
    assert "dataset ready: test/cartpole/cli-v0" in capsys.readouterr().out
    run = tmp_path / "run"
    assert main(["train", "--dataset", "test/cartpole/cli-v0", "--run-dir", str(run), *TINY, "--no-progress"]) == 0
    report = json.loads((run / "eval.json").read_text())
    assert report["normalized_score"] is not None and report["ref_max_score"] is not None


@pytest.mark.parametrize("args", [["datasets", "info", "hopper"], ["datasets", "--help"]])
def test_closed_stdout_ends_quietly(args):
    """`dtkit datasets info hopper | head`: a reader that leaves early gets no BrokenPipe traceback on stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "dtkit.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader leaves before the command prints (it is still importing)
    err = proc.stderr.read().decode()
    assert proc.wait() == 141, err  # 128 + SIGPIPE, as a Unix tool stopped by the closed pipe
    assert err == ""
