"""The spoken-instruction environments: check_env, the clip, instruction modes, voices, the expert."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import dtkit.envs  # noqa: F401  (registers dtkit/...)
from dtkit.envs.speech_synth import HELDOUT_VOICES, SAMPLE_RATE, TRAIN_VOICES, VoiceStyle, fit_length, synthesize
from dtkit.envs.speech_tasks import SpokenTaskExpert

IDS = ["dtkit/SpokenGoal-v0", "dtkit/SpokenGoalMemory-v0", "dtkit/SpokenGoTo-v0",
       "dtkit/SpokenGoal-heldout-v0", "dtkit/SpokenGoalMemory-heldout-v0", "dtkit/SpokenGoTo-heldout-v0"]


@pytest.mark.parametrize("env_id", IDS)
def test_check_env_passes(env_id):
    check_env(gym.make(env_id).unwrapped, skip_render_check=False)


def test_voice_splits_are_disjoint_in_accent_and_variant():
    split = lambda voices: ({v.split("+")[0] for v in voices}, {v.split("+")[1] for v in voices})  # noqa: E731
    (ta, tv), (ha, hv) = split(TRAIN_VOICES), split(HELDOUT_VOICES)
    assert not ta & ha and not tv & hv


def test_synthesis_is_16khz_int16_and_fits_one_length():
    clip = synthesize("yellow", VoiceStyle("en-us+m1", 50, 175))
    assert clip.dtype == np.int16 and 0.2 * SAMPLE_RATE < len(clip) < 0.6 * SAMPLE_RATE and np.abs(clip).max() > 3000
    assert fit_length(clip, 100).shape == (100,) and np.array_equal(fit_length(clip, 100), clip[:100])
    padded = fit_length(clip, len(clip) + 50)
    assert np.array_equal(padded[: len(clip)], clip) and not padded[len(clip):].any()


@pytest.mark.parametrize("env_id", ["dtkit/SpokenGoal-v0", "dtkit/SpokenGoTo-v0"])
def test_instruction_every_step_or_first_step_only(env_id):
    every = gym.make(env_id)
    first = gym.make(env_id, instruction="first_step")
    assert first.spec.kwargs["instruction"] == "first_step"  # the option is recorded in the env spec
    o_every, info = every.reset(seed=3)
    o_first, _ = first.reset(seed=3)
    assert np.array_equal(o_every["audio"], o_first["audio"]) and o_first["audio"].any()
    for _ in range(2):
        o_every, *_ = every.step(0)
        o_first, *_ = first.step(0)
        assert o_every["audio"].any() and not o_first["audio"].any()


def test_heldout_voices_option():
    for env in (gym.make("dtkit/SpokenGoal-v0", voices="heldout"), gym.make("dtkit/SpokenGoTo-heldout-v0")):
        voices = {env.reset(seed=s)[1]["voice"] for s in range(20)}
        assert voices <= set(HELDOUT_VOICES)
    with pytest.raises(ValueError, match="heldout"):
        gym.make("dtkit/SpokenGoal-v0", voices="other").reset()


@pytest.mark.parametrize("env_id", ["dtkit/SpokenGoal-v0", "dtkit/SpokenGoTo-v0"])
def test_expert_reaches_the_spoken_goal_and_a_wrong_goal_pays_nothing(env_id):
    env = gym.make(env_id)
    expert = SpokenTaskExpert(env)
    wins = []
    for seed in range(30):
        obs, info = env.reset(seed=seed)
        expert.reset(obs, info)
        for _ in range(12):
            obs, reward, terminated, truncated, info = env.step(expert.act(obs, info))
            if terminated or truncated:
                break
        wins.append(reward == 1.0 and info["success"])
    assert np.mean(wins) >= 0.95
    # Walking straight up-left from the centre of SpokenGoal ends in the red corner.
    env = gym.make("dtkit/SpokenGoal-v0")
    for seed in range(20):
        env.reset(seed=seed)
        if env.unwrapped.target != 0:
            break
    for a in (0, 0, 2, 2):
        _, reward, terminated, *_ = env.step(a)
    assert terminated and reward == 0.0


def test_goto_layouts():
    wall_middles = {(0, 2), (2, 0), (2, 4), (4, 2)}
    turned = gym.make("dtkit/SpokenGoTo-v0", start="centre", home_share=0.25)  # four colours, one cyclic order, turned
    orders = set()
    for seed in range(40):
        turned.reset(seed=seed)
        u = turned.unwrapped
        assert tuple(u.agent) == (2, 2) and {tuple(c) for c in u.objects} == wall_middles
        orders.add(tuple(map(tuple, u.objects[np.argsort(u.colours)])))
    assert len(orders) == 4  # four quarter turns, nothing else
    stations = gym.make("dtkit/SpokenGoTo-v0", layout="stations", start="centre")
    stations.reset(seed=0)
    assert {tuple(c) for c in stations.unwrapped.objects} < wall_middles and len(set(stations.unwrapped.colours.tolist())) == 3
    scattered = gym.make("dtkit/SpokenGoTo-v0", layout="random")
    cells = set()
    for seed in range(5):
        scattered.reset(seed=seed)
        cells |= {tuple(c) for c in scattered.unwrapped.objects}
    assert len(cells) > 4


def test_goto_home_share_sets_how_often_the_room_is_unturned():
    def home_fraction(env: gym.Env, n: int) -> float:
        home = 0
        for seed in range(n):
            env.reset(seed=seed)
            u = env.unwrapped
            home += tuple(u.objects[list(u.colours).index(0)]) == (0, 2)  # red on top
        return home / n

    assert gym.make("dtkit/SpokenGoTo-v0").spec.kwargs["home_share"] == 1.0  # recorded, so eval remakes the same task
    assert home_fraction(gym.make("dtkit/SpokenGoTo-v0"), 20) == 1.0
    assert abs(home_fraction(gym.make("dtkit/SpokenGoTo-v0", home_share=0.5), 400) - 0.5) < 0.1
    assert home_fraction(gym.make("dtkit/SpokenGoTo-v0", home_share=0.0), 40) == 0.0
    with pytest.raises(ValueError, match="home_share=1.5 is invalid"):
        gym.make("dtkit/SpokenGoTo-v0", home_share=1.5)


def test_goto_start_anywhere_puts_the_agent_on_free_cells_and_the_expert_still_arrives():
    from dtkit.envs.speech_tasks import SpokenTaskExpert

    env = gym.make("dtkit/SpokenGoTo-v0", start="anywhere", snr_db=None)
    starts = set()
    for seed in range(30):
        obs, info = env.reset(seed=seed)
        u = env.unwrapped
        assert u._object_at(u.agent) is None
        starts.add(tuple(u.agent))
        expert = SpokenTaskExpert(env)
        for _ in range(u.max_steps):
            obs, reward, terminated, truncated, info = env.step(expert.act(obs, info))
            if terminated or truncated:
                break
        assert reward == 1.0
    assert len(starts) > 8
    with pytest.raises(ValueError, match="start='corner' is unknown"):
        gym.make("dtkit/SpokenGoTo-v0", start="corner")
