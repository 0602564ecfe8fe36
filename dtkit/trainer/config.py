"""Training configuration: a frozen dataclass whose field docstrings are the ``--help`` text."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from dtkit.errors import DtkitError
from dtkit.model.config import ModelConfig

SAVED_BEFORE_THE_CHOICE: dict[str, Any] = {"windows": "start"}
"""What a config saved before a setting existed was trained with: runs before --windows had start windows."""

__all__ = ["PRESETS", "SAVED_BEFORE_THE_CHOICE", "Preset", "TrainConfig"]


@dataclass(frozen=True)
class Preset:
    """Values for the TrainConfig settings a user leaves unset."""

    steps: int
    lr: float
    lr_schedule: Literal["constant", "cosine"]
    warmup_steps: int | None = None
    """A fixed warm-up; None means ``warmup_fraction`` of the steps."""
    warmup_fraction: float = 0.1
    return_scale: float | None = None
    """None: the dataset's largest |episode return| (derived from the data, saved in the spec)."""
    windows: Literal["cover", "start", "center", "end"] = "cover"
    """Where training windows sit around their drawn steps (see TrainConfig.windows)."""


PRESETS: dict[str, Preset] = {
    # Measured (issue 9; README, "Defaults"): at 2-3k updates, lr 6e-4 with a 10% warm-up and cosine decay scored 72.6 on
    # InvertedDoublePendulum and 29.9 / 111.3 on hopper medium-replay / medium-expert, where the paper's schedule,
    # still warming up when the run ends, scored 8.5 and 52.0 on the former.
    "budget": Preset(steps=10_000, lr=6e-4, lr_schedule="cosine", warmup_fraction=0.1),
    # Chen et al. (2021), Table 8 (MuJoCo): lr 1e-4, linear warm-up over 10k updates, then constant; returns / 1000.
    # Its windows start at a drawn step (Chen et al.'s code pads the episode's end; dtkit's "start" moves back instead).
    "paper": Preset(steps=100_000, lr=1e-4, lr_schedule="constant", warmup_steps=10_000, return_scale=1000.0,
                    windows="start"),
}


@dataclass(frozen=True)
class TrainConfig:
    """Train a decision transformer on a local Minari dataset.

    How to choose: give --dataset and --steps and leave the rest. The default
    preset ('budget') scales the schedule with --steps (warm-up 10% of the steps,
    then cosine decay) at lr 6e-4, which learns in a few thousand updates; the
    paper's schedule (lr 1e-4, 10k-step warm-up, constant; made for 100k
    updates) is --preset paper. A flag you give always wins over the preset.
    """

    dataset: str = "dtkit/cartpole/mixed-v0"
    """Minari dataset id (under MINARI_DATASETS_PATH)."""
    run_dir: str | None = None
    """Where checkpoints, TensorBoard logs and eval.json go (default: runs/<dataset>-<time>)."""
    preset: Literal["budget", "paper"] = "budget"
    """Fills the settings left unset. budget: 10k steps, lr 6e-4, warm-up 10% of the steps, cosine. paper: Chen et al.'s MuJoCo schedule."""
    steps: int | None = None
    """Gradient updates in total (default: 10k; 100k under --preset paper)."""
    batch_size: int = 64
    """Windows per update, per process."""
    context_len: int = 20
    """K: steps per training window and the most the policy attends over."""
    windows: Literal["cover", "start", "center", "end"] | None = None
    """Where a training window sits around the step drawn for it (default: cover; start under --preset paper).
    cover: the window's start is drawn over every K-step window overlapping the episode, so its first and last steps
    are trained as often as its middle; start: the window starts at the step (moved back at an episode's end), so an
    episode's first step is trained 1/K as often as its middle (the original DT's); center: at a random position,
    first and last steps about half as often; end: d3rlpy's, the last step 1/K as often. README, "Training
    defaults", has what each did on five tasks."""
    lr: float | None = None
    """Peak learning rate (default: 6e-4; 1e-4 under --preset paper, as in Chen et al., 2021)."""
    weight_decay: float = 1e-4
    """AdamW decay, applied to weight matrices only."""
    warmup_steps: int | None = None
    """Linear learning-rate warm-up (default: 10% of --steps; 10k under --preset paper)."""
    lr_schedule: Literal["constant", "cosine"] | None = None
    """After warm-up: cosine decay to 10% of lr at the last step (default) or constant (--preset paper, the original DT)."""
    grad_clip: float = 0.25
    """Gradient-norm clip (Chen et al., 2021)."""
    seed: int = 0
    """Seed for sampling, initialisation and evaluation."""
    amp: Literal["auto", "bf16", "fp32"] = "auto"
    """Autocast precision: 'auto' picks bf16 on GPUs and on CPUs with native bf16 (AVX512-BF16/AMX), else fp32."""
    device: str = "auto"
    """'auto', 'cpu' or 'cuda[:N]'."""
    return_scale: float | None = None
    """Returns-to-go are divided by this (default: the dataset's largest |episode return|; 1000 under --preset paper)."""
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
    encoder: tuple[str, ...] = ()
    """Encoder per observation key as KEY=NAME, e.g. --encoder image=patch state=mlp (wins over --obs-encoder for
    that key; keys left out get --obs-encoder, else their modality's default: cnn for images, mlp for vectors)."""
    encoder_params: tuple[str, ...] = ()
    """Params per observation key as KEY=JSON, e.g. --encoder-params image='{"patch": 8}' (the key needs --encoder)."""
    obs_order: tuple[str, ...] = ()
    """Order of the observation keys' tokens within a step, e.g. --obs-order audio image (default: fields that can be
    absent, such as audio, first, then the rest; the last key carries the action readout and is never masked)."""
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
    threads: int | None = None
    """torch threads for training and evaluation (default: torch's choice; on a busy machine fewer is often faster)."""
    env_module: tuple[str, ...] = ()
    """Modules imported before anything else, e.g. yours that calls gymnasium.register or @register_encoder."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Trunk size."""

    def resolved(self) -> TrainConfig:
        """This config with every setting the preset fills made concrete (what a run uses and saves).

        Example:
            >>> TrainConfig(steps=2000).resolved().warmup_steps
            200
        """
        if self.preset not in PRESETS:
            raise DtkitError(f"--preset {self.preset!r} is unknown; choose one of {sorted(PRESETS)}")
        preset = PRESETS[self.preset]
        steps = self.steps if self.steps is not None else preset.steps
        if self.warmup_steps is not None:
            warmup = self.warmup_steps
        elif preset.warmup_steps is not None:
            warmup = preset.warmup_steps
        else:  # a fixed warm-up would eat short runs whole; a fraction keeps the same shape at any budget
            warmup = max(1, round(preset.warmup_fraction * steps))
        return dataclasses.replace(
            self, steps=steps, warmup_steps=warmup,
            lr=self.lr if self.lr is not None else preset.lr,
            lr_schedule=self.lr_schedule if self.lr_schedule is not None else preset.lr_schedule,
            return_scale=self.return_scale if self.return_scale is not None else preset.return_scale,
            windows=self.windows if self.windows is not None else preset.windows)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        d["model"] = ModelConfig.from_dict(d.get("model", {}))
        d["target_returns"] = tuple(d.get("target_returns", ()))
        d["env_module"] = tuple(d.get("env_module", ()))
        d["obs_order"] = tuple(d.get("obs_order", ()))  # absent from configs saved before key order existed
        d["encoder"] = tuple(d.get("encoder", ()))  # absent from configs saved before per-key encoders
        d["encoder_params"] = tuple(d.get("encoder_params", ()))
        d = {**SAVED_BEFORE_THE_CHOICE, **d}
        return cls(**d)
