#!/usr/bin/env python
"""Reproduce the DT-vs-BC table on dtkit's locally built datasets (the D4RL-style MuJoCo ones, or any recipe's).

For every recipe x dataset x seed it trains a decision transformer (the
original paper's hyperparameters: Chen et al., 2021, Table 8) and behaviour
cloning through the same trunk (no return token), evaluates every
``--eval-every`` updates, and writes ``results.json`` and ``results.md`` with
the mean ± std over seeds of the normalised score. *Last* is the score after
the final update; *best* is the best of the periodic evaluations (an
optimistic figure: it picks the checkpoint with the evaluation episodes).

Scores are normalised against dtkit's own reference policies (uniform random
and the recipe's expert, stored in each dataset's metadata), not D4RL's, so they are not
comparable with published D4RL numbers. The table also gives the mean
return of the last evaluation and, for reference, the dataset's own mean
episode return (the bar DT should clear on mixed data).

Other recipes work too: ``--datasets`` takes the recipe's own dataset names
(``--recipes breakout --datasets mixed``), and ``--batch-size``,
``--context-len`` and ``--return-scale`` change the paper's settings (pixels
cost far more per window than MuJoCo's vectors).

Runs are resumable: a finished run (its ``eval.json`` exists) is skipped and
an interrupted one continues from its last checkpoint.

Results accumulate in ``--out``: rows already in its ``results.json`` that this
call does not train are kept, so recipes can be run one call at a time into
one table. A call whose training configuration differs from that file's is
refused (its finished runs would otherwise be reused under the new settings).

Runs go to ``--jobs`` worker processes (default: one per CPU core, each with
its share of torch threads), so two cores train two runs at once.

Usage:
    python scripts/reproduce_mujoco.py --recipes hopper --seeds 0 1 2
    python scripts/reproduce_mujoco.py --recipes hopper --steps 3000 --lr 3e-4 --warmup-steps 300 --lr-schedule cosine
    python scripts/reproduce_mujoco.py --tiny --steps 20   # a seconds-long check on tiny datasets
    python scripts/reproduce_mujoco.py --recipes breakout --datasets mixed --steps 2500 --batch-size 32 --return-scale 0 \
        --lr 6e-4 --warmup-steps 250 --lr-schedule cosine   # Atari (README)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dtkit.data.sampler import WINDOWS
from dtkit.errors import DtkitError, TrainingInterrupted
from dtkit.io import atomic_write_json, atomic_write_text
from dtkit.model import ModelConfig
from dtkit.trainer import TrainConfig, train

DATASETS = ("medium", "medium-replay", "medium-expert")
# Chen et al. (2021), Table 8: K=20, lr 1e-4, weight decay 1e-4, warm-up 10k, clip 0.25, dropout 0.1,
# embedding 128, 3 layers, 1 head, batch 64; returns scaled by 1000 for MuJoCo; windows start at a drawn step.
PAPER = TrainConfig(context_len=20, lr=1e-4, weight_decay=1e-4, warmup_steps=10_000, lr_schedule="constant",
                    grad_clip=0.25, batch_size=64, return_scale=1000.0, windows="start",
                    model=ModelConfig(d_model=128, n_layer=3, n_head=1, dropout=0.1))


RESUME_HINT = "rerun the same command to resume: finished runs are skipped, interrupted ones continue from their last checkpoint"


def dataset_ids(recipe: str, tiny: bool, wanted: tuple[str, ...] = DATASETS) -> dict[str, str]:
    """Tier name -> dataset id for the wanted datasets of ``recipe``, built first when --tiny."""
    from dtkit.collect import catalog, load_recipe

    spec = load_recipe(recipe)
    if tiny:
        catalog.build_recipe(recipe, tiny=True, progress=False)
        spec = catalog.tiny_recipe(spec)
    ids = {d.id.split("/")[-1].rsplit("-v", 1)[0]: d.id for d in spec.outputs()}
    missing = [d for d in wanted if d not in ids]
    if missing:
        raise DtkitError(f"recipe {recipe!r} has no {missing} datasets; it lists {sorted(ids)}")
    return {d: ids[d] for d in wanted}


def run_one(cfg: TrainConfig) -> dict:
    """Train (or resume, or skip when finished) one run; return its last and best normalised scores.

    ``wall_s`` is the training wall time (evaluations included) summed over every
    attempt of the run, kept in ``wall.json`` so a skipped run still reports it.
    """
    run = Path(cfg.run_dir or "")
    wall_file = run / "wall.json"
    if not (run / "eval.json").is_file():
        resume = (run / "checkpoints" / "latest").is_file()
        before = json.loads(wall_file.read_text())["wall_s"] if resume and wall_file.is_file() else 0.0
        start = time.perf_counter()
        train(replace(cfg, resume=resume), progress=cfg.progress)
        atomic_write_json(wall_file, {"wall_s": before + time.perf_counter() - start, "threads": torch.get_num_threads()})
    timing = json.loads(wall_file.read_text()) if wall_file.is_file() else {}
    last = json.loads((run / "eval.json").read_text())
    history = []
    for line in (run / "eval_history.jsonl").read_text().splitlines():
        try:
            history.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a crash
            continue
    scores = [h["per_target"][0]["normalized_score"] for h in history if h["per_target"][0]["normalized_score"] is not None]
    return {"last": last["normalized_score"], "best": max(scores) if scores else None,
            "target_return": last["per_target"][0]["target_return"],
            "last_return": last["mean_return"], "evaluations": len(history), "wall_s": timing.get("wall_s"),
            "threads": timing.get("threads", torch.get_num_threads())}  # wall.json before it kept threads


def dataset_mean_return(dataset_id: str) -> float | None:
    """The mean episode return of the dataset itself (None when it cannot be read here)."""
    from dtkit.data import load_trajectories

    try:
        return float(np.mean(load_trajectories(dataset_id).episode_returns))
    except DtkitError:
        return None


def summarize(values: list[float | None]) -> dict:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return {"mean": float(np.mean(v)) if v else None, "std": float(np.std(v)) if v else None, "n": len(v)}


def fmt(s: dict) -> str:
    return "n/a" if s["mean"] is None else f"{s['mean']:.1f} ± {s['std']:.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipes", nargs="+", default=["hopper", "halfcheetah", "walker2d"])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS),
                   help="which datasets of each recipe (the last part of the id, without -vN), trained in this order")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=100_000, help="gradient updates per run (the paper: 100k)")
    p.add_argument("--eval-every", type=int, default=10_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--lr", type=float, default=PAPER.lr, help="peak learning rate (the paper: 1e-4)")
    p.add_argument("--warmup-steps", type=int, default=PAPER.warmup_steps, help="linear warm-up (the paper: 10k)")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], default=PAPER.lr_schedule,
                   help="after warm-up: constant (the paper) or cosine decay to 0.1 x lr")
    p.add_argument("--batch-size", type=int, default=PAPER.batch_size, help="windows per update (the paper: 64)")
    p.add_argument("--context-len", type=int, default=PAPER.context_len, help="K, steps per window (the paper: 20)")
    p.add_argument("--windows", choices=WINDOWS, default=PAPER.windows,
                   help="where a training window sits around its drawn step (the paper: start; dtkit train's default: cover)")
    p.add_argument("--return-scale", type=float, default=PAPER.return_scale,
                   help="returns-to-go are divided by this (the paper's MuJoCo: 1000); 0: the dataset's largest |return|")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="runs trained at once, each in its own process with cpu_count/jobs torch threads")
    p.add_argument("--out", default="results/mujoco")
    p.add_argument("--tiny", action="store_true", help="tiny datasets and a tiny model: checks the pipeline in seconds")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--run-config", help=argparse.SUPPRESS)  # internal: one run, in a --jobs child process
    args = p.parse_args(argv)
    if args.run_config:
        if args.tiny:  # tiny datasets name envs registered per process (dtkit_tiny/...)
            from dtkit.collect import catalog, load_recipe

            for recipe in args.recipes:
                catalog.tiny_recipe(load_recipe(recipe))
        print(json.dumps(run_one(TrainConfig.from_dict(json.loads(args.run_config)))))
        return 0
    out = Path(args.out)
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")
    base = replace(PAPER, lr=args.lr, lr_schedule=args.lr_schedule, warmup_steps=min(args.warmup_steps, args.steps),
                   steps=args.steps, batch_size=args.batch_size, context_len=args.context_len, windows=args.windows,
                   return_scale=args.return_scale or None, eval_every=min(args.eval_every, args.steps), eval_episodes=args.eval_episodes,
                   eval_envs=min(10, args.eval_episodes), checkpoint_every=min(args.eval_every, args.steps, 1_000),
                   log_every=min(100, args.steps), progress=args.progress and args.jobs == 1)
    if args.tiny:
        base = replace(base, context_len=4, batch_size=8, warmup_steps=2, model=ModelConfig(d_model=16, n_layer=1))
    threads = max(1, (os.cpu_count() or 1) // args.jobs)  # per child process when --jobs > 1
    config = {"steps": args.steps, "eval_every": args.eval_every, "eval_episodes": args.eval_episodes, "tiny": args.tiny,
              "train": base.to_dict()}
    rows = []
    try:
        previous = _previous_rows(out / "results.json", config)
        plan = [(recipe, tier, dataset_id, algo)
                for recipe in args.recipes for tier, dataset_id in dataset_ids(recipe, args.tiny, tuple(args.datasets)).items()
                for algo in ("dt", "bc")]
        configs = {(recipe, tier, algo, seed): replace(
                       base, dataset=dataset_id, seed=seed, return_token=algo == "dt",
                       run_dir=str(out / "runs" / recipe / tier / f"{algo}-seed{seed}"))
                   for recipe, tier, dataset_id, algo in plan for seed in args.seeds}
        child_args = ["--tiny", "--recipes", *args.recipes] if args.tiny else []
        results = _run_all(configs, args.jobs, threads, child_args)
        data_returns = {dataset_id: dataset_mean_return(dataset_id) for _, _, dataset_id, _ in plan}  # one read each
        for recipe, tier, dataset_id, algo in plan:
            runs = [results[(recipe, tier, algo, seed)] for seed in args.seeds]
            rows.append({"recipe": recipe, "dataset": tier, "dataset_id": dataset_id, "algo": algo, "seeds": args.seeds,
                         "last": summarize([r["last"] for r in runs]), "best": summarize([r["best"] for r in runs]),
                         "last_return": summarize([r["last_return"] for r in runs]),
                         "data_return": data_returns[dataset_id], "runs": runs})
    except (KeyboardInterrupt, TrainingInterrupted) as exc:  # the trainer's own advice is `dtkit train --resume`
        saved = f" (checkpoint {exc.checkpoint})" if isinstance(exc, TrainingInterrupted) else ""
        print(f"reproduce_mujoco: interrupted{saved}; {RESUME_HINT}", file=sys.stderr)
        return 130
    except DtkitError as exc:
        print(f"reproduce_mujoco: error: {exc}", file=sys.stderr)
        return 2
    fresh = {(r["recipe"], r["dataset"], r["algo"]) for r in rows}
    rows = [r for r in previous if (r["recipe"], r["dataset"], r["algo"]) not in fresh] + rows
    cpu_s = [run["wall_s"] * run["threads"] for r in rows for run in r["runs"] if run["wall_s"] is not None]
    config["cpu_hours"] = sum(cpu_s) / 3600
    atomic_write_json(out / "results.json", {"config": config, "rows": rows})
    seeds = sorted({tuple(r["seeds"]) for r in rows})
    seeds_text = f"seeds {list(seeds[0])}" if len(seeds) == 1 else "the seeds in results.json"
    header = (f"Normalised score (mean ± std over {seeds_text}; dtkit's own reference policies, not D4RL's), "
              f"{args.steps:,} updates per run (lr {base.lr:g}, {base.lr_schedule} after a {base.warmup_steps:,}-step warm-up), "
              f"{args.eval_episodes} evaluation episodes; {config['cpu_hours']:.1f} CPU-hours in all.")
    lines = [header, "",
             "| dataset | DT last | DT best | BC last | BC best | DT return (last) | BC return (last) | data's mean return |",
             "|---|---|---|---|---|---|---|---|"]
    by_key = {(r["recipe"], r["dataset"], r["algo"]): r for r in rows}
    for recipe, tier in dict.fromkeys((r["recipe"], r["dataset"]) for r in rows):
        order = [("dt", "last"), ("dt", "best"), ("bc", "last"), ("bc", "best"), ("dt", "last_return"), ("bc", "last_return")]
        # .get: rows written before returns were tabulated have no last_return.
        cells = [fmt(by_key[(recipe, tier, algo)].get(kind, {"mean": None})) if (recipe, tier, algo) in by_key else "n/a"
                 for algo, kind in order]
        data = next((r.get("data_return") for r in rows if (r["recipe"], r["dataset"]) == (recipe, tier)), None)
        lines.append(f"| {recipe}-{tier} | {' | '.join(cells)} | {'n/a' if data is None else f'{data:.1f}'} |")
    atomic_write_text(out / "results.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _previous_rows(path: Path, config: dict) -> list[dict]:
    """The rows of an earlier ``results.json`` in the same --out, if it was made with the same training settings."""
    if not path.is_file():
        return []
    old = json.loads(path.read_text())
    then, now = _settings(old["config"]), _settings(json.loads(json.dumps(config)))  # tuples as the file has them
    diff = sorted(k for k in then.keys() | now.keys() if then.get(k) != now.get(k))
    if diff:
        raise DtkitError(f"{path} holds results made with other settings ({', '.join(diff)} differ); "
                         "use another --out, or rerun with that file's settings")
    return old["rows"]


def _settings(config: dict) -> dict:
    """The settings a run's result depends on, flat: ``steps``, ``train.lr``, ...

    ``train.progress`` and ``train.log_every`` are left out: they change what is
    displayed and logged, not what is trained. So is ``train.preset``: every
    setting a preset fills is given explicitly here.
    """
    flat = {k: config.get(k) for k in ("steps", "eval_every", "eval_episodes", "tiny")}
    flat.update({f"train.{k}": v for k, v in config["train"].items() if k not in ("progress", "log_every", "preset")})
    return flat


def _run_all(configs: dict, jobs: int, threads: int, child_args: list[str]) -> dict:
    """Run every config, ``jobs`` at a time; print one line per finished run."""
    if jobs == 1:
        return {key: _report(key, run_one(cfg)) for key, cfg in configs.items()}
    with ThreadPoolExecutor(jobs) as pool:
        keys = {pool.submit(_run_in_child, cfg, threads, child_args): key for key, cfg in configs.items()}
        done = {}
        try:
            for future in as_completed(keys):  # a failure is reported when it happens, not in plan order
                done[keys[future]] = _report(keys[future], future.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # runs in flight finish; queued ones never start
            raise
        return {key: done[key] for key in configs}


def _run_in_child(cfg: TrainConfig, threads: int, child_args: list[str]) -> dict:
    """``run_one`` in a fresh interpreter limited to ``threads`` torch/OpenMP threads (set before torch loads)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, __file__, "--run-config", json.dumps(cfg.to_dict()), *child_args],
                          check=False, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise DtkitError(f"run {cfg.run_dir} failed (exit {proc.returncode}); rerun the same command to resume it:\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _report(key: tuple, result: dict) -> dict:
    recipe, tier, algo, seed = key
    print(f"{recipe}-{tier} {algo} seed {seed}: last {result['last']}, best {result['best']}", flush=True)
    return result


if __name__ == "__main__":
    sys.exit(main())
