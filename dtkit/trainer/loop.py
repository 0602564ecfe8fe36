"""The training loop: one readable function, with periodic evaluation and checkpoints."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from dtkit import __version__
from dtkit.data import SegmentSampler, Trajectories, load_trajectories, obs_statistics, spec_from_spaces
from dtkit.data.spaces import check_obs_arrays
from dtkit.encoders import EncoderConfig
from dtkit.encoders.choice import per_key_encoders
from dtkit.errors import DtkitError, TrainingInterrupted
from dtkit.gym_env import import_env_modules
from dtkit.io import atomic_write_json, remove_stale_staging, writable_dir_error
from dtkit.model import DecisionTransformer
from dtkit.policy import DTPolicy
from dtkit.rollout import EvalReport, evaluate
from dtkit.spec import Spec
from dtkit.trainer.checkpoint import read_latest_intact, save_checkpoint
from dtkit.trainer.checks import (FiniteLossWatch, check_context_len, check_encoder_outputs, check_json_params, check_resume_flags,
                                  check_settings, encoder_params, set_threads)
from dtkit.trainer.config import TrainConfig
from dtkit.trainer.distributed import autocast_dtype, broadcast_object, init_distributed

__all__ = ["train", "TrainResult", "build_spec", "check_config", "lr_factor"]


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path | None
    report: EvalReport | None
    final_loss: float
    steps: int


def check_config(cfg: TrainConfig) -> None:
    """Reject bad settings before any work starts, naming the flag to fix."""
    positive = {"steps": cfg.steps, "batch_size": cfg.batch_size, "eval_episodes": cfg.eval_episodes,
                "eval_envs": cfg.eval_envs, "log_every": cfg.log_every, "checkpoint_every": cfg.checkpoint_every}
    for name, v in positive.items():
        if v is None or v < 1:
            raise DtkitError(f"--{name.replace('_', '-')}={v} is invalid; use a positive integer")
    if cfg.context_len < 1:
        raise DtkitError(f"--context-len={cfg.context_len} is invalid; K must be >= 1 (the original DT uses K=20)")
    if not 0.0 < cfg.top_fraction <= 1.0:
        raise DtkitError(f"--top-fraction={cfg.top_fraction} is invalid; use a fraction in (0, 1], e.g. 0.1 for 10%BC")
    if cfg.lr is not None and not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise DtkitError(f"--lr={cfg.lr} is invalid; use a positive learning rate such as 1e-4")
    for t in cfg.target_returns:
        if not math.isfinite(t):
            raise DtkitError(f"target return {t!r} is not finite; pass finite numbers, e.g. --target-returns 500")
    check_settings(cfg)


def build_spec(cfg: TrainConfig, traj: Trajectories, obs_encoders: dict[str, EncoderConfig] | None = None) -> Spec:
    """Derive the spec from the data plus the config (derived values never go onto the config)."""
    if obs_encoders is None and (cfg.obs_encoder or cfg.encoder or cfg.encoder_params):
        base = {k: EncoderConfig(cfg.obs_encoder, encoder_params(cfg.obs_encoder_params)) for k in traj.obs} if cfg.obs_encoder else {}
        obs_encoders = {**base, **per_key_encoders(cfg.encoder, cfg.encoder_params, list(traj.obs))}
    for key, enc in (obs_encoders or {}).items():
        check_json_params(key, enc.params)
    scale = cfg.return_scale if cfg.return_scale is not None else float(max(1.0, np.abs(traj.episode_returns).max()))
    max_t = int(traj.episode_lengths.max())
    if traj.env_id is not None:
        import gymnasium as gym

        try:
            max_t = max(max_t, int(gym.spec(traj.env_id).max_episode_steps or 0))
        except gym.error.Error:
            pass
    layout = (("return",) if cfg.return_token else ()) + ("obs", "action") + (("reward",) if cfg.reward_token else ())
    return spec_from_spaces(traj.observation_space, traj.action_space, obs_encoders=obs_encoders, layout=layout,
                            context_len=cfg.context_len, max_timestep=max_t, return_scale=scale,
                            return_to_go_range=return_to_go_range(traj),
                            block_obs_attention=cfg.block_obs_attention, obs_order=tuple(cfg.obs_order) or None,
                            where=f"dataset {traj.dataset_id!r}")


def return_to_go_range(traj: Trajectories) -> tuple[float, float]:
    """The lowest and highest return-to-go in the training data: the range a policy clamps its return-to-go to."""
    return float(traj.returns_to_go.min()), float(traj.returns_to_go.max())


def _check_eval_env(cfg: TrainConfig, traj: Trajectories, spec: Spec) -> None:
    """Make the evaluation env once and check its spaces, so a run never trains for hours and then cannot evaluate."""
    from dtkit.data import check_env_spaces
    from dtkit.gym_env import make_env

    assert traj.env_id is not None
    try:
        env = make_env(traj.env_id, traj.env_spec)
    except DtkitError as exc:
        raise DtkitError(f"the evaluation env of dataset {traj.dataset_id!r} cannot be made, so training would end unable to "
                         f"evaluate: {exc}") from None
    try:
        check_env_spaces(spec, env.observation_space, env.action_space, traj.env_id, f"dataset {traj.dataset_id!r}",
                         metadata=env.metadata)
    finally:
        env.close()


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then constant (as in the original DT) or cosine decay to 0.1 at the last step.

    ``cfg`` is resolved first when its preset still has settings to fill (see :meth:`TrainConfig.resolved`).
    """
    if cfg.steps is None or cfg.warmup_steps is None or cfg.lr_schedule is None:
        cfg = cfg.resolved()
    assert cfg.steps is not None and cfg.warmup_steps is not None
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return 1.0
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def _interrupt_on_sigterm() -> None:
    """Treat SIGTERM (a scheduler's kill, a timeout) like Ctrl-C, so the run checkpoints before it exits."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        def handler(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, handler)


def _versions() -> dict[str, str]:
    import gymnasium
    import minari

    return {"dtkit": __version__, "torch": torch.__version__, "gymnasium": gymnasium.__version__, "minari": minari.__version__}


def _hparams_markdown(cfg: TrainConfig, spec: Spec) -> str:
    rows = [f"|{k}|{v}|" for k, v in cfg.to_dict().items()]
    rows += [f"|spec.{k}|{v}|" for k, v in spec.to_dict().items() if k != "obs"]
    return "|param|value|\n|-|-|\n" + "\n".join(rows)


def _default_run_dir(dataset: str) -> Path:
    return Path("runs") / f"{dataset.replace('/', '_')}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(cfg: TrainConfig, *, progress: bool = True, obs_encoders: dict[str, EncoderConfig] | None = None) -> TrainResult:
    """Train a decision transformer; returns the run folder, last checkpoint and final evaluation.

    Example:
        >>> result = train(TrainConfig(dataset="dtkit/cartpole/mixed-v0", steps=2000))  # doctest: +SKIP
        >>> result.report.mean_return  # doctest: +SKIP
    """
    cfg = cfg.resolved()  # the preset fills what the user left unset; the resolved config is what gets saved
    check_config(cfg)
    progress = progress and cfg.progress
    set_threads(cfg.threads)
    import_env_modules(cfg.env_module)  # first: such a module may register envs and encoders the spec names
    info = init_distributed(cfg.device)
    run_dir = Path(broadcast_object(cfg.run_dir or str(_default_run_dir(cfg.dataset)), info))
    cfg = replace(cfg, run_dir=str(run_dir))
    assert cfg.steps is not None and cfg.lr is not None and cfg.windows is not None  # resolved above
    problem = writable_dir_error(run_dir)
    if problem:
        raise DtkitError(f"--run-dir {str(run_dir)!r} cannot hold a run: {problem}; choose another --run-dir")
    traj = load_trajectories(cfg.dataset)
    if cfg.top_fraction < 1.0:
        traj = traj.top_episodes(cfg.top_fraction)

    start_step, trainer_state, saved_meta, folder, saved_weights = 0, None, None, None, None
    has_ckpt = (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").glob("step_*/meta.json"))
    if cfg.resume:
        if not has_ckpt:
            raise DtkitError(f"--resume was given but {str(run_dir)!r} holds no checkpoint; drop --resume or pass the run's --run-dir")
        folder, saved_meta, saved_weights, trainer_state = read_latest_intact(run_dir, info.device, with_trainer=True)
        start_step = int(saved_meta["step"])
        check_resume_flags(saved_meta["config"], cfg, str(folder))
    elif has_ckpt:
        raise DtkitError(f"run folder {str(run_dir)!r} already holds checkpoints; pass --resume to continue it or choose another --run-dir")

    spec = Spec.from_dict(saved_meta["spec"]) if saved_meta else build_spec(cfg, traj, obs_encoders)
    if spec.return_to_go_range is None:  # a run saved before the range was recorded: it only guards evaluation
        spec = replace(spec, return_to_go_range=return_to_go_range(traj))
    check_obs_arrays(spec, traj.obs, f"dataset {traj.dataset_id!r}")  # stored frames vs the encoders, before anything is written
    if saved_meta is None:
        check_context_len(cfg.context_len, spec.max_timestep, cfg.dataset)
    if traj.env_id is not None and info.is_main:
        _check_eval_env(cfg, traj, spec)  # before the first update, not after the last
    stats = saved_meta["obs_stats"] if saved_meta else obs_statistics(traj.obs, [f.key for f in spec.obs if f.normalize])
    targets = list(cfg.target_returns) or [float(traj.episode_returns.max())]
    meta = {
        "versions": _versions(), "config": cfg.to_dict(), "model": cfg.model.to_dict(), "spec": spec.to_dict(),
        "obs_stats": stats, "env_id": traj.env_id, "env_spec": traj.env_spec, "dataset_id": traj.dataset_id,
        "ref_min_score": traj.ref_min_score, "ref_max_score": traj.ref_max_score,
        "target_returns": targets, "dataset_mean_return": float(traj.episode_returns.mean()),
        "world_size": info.world_size,
    }

    torch.manual_seed(cfg.seed + info.rank)
    model = DecisionTransformer(spec, cfg.model, stats).to(info.device)
    check_encoder_outputs(model)
    if saved_weights is not None:  # resuming: the same checkpoint the trainer state came from
        model.load_state_dict(saved_weights)
    optimizer = model.configure_optimizer(cfg.lr, cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(cfg, s))
    sampler = SegmentSampler(traj, spec, cfg.batch_size, seed=cfg.seed + 1000 * info.rank, device=info.device,
                             windows=cfg.windows)
    if trainer_state is not None:
        optimizer.load_state_dict(trainer_state["optimizer"])
        scheduler.load_state_dict(trainer_state["scheduler"])
        rng = trainer_state["torch_rng"]
        if isinstance(rng, list):  # one state per rank, so ranks keep distinct dropout masks
            torch.set_rng_state(rng[info.rank] if info.rank < len(rng) else rng[0])
            if info.rank >= len(rng):  # more ranks than when saved: give the new ones streams of their own
                torch.manual_seed(cfg.seed + info.rank + 7919 * start_step)
        else:  # checkpoints before per-rank states held rank 0's only
            torch.set_rng_state(rng)
            if info.rank > 0:
                torch.manual_seed(cfg.seed + info.rank + 7919 * start_step)
        sampler.load_state_dict(json.loads(trainer_state["sampler"][info.rank if info.rank < len(trainer_state["sampler"]) else 0]))
    net: torch.nn.Module = DDP(model) if info.enabled else model
    amp_dtype = autocast_dtype(cfg.amp, info.device)

    writer = None
    if info.is_main:
        from torch.utils.tensorboard import SummaryWriter

        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in remove_stale_staging(run_dir / "checkpoints"):
            print(f"dtkit: removed {stale}, left by a checkpoint write that was killed", file=sys.stderr)
        writer = SummaryWriter(str(run_dir / "tb"))
        writer.add_text("hyperparameters", _hparams_markdown(cfg, spec), start_step)

    def trainer_snapshot() -> dict[str, Any]:
        states, rngs = [json.dumps(sampler.state_dict())], [torch.get_rng_state()]
        if info.enabled:
            gathered: list[Any] = [None] * info.world_size
            dist.all_gather_object(gathered, states[0])
            states = gathered
            gathered_rng: list[Any] = [None] * info.world_size
            dist.all_gather_object(gathered_rng, rngs[0])
            rngs = gathered_rng
        return {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": rngs, "sampler": states}

    watch = FiniteLossWatch(info.device, distributed=info.enabled)
    watch.last_good = folder  # the checkpoint a resumed run started from, if any

    def all_ranks_max(t: torch.Tensor) -> torch.Tensor:
        if info.enabled:
            t = t.clone()
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t

    def checkpoint(step: int) -> Path | None:
        watch.check(reduce=all_ranks_max)  # collective; a non-finite run never writes a checkpoint
        snap = trainer_snapshot()  # collective: every rank joins
        saved = save_checkpoint(run_dir, step, model, meta, snap) if info.is_main else None
        watch.last_good = saved or watch.last_good
        return saved

    def run_eval(step: int) -> EvalReport:
        assert writer is not None and traj.env_id is not None  # rank 0, with an environment
        model.eval()
        policy = DTPolicy(model, num_envs=cfg.eval_envs, device=info.device)
        report = evaluate(policy, traj.env_id, targets, cfg.eval_episodes, seed=cfg.seed,
                          ref_min_score=traj.ref_min_score, ref_max_score=traj.ref_max_score, progress=progress,
                          recorded_spec=traj.env_spec)
        model.train()
        for r in report.per_target:
            writer.add_scalar(f"eval/return_target_{r.target_return:g}", r.mean_return, step)
            if r.normalized_score is not None:
                writer.add_scalar(f"eval/normalized_score_target_{r.target_return:g}", r.normalized_score, step)
        writer.add_scalar("eval/env_steps_per_s", report.env_steps_per_s, step)
        # One JSON line per evaluation, so best-iterate scores can be read back without TensorBoard.
        with open(run_dir / "eval_history.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "seed": cfg.seed, "per_target": [
                {"target_return": r.target_return, "mean_return": r.mean_return, "normalized_score": r.normalized_score}
                for r in report.per_target]}) + "\n")
        return report

    if traj.env_id is None and info.is_main:
        print("note: the dataset records no environment id, so no evaluation will run")
    _interrupt_on_sigterm()
    model.train()
    step, loss_val, last_ckpt, report = start_step, float("nan"), None, None
    bar = tqdm(total=cfg.steps, initial=start_step, desc="train", disable=not (progress and info.is_main), dynamic_ncols=True)
    t_log = time.perf_counter()
    try:
        while step < cfg.steps:
            batch = sampler.sample()
            with torch.autocast(info.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                pred, _ = net(batch)
            loss = model.head.loss(pred, batch.actions, batch.mask)
            optimizer.zero_grad(set_to_none=True)
            watch.update(loss, step + 1)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                watch.check(reduce=all_ranks_max)
                loss_val = float(loss.detach())
                now = time.perf_counter()
                if writer is not None:
                    writer.add_scalar("losses/action", loss_val, step)
                    writer.add_scalar("charts/lr", scheduler.get_last_lr()[0], step)
                    writer.add_scalar("charts/grad_norm", float(grad_norm), step)
                    writer.add_scalar("charts/step_ms", 1000 * (now - t_log) / cfg.log_every, step)
                t_log = now
                bar.set_postfix(loss=f"{loss_val:.4f}")
            if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                last_ckpt = checkpoint(step) or last_ckpt
            if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps and info.is_main and traj.env_id:
                run_eval(step)
    except KeyboardInterrupt:
        bar.close()
        if step > start_step:
            saved = checkpoint(step)
            raise TrainingInterrupted(f"interrupted at step {step}; checkpoint saved at {saved}; "
                                      f"continue with --resume --run-dir {run_dir}", str(saved)) from None
        raise
    bar.close()
    if step > start_step or last_ckpt is None:
        last_ckpt = checkpoint(step) or last_ckpt
    if info.is_main and traj.env_id:
        report = run_eval(step)
        report.checkpoint, report.dataset_id = str(last_ckpt), traj.dataset_id
        atomic_write_json(run_dir / "eval.json", report.to_dict())
    if writer is not None:
        writer.close()
    if info.enabled:
        dist.barrier()
    return TrainResult(run_dir=run_dir, checkpoint=last_ckpt, report=report, final_loss=loss_val, steps=step)
