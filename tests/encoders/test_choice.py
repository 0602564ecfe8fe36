"""Choosing an encoder per observation key: parsing, errors, and a pixel run through the CLI end to end."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from dtkit.cli import main
from dtkit.encoders import EncoderConfig
from dtkit.encoders.choice import per_key_encoders
from dtkit.errors import DtkitError

TINY = ["--steps", "6", "--batch-size", "4", "--context-len", "3", "--log-every", "3", "--checkpoint-every", "6",
        "--eval-episodes", "1", "--eval-envs", "1", "--warmup-steps", "1", "--model.d-model", "16", "--model.n-layer", "1",
        "--no-progress"]


class TinyPixels(gym.Env):
    """An 8x8 RGB camera and a 2-d state; the reward is 1 when the action matches the image's brightness parity."""

    observation_space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8),
                                         "state": gym.spaces.Box(-1, 1, (2,), np.float32)})
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        self.img = self.np_random.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        return {"image": self.img, "state": self.np_random.uniform(-1, 1, 2).astype(np.float32)}

    def step(self, action):
        reward = float(int(action) == int(self.img.mean() > 127.5))
        self.t += 1
        return self._obs(), reward, False, self.t >= 6, {}


class WidePixels(TinyPixels):
    """TinyPixels with a wider camera: a checkpoint trained on TinyPixels must refuse it."""

    observation_space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (8, 12, 3), np.uint8),
                                         "state": gym.spaces.Box(-1, 1, (2,), np.float32)})

    def _obs(self):
        self.img = self.np_random.integers(0, 256, (8, 12, 3), dtype=np.uint8)
        return {"image": self.img, "state": self.np_random.uniform(-1, 1, 2).astype(np.float32)}


gym.register("H10mTinyPixels-v0", entry_point=f"{__name__}:TinyPixels")
gym.register("H10mWidePixels-v0", entry_point=f"{__name__}:WidePixels")


@pytest.fixture
def pixel_dataset():
    """A local Minari dataset of random TinyPixels episodes (Dict observations, stored per key)."""
    import warnings

    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    def make(n_episodes: int) -> str:
        env = TinyPixels()
        eps = []
        for i in range(n_episodes):
            obs, _ = env.reset(seed=i)
            seen, acts, rews = [obs], [], []
            for _ in range(6):
                a = int(env.np_random.integers(2))
                obs, r, _, _, _ = env.step(a)
                seen.append(obs), acts.append(a), rews.append(r)
            eps.append(EpisodeBuffer(id=i, observations={k: np.stack([o[k] for o in seen]) for k in seen[0]},
                                     actions=np.array(acts), rewards=np.array(rews), terminations=np.zeros(6, bool),
                                     truncations=np.arange(6) == 5, infos={}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            minari.create_dataset_from_buffers("test/tinypixels/random-v0", eps, env="H10mTinyPixels-v0", algorithm_name="random",
                                               author="tests", author_email="tests@dtkit.local", code_permalink="tests",
                                               description="tiny pixels", data_format="hdf5")
        return "test/tinypixels/random-v0"

    return make


def test_per_key_names_and_params():
    got = per_key_encoders(["image=patch", "state=mlp"], ['image={"patch": 4}'], ["image", "state"])
    assert got == {"image": EncoderConfig("patch", {"patch": 4}), "state": EncoderConfig("mlp")}


@pytest.mark.parametrize("encoders, params, words", [
    (["image"], [], ["--encoder 'image'", "KEY=VALUE"]),
    (["camera=patch"], [], ["['camera']", "['image', 'state']"]),
    (["image=patch"], ["image={patch"], ["not valid JSON"]),
    (["image=patch"], ["image=[4]"], ["must be a JSON object"]),
    ([], ['image={"patch": 4}'], ["without an encoder", "--encoder image=NAME"]),
])
def test_bad_per_key_flags_are_one_clear_line(encoders, params, words):
    with pytest.raises(DtkitError) as err:
        per_key_encoders(encoders, params, ["image", "state"])
    msg = str(err.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_cli_trains_and_evaluates_with_a_patch_encoder_for_one_key(pixel_dataset, tmp_path):
    dataset_id = pixel_dataset(4)
    run = tmp_path / "run"
    assert main(["train", "--dataset", dataset_id, "--run-dir", str(run), *TINY,
                 "--encoder", "image=patch", "--encoder-params", 'image={"patch": 4}']) == 0
    meta = json.loads(next((run / "checkpoints").glob("step_*/meta.json")).read_text())
    fields = {f["key"]: f for f in meta["spec"]["obs"]}
    assert fields["image"]["encoder"] == {"type": "patch", "params": {"patch": 4}} and fields["image"]["n_tokens"] == 4
    assert fields["image"]["info"]["modality"] == "image" and not fields["image"]["normalize"]
    assert fields["state"]["encoder"]["type"] == "mlp" and fields["state"]["normalize"]
    assert "image" not in meta["obs_stats"]  # pixels are never standardised with dataset statistics
    assert main(["eval", "--checkpoint", str(run), "--episodes", "1", "--num-envs", "1", "--no-progress"]) == 0


def test_eval_on_an_env_with_other_images_is_one_line_and_writes_nothing(pixel_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--dataset", pixel_dataset(2), "--run-dir", str(run), *TINY]) == 0
    before = sorted(str(p) for p in run.rglob("*"))
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run), "--env-id", "H10mWidePixels-v0", "--episodes", "1", "--num-envs", "1",
                 "--no-progress"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dtkit: error:"), lines
    assert "shape (8, 8, 3) dtype uint8" in lines[0] and "shape (8, 12, 3) dtype uint8" in lines[0], lines[0]
    assert sorted(str(p) for p in run.rglob("*")) == before


def test_stored_frames_unlike_the_space_stop_training_before_anything_is_written(pixel_dataset, tmp_path, monkeypatch, capsys):
    """Frames stored as float32 under a uint8 image space: one line naming both shapes and dtypes, no run folder."""
    from dtkit.trainer import loop

    dataset_id = pixel_dataset(2)
    real = loop.load_trajectories

    def float_frames(dataset):
        traj = real(dataset)
        traj.obs["image"] = traj.obs["image"].astype(np.float32) / 255.0
        return traj

    monkeypatch.setattr(loop, "load_trajectories", float_frames)
    run = tmp_path / "run"
    assert main(["train", "--dataset", dataset_id, "--run-dir", str(run), *TINY]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dtkit: error:"), lines
    assert "shape (8, 8, 3) dtype float32" in lines[0] and "shape (8, 8, 3) dtype uint8" in lines[0], lines[0]
    assert not run.exists()
