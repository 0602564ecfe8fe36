"""Episode videos from evaluation: a vector-env wrapper that films env 0.

:func:`~dtkit.rollout.evaluate.evaluate` resets the vector env once per target
return, so the k-th reset starts target k; the wrapper films env 0's first
``episodes_per_target`` episodes after each reset and writes each as an
animated GIF (imageio; no ffmpeg needed) and, given a TensorBoard writer, as an
image summary that TensorBoard plays. Frames are the observations themselves
when they are images (what the policy saw: an RGB frame, or the newest frame of
an Atari stack), else ``render()`` of an env made with ``render_mode="rgb_array"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from dtkit.errors import DtkitError

__all__ = ["VideoRecorder", "frame_of"]

#: Longer episodes are cut in the video (not in the evaluation): files stay small.
MAX_FRAMES = 1_000


def frame_of(obs: Any, space: gym.Space) -> np.ndarray | None:
    """An (H, W, 3) uint8 frame from one observation, or None when it holds no image."""
    if isinstance(space, gym.spaces.Dict):
        for key, sub in space.spaces.items():
            frame = frame_of(obs[key], sub)
            if frame is not None:
                return frame
        return None
    if not (isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3):
        return None
    x = np.asarray(obs)
    if x.shape[-1] in (1, 3):  # HWC
        return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x
    if x.shape[0] in (1, 3):  # CHW
        x = np.moveaxis(x, 0, -1)
        return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x
    return np.repeat(x[-1][..., None], 3, axis=-1)  # a frame stack: its newest frame, grey


class VideoRecorder(gym.vector.VectorWrapper):
    """Films env 0 of a vector env during :func:`evaluate`; see the module docstring.

    Example:
        >>> envs = VideoRecorder(make_vector_env("dtkit/DoorKey-5x5-RGB-v0", 4), "runs/x/videos",
        ...                      targets=[0.93])  # doctest: +SKIP
        >>> evaluate(policy, envs, [0.93], 8)  # doctest: +SKIP
        >>> envs.files  # doctest: +SKIP
        [PosixPath('runs/x/videos/target_0.93_ep0.gif')]
    """

    def __init__(self, env: gym.vector.VectorEnv, folder: str | Path, targets: list[float], *,
                 episodes_per_target: int = 1, writer: Any = None, step: int = 0, fps: int = 10) -> None:
        super().__init__(env)
        self.folder, self.targets, self.per_target = Path(folder), list(targets), episodes_per_target
        self.writer, self.step_for_tb, self.fps = writer, step, fps
        self.files: list[Path] = []
        self._target = -1
        self._done_here = 0
        self._frames: list[np.ndarray] = []
        self._use_obs = frame_of(env.single_observation_space.sample(), env.single_observation_space) is not None
        if not self._use_obs and getattr(env, "render_mode", None) != "rgb_array":
            raise DtkitError("--video needs image observations or envs made with render_mode='rgb_array'; "
                             "make the env with env_kwargs={'render_mode': 'rgb_array'}")

    @property
    def envs(self) -> list[gym.Env]:
        """The single envs (so reports name the env id, as for an unwrapped SyncVectorEnv)."""
        return list(getattr(self.env.unwrapped, "envs", []))

    def _grab(self, obs: Any) -> None:
        if self._target < 0 or self._done_here >= self.per_target or len(self._frames) >= MAX_FRAMES:
            return
        if self._use_obs:
            first = {k: v[0] for k, v in obs.items()} if isinstance(obs, dict) else obs[0]
            frame = frame_of(first, self.env.single_observation_space)
        else:
            frame = np.asarray(self.envs[0].render())  # the first single env (SyncVectorEnv)
        if frame is not None:
            self._frames.append(np.ascontiguousarray(frame, dtype=np.uint8))

    def reset(self, *, seed: Any = None, options: Any = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._save()
        self._target, self._done_here, self._frames = self._target + 1, 0, []
        self._grab(obs)
        return obs, info

    def step(self, actions: Any) -> tuple[Any, ...]:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        if self._done_here < self.per_target:
            if terminated[0] or truncated[0]:
                self._save()
                self._done_here += 1
                self._frames = []
            self._grab(obs)  # the new episode's first frame (same-step autoreset)
        return obs, reward, terminated, truncated, info

    def close(self, **kwargs: Any) -> None:
        self._frames = []  # an unfinished episode is not a video
        super().close(**kwargs)

    def _save(self) -> None:
        if len(self._frames) < 2 or self._done_here >= self.per_target:
            return
        import imageio.v3 as iio

        from dtkit.io import atomic_file

        target = self.targets[self._target] if self._target < len(self.targets) else self._target
        name = f"target_{target:g}_ep{self._done_here}.gif"
        self.folder.mkdir(parents=True, exist_ok=True)
        frames = np.stack(self._frames)
        data = iio.imwrite("<bytes>", frames, extension=".gif", duration=1000 / self.fps, loop=0)
        with atomic_file(self.folder / name) as tmp:
            Path(tmp).write_bytes(data)
        self.files.append(self.folder / name)
        if self.writer is not None:
            _add_gif(self.writer, f"eval/video_target_{target:g}", data, frames.shape, self.step_for_tb)


def _add_gif(writer: Any, tag: str, gif: bytes, shape: tuple[int, ...], step: int) -> None:
    """An animated GIF as a TensorBoard image summary (what ``add_video`` writes, without needing moviepy)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    image = Summary.Image(height=shape[1], width=shape[2], colorspace=3, encoded_image_string=gif)
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


def video_env(env_id: str, num_envs: int, targets: list[float], run_dir: str | Path, *, recorded_spec: str | None = None,
              step: int = 0) -> tuple[VideoRecorder, Any]:
    """A vector env of ``env_id`` that films into ``run_dir/videos`` and ``run_dir/tb``; returns it and the
    TensorBoard writer to close after the evaluation."""
    from torch.utils.tensorboard import SummaryWriter

    from dtkit.rollout.evaluate import make_vector_env

    envs = make_vector_env(env_id, num_envs, None, recorded_spec)
    if frame_of(envs.single_observation_space.sample(), envs.single_observation_space) is None:
        envs.close()  # not images: film what the env renders
        envs = make_vector_env(env_id, num_envs, {"render_mode": "rgb_array"}, recorded_spec)
    writer = SummaryWriter(str(Path(run_dir) / "tb"))
    return VideoRecorder(envs, Path(run_dir) / "videos", targets, writer=writer, step=step), writer
