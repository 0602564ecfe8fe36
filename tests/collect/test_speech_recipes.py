"""Speech recipes: a tiny spoken-goal dataset built with the recipe command, trained and evaluated end to end."""

from __future__ import annotations

from dataclasses import replace

import minari
import numpy as np
import pytest

from dtkit.collect import build_recipe, load_recipe
from dtkit.errors import DtkitError


@pytest.mark.parametrize("name", ["spoken_goal", "spoken_goal_memory", "spoken_goto"])
def test_speech_recipes_are_scripted(name):
    recipe = load_recipe(name)
    assert recipe.scripted and recipe.env_id.startswith("dtkit/Spoken")


def test_tiny_spoken_goal_built_trained_and_evaluated(tmp_path):
    from dtkit.api import make_policy
    from dtkit.model import ModelConfig
    from dtkit.rollout import evaluate
    from dtkit.trainer import TrainConfig, train

    ids = build_recipe("spoken_goal", tiny=True, progress=False)
    ds = minari.load_dataset(ids[0])
    audio = next(iter(ds.iterate_episodes())).observations["audio"]
    assert audio.dtype == np.int16 and audio.shape[1] == 9600 and audio.any()  # stored compactly, as synthesised

    cfg = TrainConfig(dataset=ids[0], run_dir=str(tmp_path / "run"), steps=4, batch_size=4, context_len=4,
                      target_returns=(1.0,), eval_episodes=2, eval_envs=2, checkpoint_every=4, progress=False,
                      model=ModelConfig(d_model=16, n_layer=1, n_head=1), obs_order=("audio", "state"))
    # The audio key cannot carry the readout: refused before anything is written.
    with pytest.raises(DtkitError, match="never be masked"):
        train(replace(cfg, obs_order=("state", "audio"), run_dir=str(tmp_path / "bad")), progress=False)
    assert not (tmp_path / "bad" / "checkpoints").exists()
    result = train(cfg, progress=False)
    assert result.steps == 4 and np.isfinite(result.final_loss)
    policy = make_policy(result.run_dir, num_envs=2, target_return=1.0, env_id="dtkit/SpokenGoal-v0")
    assert [(f.key, f.encoder.type, f.maskable) for f in policy.spec.obs] == [("audio", "audio_conv", True), ("state", "mlp", False)]
    report = evaluate(policy, "dtkit/SpokenGoal-v0", [1.0], num_episodes=2, env_kwargs={"voices": "heldout"}, progress=False)
    assert len(report.episode_returns) == 2 and set(report.episode_returns) <= {0.0, 1.0}
