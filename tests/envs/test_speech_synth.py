"""Speech synthesis is a pure function of (text, style): same clip in any call order and in any process."""

from __future__ import annotations

import subprocess
import sys

import dtkit.envs  # noqa: F401  (registers dtkit/...)
import gymnasium as gym
import numpy as np
import pytest
from dtkit.envs import speech_synth
from dtkit.envs.speech_synth import VoiceStyle, synthesize

# A plain voice, the Klatt synthesiser, and the breathy variants whose noise espeak-ng seeds from the clock.
STYLES = [VoiceStyle("en-us+m1", 50, 175), VoiceStyle("en-us+klatt", 40, 150), VoiceStyle("en+f2", 60, 200),
          VoiceStyle("en-gb-x-rp+f3", 63, 198), VoiceStyle("en-us-nyc+f5", 35, 160)]
EPISODE_SEEDS = range(6)


def _uncached(text: str, style: VoiceStyle) -> np.ndarray:
    speech_synth._synth_cached.cache_clear()  # the cache would hide a second synthesis
    return synthesize(text, style).copy()


def _episode_audio(env_id: str) -> np.ndarray:
    env = gym.make(env_id)
    clips = [env.reset(seed=seed)[0]["audio"] for seed in EPISODE_SEEDS]
    env.close()
    return np.stack(clips)


@pytest.mark.parametrize("style", STYLES, ids=lambda s: s.voice)
def test_a_clip_does_not_depend_on_what_was_synthesised_before(style):
    first = _uncached("blue", style)
    for other in STYLES:  # espeak-ng state (pitch flutter, gain, noise) would carry over from these
        _uncached("go to the yellow ball", other)
    np.testing.assert_array_equal(_uncached("blue", style), first)


def test_clips_and_episodes_are_the_same_in_a_fresh_process(tmp_path):
    out = tmp_path / "fresh.npz"
    code = (
        "import sys, gymnasium as gym, numpy as np, dtkit.envs\n"
        "from dtkit.envs.speech_synth import VoiceStyle, synthesize\n"
        "env = gym.make('dtkit/SpokenGoal-v0')\n"
        f"episodes = np.stack([env.reset(seed=seed)[0]['audio'] for seed in {list(EPISODE_SEEDS)}])\n"
        f"clips = {{f'clip{{i}}': synthesize('blue', s) for i, s in enumerate({STYLES!r})}}\n"
        "np.savez(sys.argv[1], episodes=episodes, **clips)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(out)], check=True)
    fresh = np.load(out)
    for i, style in enumerate(STYLES):
        np.testing.assert_array_equal(_uncached("blue", style), fresh[f"clip{i}"], err_msg=style.voice)
    speech_synth._synth_cached.cache_clear()
    np.testing.assert_array_equal(_episode_audio("dtkit/SpokenGoal-v0"), fresh["episodes"])
