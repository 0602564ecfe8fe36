"""`dtkit datasets info` shows a card for any local Minari dataset, read from the data, not only recipe-made ones."""

from __future__ import annotations

from dtkit.cli import main


def test_info_card_for_a_dataset_no_recipe_made(make_dataset, capsys):
    dataset_id = make_dataset("CartPole-v1", n_episodes=3, dataset_id="someone/cartpole/random-v0")
    assert main(["datasets", "info", dataset_id]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# {dataset_id}") and "No dtkit recipe made this dataset" in out
    assert "environment: CartPole-v1" in out and "episodes: 3;" in out
    assert "ref_min_score 0, ref_max_score 100" in out


def test_info_for_an_unknown_id_still_says_so(capsys):
    assert main(["datasets", "info", "nobody/nothing-v0"]) == 2
    assert "no recipe makes dataset 'nobody/nothing-v0'" in capsys.readouterr().err
