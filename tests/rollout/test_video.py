"""--video: evaluation films env 0 into GIF files and TensorBoard, from images or from render()."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from dtkit.data import spec_from_spaces
from dtkit.model import DecisionTransformer, ModelConfig
from dtkit.policy import DTPolicy
from dtkit.rollout import evaluate
from dtkit.rollout.evaluate import make_vector_env
from dtkit.rollout.video import VideoRecorder, frame_of, video_env


def _policy(env_id: str, num_envs: int) -> DTPolicy:
    from dtkit.gym_env import make_env

    env = make_env(env_id)
    spec = spec_from_spaces(env.observation_space, env.action_space, context_len=4, max_timestep=500)
    return DTPolicy(DecisionTransformer(spec, ModelConfig(d_model=16, n_layer=1)), num_envs=num_envs)


def _read_gif(path):
    import imageio.v3 as iio

    return iio.imread(path, index=None)


def test_frames_from_rgb_grey_stack_and_non_images():
    rgb = gym.spaces.Box(0, 255, (5, 6, 3), np.uint8)
    stack = gym.spaces.Box(0, 255, (4, 5, 6), np.uint8)
    x = stack.sample()
    assert frame_of(rgb.sample(), rgb).shape == (5, 6, 3)
    assert np.array_equal(frame_of(x, stack)[..., 1], x[-1])
    assert frame_of(np.zeros(3, np.float32), gym.spaces.Box(-1, 1, (3,))) is None


def test_pixel_eval_writes_one_gif_per_target_and_a_tensorboard_summary(tmp_path):
    policy = _policy("dtkit/DoorKey-5x5-RGB-v0", 2)
    envs, writer = video_env("dtkit/DoorKey-5x5-RGB-v0", 2, [0.9, 0.5], tmp_path)
    report = evaluate(policy, envs, [0.9, 0.5], 2, progress=False)
    writer.close()
    assert [p.name for p in envs.files] == ["target_0.9_ep0.gif", "target_0.5_ep0.gif"]
    frames = _read_gif(envs.files[0])
    # env 0's first episode, what the policy saw (the GIF writer merges repeated frames, so at most one per step).
    assert frames.shape[1:] == (40, 40, 3) and 1 < len(frames) <= report.per_target[0].episode_lengths[0]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(tmp_path / "tb")).Reload().Tags()["images"]
    assert set(tags) == {"eval/video_target_0.9", "eval/video_target_0.5"}


def test_non_image_envs_are_filmed_through_render(tmp_path):
    envs = VideoRecorder(make_vector_env("CartPole-v1", 2, {"render_mode": "rgb_array"}), tmp_path, [10.0])
    evaluate(_policy("CartPole-v1", 2), envs, [10.0], 2, progress=False)
    assert _read_gif(envs.files[0]).shape[1:] == (400, 600, 3)


def test_video_of_an_env_without_images_or_rgb_rendering_is_a_clear_error(tmp_path):
    from dtkit.errors import DtkitError

    with pytest.raises(DtkitError, match="render_mode='rgb_array'"):
        VideoRecorder(make_vector_env("CartPole-v1", 1), tmp_path, [1.0])
