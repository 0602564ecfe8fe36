"""The segment sampler: shapes, padding mask, contiguity, length weighting, scaling."""

from __future__ import annotations


import gymnasium as gym
import numpy as np
import pytest

from dtkit.data import SegmentSampler, Trajectories, spec_from_spaces
from dtkit.data.sampler import WINDOWS
from dtkit.errors import DtkitError


def _traj(lengths, seed=0):
    rng = np.random.default_rng(seed)
    eps = []
    for n in lengths:
        # observation = (episode id, step) so windows can be checked exactly
        ep = len(eps)
        obs = np.stack([np.full(n + 1, ep), np.arange(n + 1)], 1).astype(np.float32)
        eps.append(dict(observations=obs, actions=rng.uniform(-2, 2, (n, 2)), rewards=rng.normal(size=n),
                        terminations=np.zeros(n), truncations=np.zeros(n)))
    return Trajectories.from_episodes(eps, gym.spaces.Box(-np.inf, np.inf, (2,)), gym.spaces.Box(-2, 2, (2,)))


@pytest.mark.parametrize("windows", WINDOWS)
def test_windows_are_contiguous_and_padded_on_the_right(windows):
    traj = _traj([3, 40, 25])
    spec = spec_from_spaces(traj.observation_space, traj.action_space, context_len=10, return_scale=7.0)
    batch = SegmentSampler(traj, spec, batch_size=256, seed=0, windows=windows).sample()
    assert batch.obs["obs"].shape == (256, 10, 2) and batch.actions.shape == (256, 10, 2)
    obs, mask = batch.obs["obs"].numpy(), batch.mask.numpy()
    for b in range(256):
        n = mask[b].sum()
        assert mask[b, :n].all() and not mask[b, n:].any(), "padding follows the real steps"
        ep = obs[b, 0, 0]
        assert (obs[b, :n, 0] == ep).all(), "a window never crosses episodes"
        np.testing.assert_array_equal(obs[b, :n, 1], obs[b, 0, 1] + np.arange(n))
        np.testing.assert_array_equal(batch.timesteps[b, :n].numpy(), obs[b, :n, 1])
        if windows == "end":  # cut at the episode's start, nowhere else
            assert n == 10 or obs[b, 0, 1] == 0
        else:
            assert n == min(10, traj.episode_lengths[int(ep)])


def _readout_rate(windows, K=10, length=100):
    """How often each step of one episode is a real (read-out) step, relative to the episode's middle."""
    traj = _traj([length])
    spec = spec_from_spaces(traj.observation_space, traj.action_space, context_len=K)
    batch = SegmentSampler(traj, spec, batch_size=40_000, seed=4, windows=windows).sample()
    steps = batch.obs["obs"][..., 1].numpy()[batch.mask.numpy()].astype(int)
    counts = np.bincount(steps, minlength=length)
    return counts / counts[40:60].mean()


def test_each_windows_choice_reads_out_an_episodes_first_and_last_steps_at_its_rate():
    center, start, end = _readout_rate("center"), _readout_rate("start"), _readout_rate("end")
    # Start windows read step t < K out only in windows starting at 0..t: step 0 at 1/K of a middle step's rate.
    assert 0.05 < start[0] < 0.15
    # Centered windows: every draw whose window would cross the start lands on the first window, so about (K+1)/2K.
    assert 0.45 < center[0] < 0.65 and (center[:10] > start[:10]).all()
    # Covering windows read the first and last steps as often as a middle one.
    cover = _readout_rate("cover")
    assert 0.9 < cover[0] < 1.1 and 0.9 < cover[-1] < 1.1
    # End windows read every step equally often except the last K-1 (the mirror image of start windows).
    assert 0.9 < end[0] < 1.1 and end[-1] < 0.15


def test_unknown_windows_is_a_user_error():
    traj = _traj([20])
    spec = spec_from_spaces(traj.observation_space, traj.action_space, context_len=4)
    with pytest.raises(DtkitError, match="windows='middle' is unknown; choose one of cover, start, center, end"):
        SegmentSampler(traj, spec, 8, windows="middle")


def test_returns_are_scaled_and_actions_in_unit_range():
    traj = _traj([30, 30])
    spec = spec_from_spaces(traj.observation_space, traj.action_space, context_len=5, return_scale=7.0)
    batch = SegmentSampler(traj, spec, batch_size=64, seed=1).sample()
    idx = (batch.obs["obs"][..., 0].long().numpy(), batch.obs["obs"][..., 1].long().numpy())
    flat = traj.episode_starts[idx[0]] + idx[1]
    np.testing.assert_allclose(batch.returns.numpy(), traj.returns_to_go[flat] / 7.0, rtol=1e-5, atol=1e-6)
    assert batch.actions.abs().max() <= 1.0


def test_episodes_weighted_by_length():
    traj = _traj([10, 90])
    spec = spec_from_spaces(traj.observation_space, traj.action_space, context_len=1)
    batch = SegmentSampler(traj, spec, batch_size=20_000, seed=2).sample()
    share_long = (batch.obs["obs"][:, 0, 0] == 1).float().mean().item()
    assert abs(share_long - 0.9) < 0.02


def test_same_seed_same_batches_and_state_round_trip():
    traj = _traj([20, 30])
    spec = spec_from_spaces(traj.observation_space, traj.action_space, context_len=4)
    a, b = SegmentSampler(traj, spec, 8, seed=3), SegmentSampler(traj, spec, 8, seed=3)
    assert (a.sample().obs["obs"] == b.sample().obs["obs"]).all()
    state = a.state_dict()
    x = a.sample()
    b.load_state_dict(state)
    assert (b.sample().obs["obs"] == x.obs["obs"]).all()
