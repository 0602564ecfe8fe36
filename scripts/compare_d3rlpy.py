#!/usr/bin/env python
"""Train d3rlpy's Decision Transformer beside dtkit's on the same Minari dataset, budget, targets and seeds.

For every dataset x seed it trains

* dtkit with only ``--dataset`` and ``--steps`` given (every other setting is
  dtkit's default), and
* d3rlpy 2.8's ``DecisionTransformer`` (``DiscreteDecisionTransformer`` for
  Discrete actions) with the settings dtkit's run resolved to: the same trunk
  size, context, batch, dropout, weight decay, gradient clip, learning rate and
  schedule, observation standardisation and return scale;

then evaluates both in the same environment, on the same reset seeds, at three
targets (the best episode return in the data, its mean, and a low one: its
10th percentile), and writes ``results.md`` and ``results.json`` in ``--out``:
the normalised score at the best-return target (mean ± std over seeds, from
the dataset's own reference scores) and the achieved return per target.

d3rlpy 2.8 pins gymnasium 1.0.0, so it lives in its own virtual environment
and its side runs in a subprocess of ``--d3rlpy-python``::

    python3 -m venv --system-site-packages /tmp/d3venv && /tmp/d3venv/bin/pip install 'dtkit-rl[d3rlpy]'

(``--system-site-packages`` reuses the installed torch; the venv gets its own
gymnasium 1.0.0.) The episodes are converted here, not with d3rlpy's
``get_minari``: d3rlpy 2.8 stacks each Minari episode's n+1 observations
against its n actions, which shifts episode k by k rows. Here each episode's
final observation is dropped, so observation t lines up with action t.

What cannot match exactly (also written into results.json):

* d3rlpy's position embedding is per timestep too (SIMPLE), but its blocks
  and embeddings are its own code (e.g. a linear return/action embedding and
  an MLP observation encoder of one 128-unit layer);
* d3rlpy's DiscreteDecisionTransformer schedules its learning rate by tokens
  seen (warm-up then cosine to 10%, minGPT-style); its token budget is set to
  dtkit's steps x batch x context, so it follows dtkit's schedule up to the
  padding of windows near episode starts;
* d3rlpy evaluates one env at a time with its stateful wrapper (a full
  recompute over the last K steps, its timestep capped at max_timestep), dtkit
  with its KV-cached vectorised policy (a context of K/2+1 to K steps); the env
  is the same id, on gymnasium 1.0.0 there and the installed gymnasium here.
* dtkit clamps the return-to-go it feeds the model to the training data's
  range; d3rlpy does not.
* dtkit trains under bf16 autocast where the CPU has native bf16 (its default
  ``amp='auto'``), d3rlpy in fp32;
* initialisation: both give the trunk GPT-2's N(0, 0.02); d3rlpy keeps
  PyTorch's default for its return, observation and action embeddings and its
  action head, dtkit gives them N(0, 0.02) too;
* windows: d3rlpy draws each window's last step uniformly and pads on the
  left, so an episode's last steps are trained on less; dtkit's default draws a
  window's start over every K-step window overlapping the episode and moves it
  inside, so first and last steps are trained on about as often as the middle.

Runs are resumable: a run whose ``result.json`` holds ``--eval-episodes``
episodes per target is skipped, an interrupted dtkit run continues from its
last checkpoint. Every run keeps its model (dtkit's checkpoints, d3rlpy's
``model.d3``), so rerunning with another ``--eval-episodes`` only re-evaluates.
Episode i of a target starts from reset seed ``seed + i`` on both sides.

Usage:
    python scripts/compare_d3rlpy.py --dataset dtkit/hopper/medium-replay-v0 --steps 2000 --d3rlpy-python /tmp/d3venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

LOW_TARGET_QUANTILE = 0.1
"""The low target: this quantile of the dataset's episode returns."""


# ----------------------------------------------------------------------------------------------------------------
# The d3rlpy side. It runs under --d3rlpy-python and imports neither dtkit nor minari.
# ----------------------------------------------------------------------------------------------------------------

def d3rlpy_worker(job_file: str) -> None:
    """Train and evaluate d3rlpy's DT as the job says; write the job's result file."""
    import dataclasses

    import d3rlpy
    import gymnasium as gym
    import torch
    from d3rlpy.optimizers.lr_schedulers import LRSchedulerFactory, register_lr_scheduler_factory

    job = json.loads(Path(job_file).read_text())
    s = job["settings"]
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    d3rlpy.seed(job["seed"])

    @dataclasses.dataclass()
    class WarmupCosine(LRSchedulerFactory):
        """dtkit's schedule: linear warm-up, then constant or cosine decay to 10% at the last step."""

        warmup_steps: int = 1
        total_steps: int = 1
        cosine: bool = True

        def create(self, optim: Any) -> Any:
            def factor(step: int) -> float:
                if step < self.warmup_steps:
                    return (step + 1) / self.warmup_steps
                if not self.cosine:
                    return 1.0
                progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
                return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

            return torch.optim.lr_scheduler.LambdaLR(optim, factor)

        @staticmethod
        def get_type() -> str:
            return "dtkit_warmup_cosine"

    register_lr_scheduler_factory(WarmupCosine)

    data = np.load(job["data"])
    discrete = bool(job["discrete"])
    dataset = d3rlpy.dataset.MDPDataset(
        observations=data["observations"], actions=data["actions"], rewards=data["rewards"],
        terminals=data["terminals"], timeouts=data["timeouts"],
        action_space=d3rlpy.ActionSpace.DISCRETE if discrete else d3rlpy.ActionSpace.CONTINUOUS,
        action_size=int(job["action_size"]) if discrete else None)
    common = {
        "batch_size": s["batch_size"], "learning_rate": s["lr"], "context_size": s["context_len"],
        "max_timestep": s["max_timestep"], "num_heads": s["n_head"], "num_layers": s["n_layer"],
        "attn_dropout": s["dropout"], "resid_dropout": s["dropout"], "embed_dropout": s["dropout"],
        "activation_type": "gelu", "position_encoding_type": d3rlpy.PositionEncodingType.SIMPLE,
        "encoder_factory": d3rlpy.models.VectorEncoderFactory([s["d_model"]], exclude_last_activation=True),
        "observation_scaler": d3rlpy.preprocessing.StandardObservationScaler(),
        "reward_scaler": d3rlpy.preprocessing.MultiplyRewardScaler(1.0 / s["return_scale"])}
    if discrete:
        tokens = s["batch_size"] * s["context_len"]
        config = d3rlpy.algos.DiscreteDecisionTransformerConfig(
            **common, optim_factory=d3rlpy.optimizers.GPTAdamWFactory(weight_decay=s["weight_decay"], clip_grad_norm=s["grad_clip"]),
            warmup_tokens=s["warmup_steps"] * tokens, final_tokens=s["steps"] * tokens)
        sampler: Any = d3rlpy.algos.GreedyTransformerActionSampler()  # dtkit acts greedily (argmax)
    else:
        schedule = WarmupCosine(warmup_steps=s["warmup_steps"], total_steps=s["steps"], cosine=s["lr_schedule"] == "cosine")
        config = d3rlpy.algos.DecisionTransformerConfig(
            **common, optim_factory=d3rlpy.optimizers.GPTAdamWFactory(
                weight_decay=s["weight_decay"], clip_grad_norm=s["grad_clip"], lr_scheduler_factory=schedule),
            action_scaler=d3rlpy.preprocessing.MinMaxActionScaler(minimum=np.array(job["action_low"]),
                                                                  maximum=np.array(job["action_high"])))
        sampler = d3rlpy.algos.IdentityTransformerActionSampler()
    # The trained model is kept beside the result, so more evaluation episodes later need no retraining.
    model_file = Path(job["result"]).with_name("model.d3")
    train_file = model_file.with_suffix(".json")
    start = time.perf_counter()
    if model_file.is_file() and train_file.is_file():
        algo = d3rlpy.load_learnable(str(model_file), device="cpu:0")
        train_s = json.loads(train_file.read_text())["train_s"]
    else:
        algo = config.create(device="cpu:0")
        algo.fit(dataset, n_steps=s["steps"], n_steps_per_epoch=s["steps"], show_progress=job["progress"],
                 logger_adapter=d3rlpy.logging.NoopAdapterFactory(), with_timestamp=False)
        train_s = time.perf_counter() - start
        algo.save(str(model_file) + ".tmp")
        Path(str(train_file) + ".tmp").write_text(json.dumps({"train_s": train_s}))
        for path in (model_file, train_file):  # renamed once whole: a crash leaves nothing that looks finished
            os.replace(str(path) + ".tmp", path)

    env = gym.make(job["env_id"])
    per_target = []
    for target in job["targets"]:
        wrapper = algo.as_stateful_wrapper(target_return=target, action_sampler=sampler)
        returns, lengths, at_bounds, n_actions = [], [], 0, 0
        for i in range(job["episodes"]):
            wrapper.reset()
            obs, _ = env.reset(seed=job["eval_seed"] + i)  # dtkit's vector env seeds env i with seed + i
            reward, ret, length, done = 0.0, 0.0, 0, False
            while not done:
                action = wrapper.predict(obs, reward)
                if not discrete:
                    action = np.asarray(action, dtype=np.float64)
                    at_bounds += int(_at_bounds(action, job["action_low"], job["action_high"]).sum())
                    n_actions += action.size
                obs, reward, terminated, truncated, _ = env.step(action)
                ret, length, done = ret + float(reward), length + 1, bool(terminated or truncated)
            returns.append(ret)
            lengths.append(length)
        per_target.append({"target_return": target, "episode_returns": returns, "episode_lengths": lengths,
                           "action_at_bounds_fraction": at_bounds / n_actions if n_actions else None})
    env.close()
    result = {"per_target": per_target, "train_s": train_s, "wall_s": time.perf_counter() - start,
              "versions": {"d3rlpy": d3rlpy.__version__, "gymnasium": gym.__version__, "torch": torch.__version__}}
    tmp = Path(job["result"] + ".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, job["result"])


def _at_bounds(action: np.ndarray, low: list[float], high: list[float]) -> np.ndarray:
    """Which action components sit within 1e-3 of the range from a bound (the same rule as dtkit's report)."""
    lo, hi = np.asarray(low), np.asarray(high)
    tol = 1e-3 * (hi - lo)
    return (action <= lo + tol) | (action >= hi - tol)


# ----------------------------------------------------------------------------------------------------------------
# The dtkit side and the table.
# ----------------------------------------------------------------------------------------------------------------

def targets_for(returns: np.ndarray) -> dict[str, float]:
    """The three targets: the best episode return in the data, the mean, and a low one (10th percentile)."""
    return {"best": float(returns.max()), "mean": float(returns.mean()),
            "low": float(np.quantile(returns, LOW_TARGET_QUANTILE))}


def write_episodes(traj: Any, path: Path) -> None:
    """The episodes in d3rlpy's layout: one row per step, observation t beside action t, every episode end flagged."""
    from dtkit.io import atomic_file

    ends = traj.episode_starts + traj.episode_lengths - 1
    terminals = np.zeros(traj.num_steps, dtype=np.float32)
    timeouts = np.zeros(traj.num_steps, dtype=np.float32)
    terminated = traj.terminations[ends].astype(bool)
    terminals[ends[terminated]] = 1.0
    timeouts[ends[~terminated]] = 1.0  # truncated, or cut by the collector: d3rlpy needs every end marked
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, observations=traj.obs["obs"].astype(np.float32), actions=traj.actions,
                 rewards=traj.rewards.astype(np.float32), terminals=terminals, timeouts=timeouts)


def run_dtkit(dataset: str, steps: int, seed: int, run_dir: Path, targets: list[float], episodes: int,
              progress: bool, tiny: bool) -> dict:
    """dtkit with only --dataset and --steps (plus where it writes and what it evaluates)."""
    from dataclasses import replace

    from dtkit.model import ModelConfig
    from dtkit.trainer import TrainConfig, train

    result_file = run_dir / "result.json"
    done = _finished(result_file, episodes)
    if done is not None:
        return done
    # One env per episode: episode i starts from reset seed seed + i, as on d3rlpy's side (with fewer envs, an
    # env's later episodes would start wherever its autoreset puts them).
    cfg = TrainConfig(dataset=dataset, steps=steps, seed=seed, run_dir=str(run_dir), target_returns=tuple(targets),
                      eval_episodes=episodes, eval_envs=episodes, progress=progress)
    if tiny:
        cfg = replace(cfg, **TINY_TRAIN, model=ModelConfig(**TINY_MODEL))
    resume = (run_dir / "checkpoints" / "latest").is_file()
    start = time.perf_counter()
    report = train(replace(cfg, resume=resume), progress=progress).report
    assert report is not None
    result = {"per_target": [{"target_return": r.target_return, "episode_returns": r.episode_returns,
                              "episode_lengths": r.episode_lengths,
                              "action_at_bounds_fraction": getattr(r, "action_at_bounds_fraction", None)}
                             for r in report.per_target],
              "wall_s": time.perf_counter() - start, "resumed": resume}
    _write_json(result_file, result)
    return result


TINY_TRAIN = {"batch_size": 8, "context_len": 4}
TINY_MODEL = {"d_model": 16, "n_layer": 1, "n_head": 1}


def d3rlpy_settings(dataset: str, steps: int, tiny: bool) -> dict:
    """The settings dtkit's run resolves to, as d3rlpy's side takes them."""
    from dataclasses import replace

    from dtkit.data import load_trajectories
    from dtkit.model import ModelConfig
    from dtkit.trainer import TrainConfig
    from dtkit.trainer.loop import build_spec

    cfg = TrainConfig(dataset=dataset, steps=steps)
    if tiny:
        cfg = replace(cfg, **TINY_TRAIN, model=ModelConfig(**TINY_MODEL))
    cfg = cfg.resolved()
    spec = build_spec(cfg, load_trajectories(dataset))
    return {"steps": cfg.steps, "batch_size": cfg.batch_size, "context_len": cfg.context_len, "lr": cfg.lr,
            "warmup_steps": cfg.warmup_steps, "lr_schedule": cfg.lr_schedule, "weight_decay": cfg.weight_decay,
            "grad_clip": cfg.grad_clip, "d_model": cfg.model.d_model, "n_layer": cfg.model.n_layer,
            "n_head": cfg.model.n_head, "dropout": cfg.model.dropout, "return_scale": spec.return_scale,
            "max_timestep": spec.max_timestep + 1}  # d3rlpy counts timesteps from 1


def run_d3rlpy(python: str, job: dict, run_dir: Path) -> dict:
    result_file = run_dir / "result.json"
    done = _finished(result_file, job["episodes"])
    if done is not None:
        return done
    run_dir.mkdir(parents=True, exist_ok=True)
    job = {**job, "result": str(result_file)}
    job_file = run_dir / "job.json"
    _write_json(job_file, job)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([python, __file__, "--d3rlpy-worker", str(job_file)], env=env, check=False)
    if proc.returncode != 0 or not result_file.is_file():
        from dtkit.errors import DtkitError

        raise DtkitError(f"the d3rlpy run in {run_dir} failed (exit {proc.returncode}); its output is above. "
                         f"Check that {python} has d3rlpy 2.8 (pip install 'dtkit-rl[d3rlpy]' in its venv)")
    return json.loads(result_file.read_text())


def _finished(result_file: Path, episodes: int) -> dict | None:
    """A run's result when it was evaluated over ``episodes`` episodes per target. Otherwise None: the run is trained,
    or (a different --eval-episodes) re-evaluated from its saved model or checkpoint."""
    if not result_file.is_file():
        return None
    result = json.loads(result_file.read_text())
    return result if len(result["per_target"][0]["episode_returns"]) == episodes else None


def _write_json(path: Path, obj: Any) -> None:
    from dtkit.io import atomic_write_json

    atomic_write_json(path, obj)


def score(ret: float, ref_min: float | None, ref_max: float | None) -> float | None:
    if ref_min is None or ref_max is None or ref_max == ref_min:
        return None
    return 100.0 * (ret - ref_min) / (ref_max - ref_min)


def summarize(values: list[float | None]) -> dict:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return {"mean": float(np.mean(v)) if v else None, "std": float(np.std(v)) if v else None, "n": len(v)}


def fmt(s: dict, digits: int = 1) -> str:
    """mean ± std over seeds; one seed has no spread to show."""
    if s["mean"] is None:
        return "n/a"
    return f"{s['mean']:.{digits}f}" if s["n"] == 1 else f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def dataset_row(dataset: str, runs: dict[str, list[dict]], targets: dict[str, float], refs: tuple) -> dict:
    """One dataset's summary: normalised score at the best target, per-target achieved return, diagnostics."""
    row: dict[str, Any] = {"dataset": dataset, "targets": targets, "ref_min_score": refs[0], "ref_max_score": refs[1]}
    for impl, results in runs.items():
        per_target, per_seed = {}, {}
        for name, target in targets.items():
            hits = [next(t for t in r["per_target"] if math.isclose(t["target_return"], target, rel_tol=1e-9, abs_tol=1e-9))
                    for r in results]
            means = [float(np.mean(h["episode_returns"])) for h in hits]
            per_seed[name] = means
            bounds = [h.get("action_at_bounds_fraction") for h in hits]
            per_target[name] = {"return": summarize(means), "normalized": summarize([score(m, *refs) for m in means]),
                                "length": summarize([float(np.mean(h["episode_lengths"])) for h in hits]),
                                "action_at_bounds_fraction": summarize(bounds)}
        ordered = [per_target[n]["return"]["mean"] for n in ("low", "mean", "best")]
        rises = None if None in ordered else bool(ordered[0] < ordered[1] < ordered[2])
        row[impl] = {"seeds": [r.get("seed") for r in results], "per_target": per_target, "rises_with_target": rises,
                     "wall_s": [r.get("wall_s") for r in results],
                     # a mean over seeds hides whether one run fell or all did a little worse
                     "best_return_per_seed": per_seed["best"]}
    return row


def tables(rows: list[dict], steps: int, episodes: int) -> str:
    lines = [(f"Normalised score at the best-return target (mean ± std over seeds; the dataset's reference scores), "
              f"{steps:,} updates per run, {episodes} evaluation episodes per target."), "",
             "| dataset | seeds | dtkit | d3rlpy DT | dtkit ≥ d3rlpy |", "|---|---|---|---|---|"]
    for r in rows:
        # either side may be missing when it was run alone (--only)
        d, o = (r.get(impl, {}).get("per_target", {}).get("best", {}).get("normalized") for impl in ("dtkit", "d3rlpy"))
        ok = "n/a" if not (d and o) or o["mean"] is None or d["mean"] is None else ("yes" if d["mean"] >= o["mean"] else "no")
        seeds = max((x["n"] for x in (d, o) if x), default=0)
        lines.append(f"| {r['dataset']} | {seeds} | {fmt(d) if d else 'not run'} | {fmt(o) if o else 'not run'} | {ok} |")
    lines += ["", ("Achieved return per target (mean over seeds), mean episode length, and the fraction of action "
                   "components at the bounds (continuous actions):"), "",
              "| dataset | impl | low target → return | mean target → return | best target → return | rises | length (best) | at bounds (best) |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for impl in ("dtkit", "d3rlpy"):
            if impl not in r:
                continue
            pt = r[impl]["per_target"]
            cells = [f"{r['targets'][n]:.1f} → {fmt(pt[n]['return'])}" for n in ("low", "mean", "best")]
            b = pt["best"]["action_at_bounds_fraction"]
            lines.append(f"| {r['dataset']} | {impl} | {' | '.join(cells)} | "
                         f"{ {True: 'yes', False: 'no', None: 'n/a'}[r[impl]['rises_with_target']] } | "
                         f"{fmt(pt['best']['length'], 0)} | {fmt(b, 3) if b['mean'] is not None else 'n/a'} |")
    lines += ["", "Achieved return at the best-return target, run by run:", "", "| dataset | impl | seed: return |", "|---|---|---|"]
    for r in rows:
        for impl in ("dtkit", "d3rlpy"):
            if impl in r and "best_return_per_seed" in r[impl]:  # rows written before this column have none
                runs = zip(r[impl]["seeds"], r[impl]["best_return_per_seed"])
                lines.append(f"| {r['dataset']} | {impl} | {', '.join(f'{s}: {v:.1f}' for s, v in runs)} |")
    return "\n".join(lines) + "\n"


MISMATCHES = [
    "d3rlpy's blocks, embeddings and observation encoder (one 128-unit layer) are its own code; sizes match (K, width, layers, heads)",
    "DiscreteDecisionTransformer schedules lr by tokens seen; its token budget is dtkit's steps x batch x context",
    ("d3rlpy evaluates one env at a time with a full recompute over the last K steps; dtkit with its KV cache, whose "
     "context spans K/2+1 to K steps (each step exact for that window: DTPolicy's default keep=K//2)"),
    ("dtkit feeds the model the return-to-go clamped to the training data's range (behind the target on a task "
     "with rewards <= 0 it would climb past any the data shows); d3rlpy feeds it unclamped"),
    "d3rlpy runs on gymnasium 1.0.0 (its pin), dtkit on the installed gymnasium; same env id and reset seeds",
    "dtkit trains under bf16 autocast on CPUs with native bf16 (its amp='auto'), d3rlpy in fp32",
    ("init: both use N(0, 0.02) for the trunk; d3rlpy's return, observation and action embeddings and action head "
     "keep PyTorch's default, dtkit's get N(0, 0.02)"),
    ("windows: d3rlpy draws the window's last step uniformly and pads on the left, so an episode's last step is read "
     "out at 1/K of a mid-episode step's rate; dtkit's default (cover) draws a window's start over every K-step window "
     "overlapping the episode and moves it inside, so first and last steps are read out about as often as the middle"),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", nargs="+", required=False, help="Minari dataset ids (under MINARI_DATASETS_PATH)")
    p.add_argument("--steps", type=int, default=2_000, help="gradient updates per run, for both")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per target, for both")
    p.add_argument("--d3rlpy-python", default=sys.executable,
                   help="a python with d3rlpy 2.8 (its own venv: d3rlpy pins gymnasium 1.0.0)")
    p.add_argument("--only", choices=["dtkit", "d3rlpy"], help="train one side only (the other's finished runs still count)")
    p.add_argument("--out", default="results/d3rlpy")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests: a tiny model on both sides
    p.add_argument("--d3rlpy-worker", help=argparse.SUPPRESS)  # internal: the d3rlpy side, in its own python
    args = p.parse_args(argv)
    if args.d3rlpy_worker:
        d3rlpy_worker(args.d3rlpy_worker)
        return 0
    if not args.dataset:
        p.error("--dataset is required")
    from dtkit.data import load_trajectories
    from dtkit.errors import DtkitError
    from dtkit.io import atomic_write_text

    out = Path(args.out)
    rows_file = out / "results.json"
    previous = json.loads(rows_file.read_text())["rows"] if rows_file.is_file() else []
    rows = []
    try:
        for dataset in args.dataset:
            traj = load_trajectories(dataset)
            if traj.env_id is None:
                raise DtkitError(f"dataset {dataset!r} records no environment id, so neither side can be evaluated")
            if list(traj.obs) != ["obs"]:
                raise DtkitError(f"dataset {dataset!r} has Dict observations; this comparison takes a single Box observation")
            targets = targets_for(traj.episode_returns)
            slug = dataset.replace("/", "_")
            data_file = out / "data" / f"{slug}.npz"
            if not data_file.is_file():
                write_episodes(traj, data_file)
            discrete = traj.actions.ndim == 1
            job = {"data": str(data_file), "env_id": traj.env_id, "discrete": discrete,
                   "action_size": int(traj.action_space.n) if discrete else int(traj.actions.shape[1]),
                   "action_low": None if discrete else traj.action_space.low.tolist(),
                   "action_high": None if discrete else traj.action_space.high.tolist(),
                   "targets": list(targets.values()), "episodes": args.eval_episodes, "progress": args.progress,
                   "settings": d3rlpy_settings(dataset, args.steps, args.tiny)}
            runs: dict[str, list[dict]] = {"dtkit": [], "d3rlpy": []}
            for seed in args.seeds:
                base = out / "runs" / slug / f"steps{args.steps}"
                if args.only != "d3rlpy" or (base / f"dtkit-seed{seed}" / "result.json").is_file():
                    r = run_dtkit(dataset, args.steps, seed, base / f"dtkit-seed{seed}", list(targets.values()),
                                  args.eval_episodes, args.progress, args.tiny)
                    runs["dtkit"].append({**r, "seed": seed})
                    print(f"{dataset} dtkit seed {seed}: return {np.mean(r['per_target'][0]['episode_returns']):.1f}", flush=True)
                if args.only != "dtkit" or (base / f"d3rlpy-seed{seed}" / "result.json").is_file():
                    r = run_d3rlpy(args.d3rlpy_python, {**job, "seed": seed, "eval_seed": seed}, base / f"d3rlpy-seed{seed}")
                    runs["d3rlpy"].append({**r, "seed": seed})
                    print(f"{dataset} d3rlpy seed {seed}: return {np.mean(r['per_target'][0]['episode_returns']):.1f}", flush=True)
            runs = {k: v for k, v in runs.items() if v}
            rows.append({**dataset_row(dataset, runs, targets, (traj.ref_min_score, traj.ref_max_score)),
                         "steps": args.steps, "settings": job["settings"]})
    except DtkitError as exc:
        print(f"compare_d3rlpy: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("compare_d3rlpy: interrupted; rerun the same command to resume (finished runs are skipped)", file=sys.stderr)
        return 130
    fresh = {(r["dataset"], r["steps"]) for r in rows}
    rows = [r for r in previous if (r["dataset"], r["steps"]) not in fresh] + rows
    _write_json(rows_file, {"rows": rows, "settings_that_cannot_match": MISMATCHES,
                            "low_target_quantile": LOW_TARGET_QUANTILE})
    by_steps: dict[int, list[dict]] = {}
    for r in rows:
        by_steps.setdefault(r["steps"], []).append(r)
    text = "\n".join(tables(rs, steps, args.eval_episodes) for steps, rs in sorted(by_steps.items()))
    atomic_write_text(out / "results.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
