"""A card for any local Minari dataset, read from the data itself (for datasets no dtkit recipe made)."""

from __future__ import annotations

import numpy as np

from dtkit.data.trajectories import load_trajectories

__all__ = ["dataset_card_text"]


def dataset_card_text(dataset_id: str) -> str:
    """Markdown: where the data came from, its spaces, and episode, length and return statistics.

    Example:
        >>> print(dataset_card_text("D4RL/door/human-v2"))  # doctest: +SKIP
    """
    import minari

    traj = load_trajectories(dataset_id)
    meta = minari.load_dataset(dataset_id).storage.metadata
    ret, lens = traj.episode_returns, traj.episode_lengths

    def stats(x: np.ndarray) -> str:
        return f"mean {x.mean():.2f}, std {x.std():.2f}, min {x.min():.2f}, max {x.max():.2f}"

    refs = (f"ref_min_score {traj.ref_min_score:g}, ref_max_score {traj.ref_max_score:g}"
            if traj.ref_min_score is not None and traj.ref_max_score is not None
            else "none recorded (normalised scores will be null)")
    lines = [
        f"# {dataset_id}", "",
        "No dtkit recipe made this dataset; this card is read from the data.", "",
        f"- environment: {traj.env_id or 'not recorded'}",
        f"- algorithm: {meta.get('algorithm_name', 'not recorded')}; author: {meta.get('author', 'not recorded')}",
        f"- observation space: {traj.observation_space}",
        f"- action space: {traj.action_space}",
        f"- episodes: {traj.num_episodes:,}; steps: {traj.num_steps:,}",
        f"- episode length: {stats(lens.astype(np.float64))}",
        f"- episode return: {stats(ret)}",
        f"- reference scores: {refs}",
    ]
    if meta.get("description"):
        lines += ["", str(meta["description"]).strip()]
    return "\n".join(lines) + "\n"
