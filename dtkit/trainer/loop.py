"""The training loop: one readable function, with periodic evaluation and checkpoints."""

from __future__ import annotations

import json
import math
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
from dtkit.encoders import EncoderConfig
from dtkit.errors import DtkitError, TrainingInterrupted
from dtkit.io import atomic_write_json
from dtkit.model import DecisionTransformer
from dtkit.policy import DTPolicy
from dtkit.rollout import EvalReport, evaluate
from dtkit.spec import Spec
from dtkit.trainer.checkpoint import find_checkpoint, load_trainer_state, save_checkpoint
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
        if v < 1:
            raise DtkitError(f"--{name.replace('_', '-')}={v} is invalid; use a positive integer")
    if cfg.context_len < 1:
        raise DtkitError(f"--context-len={cfg.context_len} is invalid; K must be >= 1 (the original DT uses K=20)")
    if not 0.0 < cfg.top_fraction <= 1.0:
        raise DtkitError(f"--top-fraction={cfg.top_fraction} is invalid; use a fraction in (0, 1], e.g. 0.1 for 10%BC")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise DtkitError(f"--lr={cfg.lr} is invalid; use a positive learning rate such as 1e-4")
    for t in cfg.target_returns:
        if not math.isfinite(t):
            raise DtkitError(f"target return {t!r} is not finite; pass finite numbers, e.g. --target-returns 500")


def build_spec(cfg: TrainConfig, traj: Trajectories, obs_encoders: dict[str, EncoderConfig] | None = None) -> Spec:
    """Derive the spec from the data plus the config (derived values never go onto the config)."""
    if obs_encoders is None and cfg.obs_encoder:
        try:
            params = json.loads(cfg.obs_encoder_params)
        except json.JSONDecodeError as exc:
            raise DtkitError(f"--obs-encoder-params {cfg.obs_encoder_params!r} is not valid JSON ({exc}); write e.g. '{{\"hidden\": 256}}'") from None
        if not isinstance(params, dict):
            raise DtkitError(f"--obs-encoder-params must be a JSON object, got {cfg.obs_encoder_params!r}")
        obs_encoders = {k: EncoderConfig(cfg.obs_encoder, params) for k in traj.obs}
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
                            block_obs_attention=cfg.block_obs_attention, where=f"dataset {traj.dataset_id!r}")


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then constant (as in the original DT) or cosine decay to 0.1."""
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
    check_config(cfg)
    progress = progress and cfg.progress
    info = init_distributed(cfg.device)
    traj = load_trajectories(cfg.dataset)
    if cfg.top_fraction < 1.0:
        traj = traj.top_episodes(cfg.top_fraction)
    run_dir = Path(broadcast_object(cfg.run_dir or str(_default_run_dir(cfg.dataset)), info))
    cfg = replace(cfg, run_dir=str(run_dir))

    start_step, trainer_state, saved_meta, folder = 0, None, None, None
    has_ckpt = (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").glob("step_*/meta.json"))
    if cfg.resume:
        if not has_ckpt:
            raise DtkitError(f"--resume was given but {str(run_dir)!r} holds no checkpoint; drop --resume or pass the run's --run-dir")
        folder = find_checkpoint(run_dir)
        saved_meta = json.loads((folder / "meta.json").read_text())
        trainer_state = load_trainer_state(folder)
        start_step = int(saved_meta["step"])
        if saved_meta["config"]["model"] != cfg.model.to_dict() or saved_meta["config"]["dataset"] != cfg.dataset:
            raise DtkitError(f"--resume: {folder} was trained with a different dataset or model config; resume with the same flags")
    elif has_ckpt:
        raise DtkitError(f"run folder {str(run_dir)!r} already holds checkpoints; pass --resume to continue it or choose another --run-dir")

    spec = Spec.from_dict(saved_meta["spec"]) if saved_meta else build_spec(cfg, traj, obs_encoders)
    stats = saved_meta["obs_stats"] if saved_meta else obs_statistics(traj.obs, [f.key for f in spec.obs if f.normalize])
    targets = list(cfg.target_returns) or [float(traj.episode_returns.max())]
    meta = {
        "versions": _versions(), "config": cfg.to_dict(), "model": cfg.model.to_dict(), "spec": spec.to_dict(),
        "obs_stats": stats, "env_id": traj.env_id, "dataset_id": traj.dataset_id,
        "ref_min_score": traj.ref_min_score, "ref_max_score": traj.ref_max_score,
        "target_returns": targets, "dataset_mean_return": float(traj.episode_returns.mean()),
        "world_size": info.world_size,
    }

    torch.manual_seed(cfg.seed + info.rank)
    model = DecisionTransformer(spec, cfg.model, stats).to(info.device)
    if folder is not None:  # resuming: the same checkpoint the trainer state came from
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(folder / "model.safetensors"), device=str(info.device)))
    optimizer = model.configure_optimizer(cfg.lr, cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(cfg, s))
    sampler = SegmentSampler(traj, spec, cfg.batch_size, seed=cfg.seed + 1000 * info.rank, device=info.device)
    if trainer_state is not None:
        optimizer.load_state_dict(trainer_state["optimizer"])
        scheduler.load_state_dict(trainer_state["scheduler"])
        torch.set_rng_state(trainer_state["torch_rng"])
        sampler.load_state_dict(json.loads(trainer_state["sampler"][info.rank if info.rank < len(trainer_state["sampler"]) else 0]))
    net: torch.nn.Module = DDP(model) if info.enabled else model
    amp_dtype = autocast_dtype(cfg.amp, info.device)

    writer = None
    if info.is_main:
        from torch.utils.tensorboard import SummaryWriter

        run_dir.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(str(run_dir / "tb"))
        writer.add_text("hyperparameters", _hparams_markdown(cfg, spec), start_step)

    def trainer_snapshot() -> dict[str, Any]:
        states = [json.dumps(sampler.state_dict())]
        if info.enabled:
            gathered: list[Any] = [None] * info.world_size
            dist.all_gather_object(gathered, states[0])
            states = gathered
        return {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(), "sampler": states}

    def checkpoint(step: int) -> Path | None:
        snap = trainer_snapshot()  # collective: every rank joins
        return save_checkpoint(run_dir, step, model, meta, snap) if info.is_main else None

    def run_eval(step: int) -> EvalReport:
        assert writer is not None and traj.env_id is not None  # rank 0, with an environment
        model.eval()
        policy = DTPolicy(model, num_envs=cfg.eval_envs, device=info.device)
        report = evaluate(policy, traj.env_id, targets, cfg.eval_episodes, seed=cfg.seed,
                          ref_min_score=traj.ref_min_score, ref_max_score=traj.ref_max_score, progress=progress)
        model.train()
        for r in report.per_target:
            writer.add_scalar(f"eval/return_target_{r.target_return:g}", r.mean_return, step)
            if r.normalized_score is not None:
                writer.add_scalar(f"eval/normalized_score_target_{r.target_return:g}", r.normalized_score, step)
        writer.add_scalar("eval/env_steps_per_s", report.env_steps_per_s, step)
        # One JSON line per evaluation, so best-iterate scores can be read back without TensorBoard.
        with open(run_dir / "eval_history.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "per_target": [
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
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                loss_val = float(loss.detach())
                if not math.isfinite(loss_val):
                    raise RuntimeError(f"loss became {loss_val} at step {step}; lower --lr or try --amp fp32")
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
