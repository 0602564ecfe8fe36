"""Atari through ale-py with the standard DQN preprocessing.

``NoFrameskip-v4`` (no sticky actions, every frame) wrapped in gymnasium's
``AtariPreprocessing`` (up to 30 no-op starts, frame-skip 4 with a max over
the last two frames, 84x84 grey) and ``FrameStackObservation`` (4 frames on a
new leading axis; the first frames of an episode repeat the reset frame).
This is the protocol of Mnih et al. (2015) that DQN-replay and the DT paper's
Atari datasets follow, except that episodes end at game over, not at each
life lost. In games that wait for FIRE to serve (Breakout), the env presses
it at the start and after each lost life, as OpenAI Baselines' ``FireResetEnv``
does at each of its life-long episodes: otherwise a greedy policy that never
picks FIRE freezes the game until the 108,000-frame cap. The observation is
uint8 ``(4, 84, 84)``.

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
    if env.unwrapped.get_action_meanings()[1] == "FIRE":
        env = ServeWithFire(env)
    return gym.wrappers.FrameStackObservation(env, frame_stack)


class ServeWithFire(gym.Wrapper):
    """Press FIRE (one agent step) after reset and after every life lost, so play never waits for it.

    The FIRE step's reward is added to the step that lost the life; its frame is what the agent sees next.
    """

    FIRE = 1

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(self.FIRE)  # no reward can come before the serve
        if terminated or truncated:  # cannot happen at a game's first frame; keep the contract anyway
            obs, info = self.env.reset(**kwargs)
        self._lives = info.get("lives", 0)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = info.get("lives", 0)
        if lives < self._lives and not (terminated or truncated):
            obs, served, terminated, truncated, info = self.env.step(self.FIRE)
            reward += served
        self._lives = lives
        return obs, reward, terminated, truncated, info
