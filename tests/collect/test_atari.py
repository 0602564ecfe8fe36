"""The Atari recipe end to end in seconds: tiny PPO, lossless stacked frames, lazy single-frame cache, a DT update."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")  # gymnasium's AtariPreprocessing resizes with OpenCV


@pytest.mark.slow  # ~1 min on a busy 2-core machine: PPO on pixels, even tiny, is not a seconds-long check
def test_tiny_breakout_build_then_lazy_training(tmp_path, monkeypatch):
    import minari

    from dtkit.collect import build_recipe
    from dtkit.data import LazyObs, load_trajectories
    from dtkit.model import ModelConfig
    from dtkit.trainer import TrainConfig, train

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the tiny PPO trains into the user cache
    ids = build_recipe("breakout", tiny=True, progress=False)
    assert ids == ["dtkit-tiny/breakout/mixed-v0", "dtkit-tiny/breakout/expert-v0"]
    ds = minari.load_dataset(ids[1])
    first = next(ds.iterate_episodes()).observations
    assert first.dtype == np.uint8 and first.shape[1:] == (4, 84, 84)
    assert np.array_equal(first[0, 0], first[0, 3])  # the reset frame fills the first stack

    traj = load_trajectories(ids[1])
    obs = traj.obs["obs"]
    assert isinstance(obs, LazyObs) and obs.stack == 4  # one 84x84 frame per step on disk
    assert np.array_equal(obs[np.arange(traj.episode_lengths[0])], first[:-1])

    result = train(TrainConfig(dataset=ids[1], steps=2, batch_size=4, context_len=4, eval_episodes=1, eval_envs=1,
                               checkpoint_every=2, run_dir=str(tmp_path / "run"), progress=False,
                               model=ModelConfig(d_model=16, n_layer=1)), progress=False)
    assert result.steps == 2 and result.report is not None and np.isfinite(result.final_loss)
