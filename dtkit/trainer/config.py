"""Training configuration: a frozen dataclass whose field docstrings are the ``--help`` text."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from dtkit.model.config import ModelConfig

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """Train a decision transformer on a local Minari dataset."""

    dataset: str = "dtkit/cartpole/mixed-v0"
    """Minari dataset id (under MINARI_DATASETS_PATH)."""
    run_dir: str | None = None
    """Where checkpoints, TensorBoard logs and eval.json go (default: runs/<dataset>-<time>)."""
    steps: int = 10_000
    """Gradient updates in total (the original DT uses 100k for MuJoCo)."""
    batch_size: int = 64
    """Windows per update, per process."""
    context_len: int = 20
    """K: steps per training window and the most the policy attends over."""
    lr: float = 1e-4
    """Peak learning rate (Chen et al., 2021)."""
    weight_decay: float = 1e-4
    """AdamW decay, applied to weight matrices only."""
    warmup_steps: int = 1_000
    """Linear learning-rate warm-up."""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """After warm-up: constant (the original DT) or cosine decay to 10% of lr at the last step."""
    grad_clip: float = 0.25
    """Gradient-norm clip (Chen et al., 2021)."""
    seed: int = 0
    """Seed for sampling, initialisation and evaluation."""
    amp: Literal["auto", "bf16", "fp32"] = "auto"
    """Autocast precision: 'auto' picks bf16 on GPUs and on CPUs with native bf16 (AVX512-BF16/AMX), else fp32."""
    device: str = "auto"
    """'auto', 'cpu' or 'cuda[:N]'."""
    return_scale: float | None = None
    """Returns-to-go are divided by this (default: the dataset's largest |episode return|)."""
    return_token: bool = True
    """Condition on return-to-go; without it the same trunk is plain behaviour cloning (BC)."""
    reward_token: bool = False
    """Add a reward token after the action in each step."""
    top_fraction: float = 1.0
    """Train on this fraction of episodes, best returns first (%BC in Chen et al., 2021; 1.0 = all)."""
    block_obs_attention: bool = True
    """Let tokens of one observation attend to each other."""
    obs_encoder: str | None = None
    """Encoder for every observation key: a registered name, 'pkg.mod:Class', or an entry point."""
    obs_encoder_params: str = "{}"
    """Keyword params for the observation encoder, as a JSON object, e.g. '{"hidden": 256}'."""
    log_every: int = 100
    """Steps between TensorBoard scalars."""
    eval_every: int = 0
    """Steps between evaluations during training (0: only at the end)."""
    eval_episodes: int = 10
    """Episodes per target return at each evaluation."""
    eval_envs: int = 10
    """Vectorised environments used for evaluation."""
    target_returns: tuple[float, ...] = ()
    """Returns to condition on when evaluating (default: the dataset's best episode return)."""
    checkpoint_every: int = 1_000
    """Steps between checkpoints (the last two are kept)."""
    resume: bool = False
    """Continue from the latest checkpoint in run_dir."""
    progress: bool = True
    """Show progress bars (rank 0 only)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Trunk size."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        d["model"] = ModelConfig.from_dict(d.get("model", {}))
        d["target_returns"] = tuple(d.get("target_returns", ()))
        return cls(**d)
