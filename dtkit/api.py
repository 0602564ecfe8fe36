"""The Python API behind each CLI command: evaluate a checkpoint, run the demo, make a policy."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from dtkit.errors import DtkitError
from dtkit.io import atomic_write_json, writable_dir_error
from dtkit.model import ModelConfig
from dtkit.policy import DTPolicy
from dtkit.rollout import EvalReport, evaluate
from dtkit.rollout.evaluate import EnvSource
from dtkit.trainer import Checkpoint, TrainConfig, load_checkpoint, train

__all__ = ["EvalConfig", "DemoConfig", "make_policy", "run_eval", "run_demo"]


@dataclass(frozen=True)
class EvalConfig:
    """Evaluate a checkpoint in its Gymnasium environment and write a report beside it.

    The report goes to eval_<step folder>_seed<seed>.json in the run folder, so it never
    overwrites the eval.json that training wrote; both record the env seed they used.
    """

    checkpoint: str
    """A run folder (its latest checkpoint) or a checkpoints/step_* folder."""
    env_id: str | None = None
    """Environment to evaluate in (default: the one the dataset was collected in, remade from its recorded spec).
    gymnasium's 'module:Env-v0' form imports the module first."""
    env_module: tuple[str, ...] = ()
    """Modules imported first, e.g. yours that calls gymnasium.register or @register_encoder (as given to train)."""
    target_returns: tuple[float, ...] = ()
    """Returns to condition on (default: those stored with the checkpoint)."""
    episodes: int = 10
    """Episodes per target return."""
    num_envs: int = 10
    """Environments stepped together, one batched forward pass per step."""
    seed: int | None = None
    """Seed for the environments' resets (default: the training seed, as training's own evaluation used)."""
    no_cache: bool = False
    """Recompute the whole context every step instead of using the exact KV cache."""
    keep: int | None = None
    """Steps kept when a full cache is rebuilt (default K // 2): contexts span keep + 1 .. K steps."""
    no_clamp_return_to_go: bool = False
    """Feed the model the raw return-to-go even where it leaves the training data's range (default: clamped to it)."""
    out: str | None = None
    """Where to write the report (default: eval_<step folder>_seed<seed>.json in the run folder)."""
    device: str = "cpu"
    """'cpu' or 'cuda[:N]'."""
    env_backend: str = "sync"
    """Engine stepping the envs: sync (gymnasium SyncVectorEnv), async (AsyncVectorEnv, a process per env) or
    envpool (optional extra, `pip install envpool`; its own MuJoCo/Atari builds, so gymnasium stays the scorer of record)."""
    cuda_graph: bool = False
    """On CUDA: replay the cached step as one CUDA graph per batch size instead of launching its kernels one by one."""
    split_targets: bool = False
    """Run all targets at once, each on its share of the --num-envs envs (one pass), instead of one after the other."""
    threads: int | None = None
    """torch threads (default: torch's choice; on a busy machine fewer is often faster)."""
    video: bool = False
    """Film the first episode of env 0 per target: GIFs in <run>/videos/ and in the run's TensorBoard (eval/video_*)."""
    progress: bool = True
    """Show a progress bar."""


@dataclass(frozen=True)
class DemoConfig:
    """Build a mixed-quality CartPole-v1 dataset, train a DT on it, evaluate at return 500."""

    run_dir: str | None = None
    """Run folder (default: runs/demo-<time>)."""
    steps: int = 6_000
    """Gradient updates."""
    target_return: float = 500.0
    """Return to condition on when evaluating."""
    episodes: int = 20
    """Evaluation episodes."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        # A smaller trunk than the original DT's: CartPole needs little, and the demo must stay quick on 2 cores.
        model=ModelConfig(d_model=64, n_layer=2, n_head=1, dropout=0.1),
        context_len=10, batch_size=64, lr=6e-4, lr_schedule="cosine", warmup_steps=200, log_every=100,
        checkpoint_every=1_000, eval_envs=10,
    ))
    """Training settings (the dataset, steps, run folder and targets above take precedence)."""
    progress: bool = True
    """Show progress bars."""


def make_policy(checkpoint: str | Path | Checkpoint, num_envs: int = 1, target_return: float | None = None, *,
                env_id: str | None = None, use_cache: bool = True, keep: int | None = None, device: str = "cpu",
                cuda_graph: bool = False, clamp_return_to_go: bool = True) -> DTPolicy:
    """A :class:`DTPolicy` from a checkpoint, checked against the environment's spaces.

    Example:
        >>> policy = make_policy("runs/demo", num_envs=1, target_return=500)  # doctest: +SKIP
        >>> policy.reset(); policy.act(obs[None])  # doctest: +SKIP
    """
    from dtkit.data import check_env_spaces
    from dtkit.gym_env import make_env
    from dtkit.trainer.checks import check_device

    check_device(device)
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint, device=device)
    env_id = env_id or ckpt.env_id
    if env_id is None:
        raise DtkitError(f"checkpoint {ckpt.path} records no environment id; pass env_id (--env-id)")
    env = make_env(env_id, ckpt.meta.get("env_spec"))
    try:
        check_env_spaces(ckpt.spec, env.observation_space, env.action_space, env_id, f"checkpoint {ckpt.path}",
                         metadata=env.metadata)
    finally:
        env.close()
    if target_return is None:
        target_return = float(ckpt.meta.get("target_returns", [0.0])[0])
    return DTPolicy(ckpt.model, num_envs=num_envs, target_return=target_return, use_cache=use_cache, keep=keep, device=device,
                    cuda_graph=cuda_graph, clamp_return_to_go=clamp_return_to_go)


def run_eval(cfg: EvalConfig) -> EvalReport:
    """Evaluate ``cfg.checkpoint`` and write ``eval.json`` atomically; returns the report."""
    from dtkit.gym_env import import_env_modules
    from dtkit.trainer.checks import check_device, set_threads

    set_threads(cfg.threads)
    check_device(cfg.device)
    for name, v in (("episodes", cfg.episodes), ("num_envs", cfg.num_envs)):
        if v < 1:
            raise DtkitError(f"--{name.replace('_', '-')}={v} is invalid; use a positive integer")
    if cfg.seed is not None and cfg.seed < 0:
        raise DtkitError(f"--seed={cfg.seed} is invalid; use an integer >= 0")
    from dtkit.rollout.backends import ENV_BACKENDS

    if cfg.env_backend not in ENV_BACKENDS:
        raise DtkitError(f"--env-backend {cfg.env_backend!r} is unknown; use one of {', '.join(ENV_BACKENDS)}")
    import_env_modules(cfg.env_module)
    ckpt = load_checkpoint(cfg.checkpoint, device=cfg.device)
    targets = list(cfg.target_returns) or list(ckpt.meta.get("target_returns", []))
    policy = make_policy(ckpt, cfg.num_envs, targets[0] if targets else None, env_id=cfg.env_id,
                         use_cache=not cfg.no_cache, keep=cfg.keep, device=cfg.device, cuda_graph=cfg.cuda_graph,
                         clamp_return_to_go=not cfg.no_clamp_return_to_go)
    env_id = cfg.env_id or ckpt.env_id
    assert env_id is not None  # make_policy raised otherwise
    seed = cfg.seed if cfg.seed is not None else int(ckpt.meta.get("config", {}).get("seed", 0))
    # Never training's eval.json: a report names the checkpoint and seed it came from. Checked before the rollouts.
    out = Path(cfg.out) if cfg.out else ckpt.path.parent.parent / f"eval_{ckpt.path.name}_seed{seed}.json"
    problem = writable_dir_error(out.parent)
    if problem or out.is_dir():
        raise DtkitError(f"--out {str(out)!r} cannot be written: {problem or 'it is a folder'}; choose another path")
    envs: EnvSource = env_id
    writer = None
    if cfg.video:
        from dtkit.rollout.video import video_env

        envs, writer = video_env(env_id, cfg.num_envs, targets, ckpt.path.parent.parent, recorded_spec=ckpt.meta.get("env_spec"),
                                 step=int(ckpt.meta.get("step", 0)))
    report = evaluate(policy, envs, targets, cfg.episodes, seed=seed, ref_min_score=ckpt.meta.get("ref_min_score"),
                      ref_max_score=ckpt.meta.get("ref_max_score"), progress=cfg.progress,
                      recorded_spec=ckpt.meta.get("env_spec"), env_backend=cfg.env_backend,
                      split_targets=cfg.split_targets)
    if writer is not None:
        writer.close()
    report.checkpoint, report.dataset_id = str(ckpt.path), ckpt.meta.get("dataset_id")
    atomic_write_json(out, report.to_dict())
    return report


def run_demo(cfg: DemoConfig) -> dict:
    """The whole path on CartPole-v1: dataset -> training -> evaluation. Returns the summary it prints."""
    from dtkit.collect import build_recipe
    from dtkit.data import load_trajectories

    from dtkit.trainer.loop import check_config

    start = time.perf_counter()
    run_dir = cfg.run_dir or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}"
    tcfg = replace(cfg.train, steps=cfg.steps, run_dir=run_dir, target_returns=(cfg.target_return,), eval_episodes=cfg.episodes)
    check_config(tcfg.resolved())  # a bad setting fails now, not after minutes of building the dataset
    (dataset_id,) = build_recipe("cartpole", progress=cfg.progress)
    traj = load_trajectories(dataset_id)
    tcfg = replace(tcfg, dataset=dataset_id)
    result = train(tcfg, progress=cfg.progress)
    report = result.report
    full = int((traj.episode_lengths >= 500).sum())
    summary = {
        "dataset_id": dataset_id,
        "dataset_episodes": traj.num_episodes,
        "dataset_full_length_episodes": full,
        "dataset_mean_return": float(traj.episode_returns.mean()),
        "target_return": cfg.target_return,
        "dt_mean_return": report.mean_return if report else None,
        "dt_episode_returns": report.episode_returns if report else None,
        "run_dir": str(result.run_dir),
        "wall_s": time.perf_counter() - start,
    }
    print(
        f"\ndtkit demo: {dataset_id}\n"
        f"  dataset: {traj.num_episodes} episodes ({full} of full length 500), mean return {summary['dataset_mean_return']:.1f}\n"
        f"  decision transformer at target {cfg.target_return:g}: mean return {summary['dt_mean_return']:.1f} "
        f"over {cfg.episodes} episodes\n"
        f"  run folder: {result.run_dir} (checkpoints/, tb/, eval.json)\n"
        f"  TensorBoard: tensorboard --logdir {result.run_dir / 'tb'}\n"
        f"  took {summary['wall_s']:.0f} s"
    )
    return summary
