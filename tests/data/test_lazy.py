"""Lazy observations: the on-disk cache gives exactly the in-memory data, frame stacks stored once."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

from dtkit.data import SegmentSampler, load_trajectories, spec_from_spaces
from dtkit.data.lazy import LazyObs
from dtkit.errors import DtkitError


def _stacked(frames: np.ndarray, depth: int) -> np.ndarray:
    """(n, H, W) frames -> (n, depth, H, W) sliding stacks, the first frame repeated (FrameStackObservation)."""
    idx = np.maximum(np.arange(len(frames))[:, None] - (depth - 1) + np.arange(depth), 0)
    return frames[idx]


def _make(dataset_id: str, obs_space: gym.Space, make_obs, n_episodes: int = 6, seed: int = 0) -> list[np.ndarray]:
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    rng = np.random.default_rng(seed)
    eps, raw = [], []
    for i in range(n_episodes):
        n = int(rng.integers(3, 30))
        obs = make_obs(rng, n + 1)
        raw.append(obs)
        eps.append(EpisodeBuffer(id=i, observations=obs, actions=rng.integers(3, size=n),
                                 rewards=rng.random(n), terminations=np.r_[np.zeros(n - 1, bool), True],
                                 truncations=np.zeros(n, bool), infos={}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(dataset_id, eps, observation_space=obs_space,
                                           action_space=gym.spaces.Discrete(3), algorithm_name="t", author="t",
                                           code_permalink="t", description="t", data_format="hdf5", jpeg_encoding=False)
    return raw


STACK_SPACE = gym.spaces.Box(0, 255, (4, 24, 24), np.uint8)


def _stack_obs(rng, n):
    return _stacked(rng.integers(0, 256, (n, 24, 24), dtype=np.uint8), 4)


def _cache_files(dataset_id):
    from minari.storage import get_dataset_path

    return sorted((get_dataset_path() / dataset_id / "obs_cache").glob("*.bin"))


def test_frame_stacks_are_cached_once_and_rebuilt_exactly():
    raw = _make("t/stack/a-v0", STACK_SPACE, _stack_obs)
    traj = load_trajectories("t/stack/a-v0")
    lazy = traj.obs["obs"]
    assert isinstance(lazy, LazyObs) and lazy.stack == 4 and lazy.shape == (traj.num_steps, 4, 24, 24)
    # One 12x10 frame per step on disk, a quarter of the stacks.
    assert _cache_files("t/stack/a-v0")[0].stat().st_size == traj.num_steps * 24 * 24
    assert np.array_equal(np.asarray(lazy), np.concatenate([o[:-1] for o in raw]))


def test_stacks_that_do_not_slide_are_cached_whole():
    raw = _make("t/stack/b-v0", STACK_SPACE, lambda rng, n: rng.integers(0, 256, (n, 4, 24, 24), dtype=np.uint8))
    traj = load_trajectories("t/stack/b-v0")
    assert traj.obs["obs"].stack == 0
    assert np.array_equal(np.asarray(traj.obs["obs"]), np.concatenate([o[:-1] for o in raw]))


def test_int16_audio_is_lazy_and_small_float_keys_stay_in_memory():
    space = gym.spaces.Dict({"audio": gym.spaces.Box(-2**15, 2**15 - 1, (800,), np.int16),
                             "state": gym.spaces.Box(-1, 1, (3,), np.float32)})

    def obs(rng, n):
        return {"audio": rng.integers(-2**15, 2**15, (n, 800), dtype=np.int16),
                "state": rng.random((n, 3)).astype(np.float32)}

    raw = _make("t/audio/a-v0", space, obs)
    traj = load_trajectories("t/audio/a-v0")
    assert isinstance(traj.obs["audio"], LazyObs) and isinstance(traj.obs["state"], np.ndarray)
    assert np.array_equal(np.asarray(traj.obs["audio"]), np.concatenate([o["audio"][:-1] for o in raw]))


def _batches(sampler, n):
    return [sampler.sample() for _ in range(n)]


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(
        [a.returns, a.actions, a.mask, a.timesteps, *a.obs.values()], [b.returns, b.actions, b.mask, b.timesteps, *b.obs.values()]))


@pytest.mark.parametrize("prefetch", [0, 2])
def test_lazy_sampler_matches_in_memory_sampler(prefetch):
    _make("t/stack/c-v0", STACK_SPACE, _stack_obs)
    lazy = load_trajectories("t/stack/c-v0")
    eager = load_trajectories("t/stack/c-v0")
    eager.obs["obs"] = np.asarray(eager.obs["obs"])
    spec = spec_from_spaces(lazy.observation_space, lazy.action_space, context_len=8)
    a = SegmentSampler(lazy, spec, batch_size=16, seed=3, prefetch=prefetch)
    b = SegmentSampler(eager, spec, batch_size=16, seed=3)
    assert a.prefetch == prefetch and b.prefetch == 0
    assert all(_same(x, y) for x, y in zip(_batches(a, 5), _batches(b, 5)))
    a.close()


def test_prefetching_sampler_resumes_at_the_next_unreturned_batch():
    _make("t/stack/d-v0", STACK_SPACE, _stack_obs)
    traj = load_trajectories("t/stack/d-v0")
    spec = spec_from_spaces(traj.observation_space, traj.action_space, context_len=8)
    first = SegmentSampler(traj, spec, batch_size=4, seed=0)
    assert first.prefetch > 0  # lazy data prefetches by default
    seen = _batches(first, 3)
    state = first.state_dict()
    rest = _batches(first, 2)
    resumed = SegmentSampler(traj, spec, batch_size=4, seed=99)
    resumed.load_state_dict(state)
    assert all(_same(x, y) for x, y in zip(_batches(resumed, 2), rest))
    assert not _same(seen[0], rest[0])
    first.close(), resumed.close()


def test_top_episodes_stays_lazy_and_correct():
    raw = _make("t/stack/e-v0", STACK_SPACE, _stack_obs)
    traj = load_trajectories("t/stack/e-v0")
    top = traj.top_episodes(0.5)
    assert isinstance(top.obs["obs"], LazyObs)
    best = np.sort(np.argsort(-traj.episode_returns, kind="stable")[:len(top.episode_lengths)])
    assert np.array_equal(np.asarray(top.obs["obs"]), np.concatenate([raw[i][:-1] for i in best]))


def test_a_truncated_cache_is_one_clear_error():
    _make("t/stack/f-v0", STACK_SPACE, _stack_obs)
    load_trajectories("t/stack/f-v0")
    path = _cache_files("t/stack/f-v0")[0]
    path.write_bytes(path.read_bytes()[:100])
    traj = load_trajectories("t/stack/f-v0")
    with pytest.raises(DtkitError, match="truncated.*delete"):
        np.asarray(traj.obs["obs"])


def _rank_loads(rank: int, world: int, init: str, root: str, out: str) -> None:
    import os

    import torch.distributed as dist

    os.environ["MINARI_DATASETS_PATH"] = root
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        traj = load_trajectories("t/stack/g-v0")
        obs = traj.obs["obs"]
        np.save(f"{out}/rank{rank}.npy", obs[np.arange(len(obs))])
        with open(f"{out}/rank{rank}.path", "w") as f:
            f.write(str(obs.path))
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_share_one_cache(minari_root, tmp_path):
    """Rank 0 writes the cache while rank 1 waits at the barrier; both read the same file."""
    import torch.multiprocessing as mp

    _make("t/stack/g-v0", STACK_SPACE, _stack_obs)
    mp.spawn(_rank_loads, args=(2, f"file://{tmp_path}/rdv", str(minari_root), str(tmp_path)), nprocs=2)
    assert (tmp_path / "rank0.path").read_text() == (tmp_path / "rank1.path").read_text()
    assert np.array_equal(np.load(tmp_path / "rank0.npy"), np.load(tmp_path / "rank1.npy"))
    assert [p.name for p in _cache_files("t/stack/g-v0")[0].parent.parent.iterdir() if p.name.startswith(".")] == []
