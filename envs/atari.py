"""Atari through ale-py with the standard DQN preprocessing.

``NoFrameskip-v4`` (no sticky actions, every frame) wrapped in gymnasium's
``AtariPreprocessing`` (up to 30 no-op starts, frame-skip 4 with a max over
the last two frames, 84x84 grey) and ``FrameStackObservation`` (4 frames on a
new leading axis; the first frames of an episode repeat the reset frame).
This is the protocol of Mnih et al. (2015) that DQN-replay and the DT paper's
Atari datasets follow, except that episodes end at game over, not at each
life lost. The observation is uint8 ``(4, 84, 84)``.

The ROMs ship inside the ale-py wheel, so this works offline. Stands alone:
imports gymnasium and ale-py only.
"""

from __future__ import annotations

import gymnasium as gym

__all__ = ["make_atari"]


def make_atari(game: str = "Breakout", frame_stack: int = 4, render_mode: str | None = None) -> gym.Env:
    """``{game}NoFrameskip-v4`` with DQN preprocessing and a ``frame_stack``-frame stack."""
    import ale_py

    gym.register_envs(ale_py)
    env = gym.make(f"{game}NoFrameskip-v4", render_mode=render_mode)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84,
                                          terminal_on_life_loss=False, grayscale_obs=True, scale_obs=False)
    return gym.wrappers.FrameStackObservation(env, frame_stack)
