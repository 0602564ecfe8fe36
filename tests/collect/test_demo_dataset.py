"""The demo dataset, built from the shipped CartPole policies (~10 s on 2 cores: marked slow)."""

from __future__ import annotations

import sys

import minari
import numpy as np
import pytest

from dtkit.collect import build_recipe


@pytest.mark.slow
def test_cartpole_demo_dataset():
    # The shipped folder is never written to: there is nothing to train, and pruning keeps what is there.
    (dataset_id,) = build_recipe("cartpole", progress=False)
    assert dataset_id == "dtkit/cartpole/mixed-v0"
    ds = minari.load_dataset(dataset_id)
    returns = np.array([ep.rewards.sum() for ep in ds.iterate_episodes()])
    meta = ds.storage.metadata
    assert returns.mean() <= 250  # return conditioning must have something to do
    assert 25 <= (returns == 500).sum() <= 40  # genuine full-length expert episodes
    assert 30_000 <= ds.total_steps <= 50_000
    tiers = {t["name"]: t for t in meta["dtkit"]["tiers"]}
    # the expert acts with 25% random actions: most episodes still reach 500, some slip
    assert tiers["expert"]["max_return"] == 500 and tiers["expert"]["mean_return"] >= 400
    assert 100 <= tiers["medium"]["mean_return"] <= 250
    assert tiers["random"]["mean_return"] < 40
    assert meta["ref_max_score"] == 500 and meta["ref_min_score"] < 40
    assert build_recipe("cartpole", progress=False) == [dataset_id]  # exists: returns at once
    assert "jax" not in sys.modules
