#!/usr/bin/env python
"""Speed and memory of the original DT configuration on Hopper-v5 shapes.

Config (Chen et al., 2021): embed 128, 3 layers, 1 head, K=20, batch 64,
dropout 0.1; Hopper-v5 observations (11) and actions (3).

Prints, in one run (issue 12: each claim a ratio from one run):
- training ms/step in fp32 and bf16 autocast, peak RSS while training, and a
  short fp32-vs-bf16 loss curve on a learnable synthetic task;
- model ms per vector step (policy act + record on random Hopper observations,
  no env): exact KV cache vs a full recompute, at each env count, CPU time;
- evaluation env-steps/s on Hopper-v5 per env backend (sync, async, envpool
  when installed) at each env count: raw env with random actions, exact KV
  cache, full recompute, and cached / raw of the same backend;
- with --base DIR (a checkout of an older commit, e.g. `git worktree add
  /tmp/base e8c9613`): the training step and the cached model step of that
  code next to this tree's, run in alternating child processes (min of
  --repeats), and their ratios.

- pixels (issue 10): model time per env step at 36 tokens per step and K=20,
  exact KV cache (with the `keep` used) vs a full recompute of the context,
  on a multi-camera observation (two 64x64 RGB cameras as 16 patches each, a
  4x84x84 grey frame stack through the CNN, an 8-d state), fed uint8 frames
  straight to the policy: no environment in the loop.

Hopper is made with terminate_when_unhealthy=False so that every episode runs
its full 1000 steps (an untrained model falls at once otherwise), which makes
the cache's rebuild schedule count as it does for a good policy.

Usage:
    # issue 12's CPU acceptance ratios in one run (about 3-4 minutes on 2 quiet cores):
    python scripts/bench.py --only train eval --threads 1 --envs 16 --recompute-envs --base /tmp/base --repeats 3 --train-steps 20
    python scripts/bench.py --only train model eval --threads 1 --base /tmp/base
    python scripts/bench.py --only eval --backends sync envpool --envs 1 16 64
    python scripts/bench.py --only pixels   # about 4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from dtkit.data import SegmentSampler, Trajectories, spec_from_spaces
from dtkit.encoders import EncoderConfig
from dtkit.model import DecisionTransformer, ModelConfig
from dtkit.policy import DTPolicy
from dtkit.rollout import evaluate

ENV_ID = "Hopper-v5"
ENV_KWARGS = {"terminate_when_unhealthy": False}
CFG = ModelConfig(d_model=128, n_layer=3, n_head=1, dropout=0.1)
K, BATCH = 20, 64


def hopper_like_trajectories(n_episodes: int = 20, length: int = 1000, seed: int = 0) -> Trajectories:
    """Random Hopper-shaped data whose actions are a fixed function of the state (so the loss can fall)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(11, 3)) / np.sqrt(11)
    eps = []
    for _ in range(n_episodes):
        obs = rng.normal(size=(length + 1, 11)).astype(np.float32)
        eps.append({"observations": obs, "actions": np.tanh(obs[:-1] @ w), "rewards": rng.uniform(0, 3, length),
                    "terminations": np.zeros(length), "truncations": np.zeros(length)})
    return Trajectories.from_episodes(eps, gym.spaces.Box(-np.inf, np.inf, (11,)), gym.spaces.Box(-1, 1, (3,)))


def train_steps(spec, traj, amp: torch.dtype | None, steps: int, seed: int = 0,
                device: torch.device | None = None, cpu_time: bool = False) -> tuple[float, list[float]]:
    """Median ms per step (wall, or this process's CPU time with ``cpu_time``: steadier on a shared machine)."""
    device = device or torch.device("cpu")
    clock = time.process_time if cpu_time else time.perf_counter
    torch.manual_seed(seed)
    model = DecisionTransformer(spec, CFG).to(device)
    opt = model.configure_optimizer(1e-4, 1e-4)
    sampler = SegmentSampler(traj, spec, BATCH, seed=seed, device=device)
    losses, times = [], []
    for _ in range(steps):
        t = clock()
        batch = sampler.sample()
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            pred, _ = model(batch)
        loss = model.head.loss(pred, batch.actions, batch.mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()
        losses.append(float(loss.detach()))  # also syncs a GPU, so the time is the step's
        times.append(clock() - t)
    warm = min(5, steps // 4)
    return 1000 * float(np.median(times[warm:])), losses


def bench_train(steps: int, device: torch.device) -> dict:
    traj = hopper_like_trajectories()
    spec = spec_from_spaces(traj.observation_space, traj.action_space, context_len=K, return_scale=1000.0, max_timestep=1000)
    out = {}
    for name, amp in (("fp32", None), ("bf16", torch.bfloat16)):
        ms, losses = train_steps(spec, traj, amp, steps, device=device, cpu_time=device.type == "cpu")
        out[name] = {"ms_per_step": ms, "loss_first": losses[0], "loss_last10": float(np.mean(losses[-10:]))}
        if name == "fp32":  # the default path; the bf16 run afterwards can only raise the high-water mark
            out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def raw_env_steps(num_envs: int, steps: int, backend: str = "sync") -> tuple[float, float]:
    """(env-steps/s of wall-clock, env-steps per second of this process's CPU time)."""
    from dtkit.rollout.backends import make_vector_env as make_on

    envs = make_on(ENV_ID, num_envs, ENV_KWARGS, backend=backend)
    envs.reset(seed=0)
    envs.action_space.seed(0)
    actions = [envs.action_space.sample() for _ in range(64)]
    t, c = time.perf_counter(), time.process_time()
    for i in range(steps):
        envs.step(actions[i % 64])
    dt, dc = time.perf_counter() - t, time.process_time() - c
    envs.close()
    return num_envs * steps / dt, num_envs * steps / dc


def policy_env_steps(model, num_envs: int, use_cache: bool, keep: int | None = None, episodes_per_env: int = 1,
                     backend: str = "sync") -> tuple[float, float]:
    """(env-steps/s of wall-clock, env-steps per second of this process's CPU time) of a whole evaluation."""
    policy = DTPolicy(model, num_envs=num_envs, target_return=3600.0, use_cache=use_cache, keep=keep)  # on the model's device
    c = time.process_time()
    report = evaluate(policy, ENV_ID, [3600.0], num_episodes=num_envs * episodes_per_env, progress=False, env_kwargs=ENV_KWARGS,
                      env_backend=backend)
    return report.env_steps_per_s, report.env_steps / (time.process_time() - c)


def hopper_model(device: torch.device) -> DecisionTransformer:
    env = gym.make(ENV_ID)
    spec = spec_from_spaces(env.observation_space, env.action_space, context_len=K, return_scale=1000.0, max_timestep=1000)
    torch.manual_seed(0)
    return DecisionTransformer(spec, CFG).to(device).eval()


def available_backends(asked: list[str]) -> list[str]:
    try:
        import envpool  # noqa: F401
    except ImportError:
        if "envpool" in asked:
            print("  (envpool is not installed: pip install envpool; its rows are skipped)")
        return [b for b in asked if b != "envpool"]
    return asked


def bench_eval(device: torch.device, env_counts: tuple[int, ...], backends: list[str], recompute_counts: tuple[int, ...],
               repeats: int = 1, keep: int | None = None) -> dict:
    """Per backend and env count: raw env, cached (and recompute) env-steps/s, all in this one process.

    Raw and cached runs alternate ``repeats`` times and the fastest of each is kept: on a shared
    machine the least disturbed run is the one closest to what the code costs. With ``sync`` every
    env steps in this process, so the same ratio is also given in CPU time (``cpu_ratio``), which
    other jobs on the machine disturb far less than wall-clock time.
    """
    model = hopper_model(device)
    out: dict = {}
    for backend in backends:
        for n in env_counts:
            raw = cached = raw_cpu = cached_cpu = 0.0
            for _ in range(repeats):
                wall, cpu = raw_env_steps(n, 2000 if n == 1 else max(100, 4800 // n), backend)
                raw, raw_cpu = max(raw, wall), max(raw_cpu, cpu)
                wall, cpu = policy_env_steps(model, n, True, keep=keep, backend=backend)
                cached, cached_cpu = max(cached, wall), max(cached_cpu, cpu)
            full = policy_env_steps(model, n, False, backend=backend)[0] if n in recompute_counts else float("nan")
            out[f"{backend}/{n}_envs"] = {"raw": raw, "cached": cached, "recompute": full, "cached_over_raw": cached / raw}
            if backend == "sync":
                out[f"{backend}/{n}_envs"]["cpu_ratio"] = cached_cpu / raw_cpu
    return out


def model_ms_per_step(model, num_envs: int, use_cache: bool, steps: int = 200, warmup: int = 40, cuda_graph: bool = False,
                      keep: int | None = None) -> float:
    """ms of one policy step (act + record, all envs batched) on random Hopper observations, no env: this
    process's CPU time on a CPU (steadier on a shared machine), wall-clock on a GPU (the host waits for it).

    ``steps`` is a multiple of the rebuild period (K - keep = 10), so rebuilds count in full.
    """
    rng = np.random.default_rng(0)
    extra = {"cuda_graph": True} if cuda_graph else {}  # older checkouts (--base) have no such argument
    policy = DTPolicy(model, num_envs=num_envs, target_return=3600.0, use_cache=use_cache, keep=keep, **extra)
    obs = [rng.normal(size=(num_envs, 11)) for _ in range(8)]
    ones = np.ones(num_envs)
    for t in range(warmup):
        policy.act(obs[t % 8])
        policy.record(ones)
    clock = time.perf_counter if policy.device.type == "cuda" else time.process_time
    start = clock()
    for t in range(steps):
        policy.act(obs[t % 8])  # returns numpy actions, so each step has synchronised with a GPU
        policy.record(ones)
    return 1000 * (clock() - start) / steps


def bench_model(device: torch.device, env_counts: tuple[int, ...], keep: int | None = None) -> dict:
    model = hopper_model(device)
    out = {}
    # Timed steps: a multiple of the rebuild period K - keep, so rebuilds count in full.
    period = K - (K // 2 if keep is None else keep)
    steps = period * max(1, 200 // period)
    for n in env_counts:
        out[f"{n}_envs"] = {"cached_ms": model_ms_per_step(model, n, True, steps=steps, keep=keep),
                            "recompute_ms": model_ms_per_step(model, n, False, steps=60)}
        if device.type == "cuda":  # the cached step as one CUDA graph replay per step
            out[f"{n}_envs"]["graph_ms"] = model_ms_per_step(model, n, True, cuda_graph=True)
    return out


def worker(kind: str, threads: int) -> dict:
    """One measurement in a child process, printed as JSON: runs against whatever dtkit PYTHONPATH selects."""
    torch.set_num_threads(threads)
    if kind == "model16":
        model = hopper_model(torch.device("cpu"))
        model_ms_per_step(model, 16, True, steps=100)  # warm the allocator
        return {"cached_ms_16": model_ms_per_step(model, 16, True)}
    amp = {"train_fp32": None, "train_bf16": torch.bfloat16}[kind]
    traj = hopper_like_trajectories()
    spec = spec_from_spaces(traj.observation_space, traj.action_space, context_len=K, return_scale=1000.0, max_timestep=1000)
    ms, _ = train_steps(spec, traj, amp, 25, cpu_time=True)
    return {kind: ms}


def compare_to_base(base: str, kinds: list[str], repeats: int, threads: int) -> dict:
    """Each measurement in fresh child processes, alternating base / this tree; the min of ``repeats`` each."""
    here = str(Path(__file__).resolve().parents[1])
    best: dict[str, dict[str, float]] = {"base": {}, "this": {}}
    for _ in range(repeats):
        for kind in kinds:
            for name, root in (("base", base), ("this", here)):
                env = {**os.environ, "PYTHONPATH": root, "OMP_NUM_THREADS": str(threads)}
                cmd = [sys.executable, __file__, "--worker", kind, "--threads", str(threads)]
                res = json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
                for k, v in res.items():
                    best[name][k] = min(v, best[name].get(k, float("inf")))
    best["ratio"] = {k: best["this"][k] / best["base"][k] for k in best["base"]}
    return best


# 36 tokens per step: return + 16 + 16 patch tokens + 1 CNN token + 1 state token + action.
PIXEL_SPACE = gym.spaces.Dict({
    "front": gym.spaces.Box(0, 255, (64, 64, 3), np.uint8),
    "rear": gym.spaces.Box(0, 255, (64, 64, 3), np.uint8),
    "frames": gym.spaces.Box(0, 255, (4, 84, 84), np.uint8),
    "state": gym.spaces.Box(-1, 1, (8,), np.float32),
})
PIXEL_ENCODERS = {"front": EncoderConfig("patch", {"patch": 16}), "rear": EncoderConfig("patch", {"patch": 16})}


def pixel_model_ms(model, num_envs: int, use_cache: bool, keep: int | None, warmup: int, steps: int) -> dict[str, float]:
    """Mean time of one policy step (all envs batched) over ``steps`` steps after ``warmup``, in ms:
    wall-clock and this thread's CPU time (on a shared machine the CPU time is the steadier of the two).

    A mean, not a median: a cache rebuild is a spike every ``K - keep`` steps, and
    ``steps`` is a multiple of that period so the rebuilds are counted in full.
    """
    rng = np.random.default_rng(0)
    policy = DTPolicy(model, num_envs=num_envs, target_return=10.0, use_cache=use_cache, keep=keep)
    obs = [{k: (rng.integers(0, 256, (num_envs, *sp.shape), dtype=np.uint8) if sp.dtype == np.uint8
                else rng.uniform(-1, 1, (num_envs, *sp.shape)).astype(np.float32))
            for k, sp in PIXEL_SPACE.spaces.items()} for _ in range(8)]
    wall, cpu = [], []
    for t in range(warmup + steps):
        start, start_cpu = time.perf_counter(), time.thread_time()
        policy.act(obs[t % len(obs)])
        if policy.device.type == "cuda":
            torch.cuda.synchronize()
        wall.append(time.perf_counter() - start)
        cpu.append(time.thread_time() - start_cpu)
        policy.record(np.ones(num_envs))
    return {"wall": 1000 * float(np.mean(wall[warmup:])), "cpu": 1000 * float(np.mean(cpu[warmup:]))}


def bench_pixels(device: torch.device, num_envs: int, keeps: tuple[int, ...]) -> dict:
    spec = spec_from_spaces(PIXEL_SPACE, gym.spaces.Discrete(6), obs_encoders=PIXEL_ENCODERS, context_len=K, max_timestep=1000)
    assert spec.tokens_per_step == 36, spec.tokens_per_step
    torch.manual_seed(0)
    model = DecisionTransformer(spec, CFG).to(device).eval()
    # Steps are counted after the window is full (warm-up 2K), over a multiple of every rebuild period.
    periods = [K - keep for keep in keeps]
    steps = int(np.lcm.reduce(periods)) * max(1, 60 // int(np.lcm.reduce(periods)))
    out = {"tokens_per_step": spec.tokens_per_step, "K": K, "num_envs": num_envs, "steps_timed": steps,
           "recompute_ms": pixel_model_ms(model, num_envs, False, None, 2 * K, steps)}
    for keep in keeps:
        out[f"cached_keep{keep}_ms"] = pixel_model_ms(model, num_envs, True, keep, 2 * K, steps)
    return out


def print_pixels(results: dict, envs: list[int], keeps: list[int], threads: int) -> None:
    print(f"model time per env step at 36 tokens per step, K={K} (d=128, 3 layers, 1 head; uint8 pixels, no env; "
          f"{threads} thread(s)); ms per env step, wall / CPU, and how many times cheaper the cache is (CPU):")
    print("  envs | recompute wall / cpu | " + " | ".join(f"cached keep={k}: wall / cpu (x)" for k in keeps))
    for n in envs:
        r = results[f"{n}_envs"]
        full = r["recompute_ms"]
        cells = []
        for k in keeps:
            c = r[f"cached_keep{k}_ms"]
            cells.append(f"{c['wall'] / n:7.2f} / {c['cpu'] / n:6.2f} ({full['cpu'] / c['cpu']:4.1f}x)")
        print(f"  {n:4d} | {full['wall'] / n:9.2f} / {full['cpu'] / n:7.2f} | " + " | ".join(f"{c:>30}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=["train", "model", "eval", "pixels"], default=None,
                        help="sections to run (default: all)")
    parser.add_argument("--keeps", type=int, nargs="+", default=[K // 2, K // 4], help="cache `keep` values for the pixel bench")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the machine has 2 cores)")
    parser.add_argument("--train-steps", type=int, default=40)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 16, 64], help="environment counts for the model and eval sections")
    parser.add_argument("--pixel-envs", type=int, nargs="+", default=[1, 16], help="environment counts for the pixel section")
    parser.add_argument("--recompute-envs", type=int, nargs="*", default=[1, 16],
                        help="env counts at which the eval section also runs the full recompute (slow)")
    parser.add_argument("--backends", nargs="+", default=["sync", "async", "envpool"], help="env backends for the eval section")
    parser.add_argument("--eval-repeats", type=int, default=2,
                        help="alternating raw / cached runs per backend and env count in the eval section (fastest of each kept)")
    parser.add_argument("--keep", type=int, default=None, help=f"cache `keep` for the model and eval sections (default K // 2 = {K // 2})")
    parser.add_argument("--base", default=None, help="an older checkout to compare the train and cached model steps against")
    parser.add_argument("--repeats", type=int, default=3, help="child-process runs per measurement with --base (min taken)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.threads)))
        return
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    keep = K // 2 if args.keep is None else args.keep
    sections = args.only or ["train", "model", "eval", "pixels"]
    results = {"threads": args.threads, "torch": torch.__version__, "device": str(device),
               "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_bf16": cpu_has_bf16()}
    print(f"torch {torch.__version__}, {args.threads} thread(s), CPU capability {results['cpu_capability']}, "
          f"bf16 arithmetic (avx512_bf16/amx_bf16): {'yes' if results['cpu_bf16'] else 'no'}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if "train" in sections:
        results["train"] = bench_train(args.train_steps, device)
        tr = results["train"]
        clock = "CPU time" if device.type == "cpu" else "wall-clock"
        print(f"training step (B={BATCH}, K={K}, d=128, 3 layers, 1 head), median of {args.train_steps} steps ({clock}), {args.threads} threads:")
        for name in ("fp32", "bf16"):
            r = tr[name]
            print(f"  {name}: {r['ms_per_step']:.1f} ms/step   loss {r['loss_first']:.4f} -> {r['loss_last10']:.4f}")
        print(f"  peak RSS of the process after the fp32 run: {tr['peak_rss_mb']:.0f} MB")
    if "model" in sections:
        results["model"] = bench_model(device, tuple(args.envs), args.keep)
        print(f"model ms per vector step (CPU time on a CPU, wall on a GPU) on {ENV_ID} shapes (act + record, all envs batched, no env; keep {keep}):")
        print("  envs | cached | recompute" + (" | cached, CUDA graph" if device.type == "cuda" else ""))
        for n in args.envs:
            r = results["model"][f"{n}_envs"]
            graph = f" | {r['graph_ms']:19.3f}" if "graph_ms" in r else ""
            print(f"  {n:4d} | {r['cached_ms']:6.2f} | {r['recompute_ms']:9.2f}{graph}")
    if "eval" in sections:
        backends = available_backends(args.backends)
        results["eval"] = bench_eval(device, tuple(args.envs), backends, tuple(args.recompute_envs), args.eval_repeats, args.keep)
        print(f"evaluation on {ENV_ID} (1000-step episodes, one per env), env-steps/s, keep {keep}, "
              f"fastest of {args.eval_repeats} alternating raw / cached runs:")
        print("  backend | envs |    raw | cached | recompute | cached / raw | same in CPU time (sync only)")
        for backend in backends:
            for n in args.envs:
                r = results["eval"][f"{backend}/{n}_envs"]
                cpu = f"{100 * r['cpu_ratio']:5.0f}%" if "cpu_ratio" in r else "    -"
                print(f"  {backend:7s} | {n:4d} | {r['raw']:6.0f} | {r['cached']:6.0f} | {r['recompute']:9.0f} | {100 * r['cached_over_raw']:11.0f}% | {cpu}")
    if args.base and ("train" in sections or "model" in sections):
        kinds = (["train_fp32"] + (["train_bf16"] if results["cpu_bf16"] else []) if "train" in sections else []) + \
                (["model16"] if "model" in sections else [])
        results["base"] = cmp = compare_to_base(args.base, kinds, args.repeats, args.threads)
        print(f"against {args.base} (fresh child processes, alternating, min of {args.repeats}; CPU ms):")
        for k in cmp["base"]:
            print(f"  {k}: base {cmp['base'][k]:.2f}, this tree {cmp['this'][k]:.2f}  ->  {cmp['ratio'][k]:.2f}x")
        if "train_bf16" in cmp["this"]:
            print(f"  train_bf16 here / train_fp32 of base: {cmp['this']['train_bf16'] / cmp['base']['train_fp32']:.2f}x")
    if device.type == "cpu":  # the GPU targets are figures of their own (scripts/gpu_check.sh)
        print_acceptance(results)
    if "pixels" in sections:
        results["pixels"] = {f"{n}_envs": bench_pixels(device, n, tuple(args.keeps)) for n in args.pixel_envs}
        print_pixels(results["pixels"], args.pixel_envs, args.keeps, args.threads)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def print_acceptance(results: dict) -> None:
    """Issue 12's CPU targets, each a ratio from this run, next to its threshold."""
    lines = []
    for key, r in results.get("eval", {}).items():
        if key.endswith("/16_envs"):
            ok = "met" if r["cached_over_raw"] >= 0.60 else "NOT met"
            cpu = f"; in CPU time {100 * r['cpu_ratio']:.0f}%" if "cpu_ratio" in r else ""
            lines.append(f"cached eval / raw env, {key.split('/')[0]}, 16 Hopper envs: {100 * r['cached_over_raw']:.0f}% "
                         f"(target >= 60%: {ok}){cpu}")
    cmp = results.get("base")
    if cmp and "train_fp32" in cmp["this"]:
        fp32 = cmp["ratio"]["train_fp32"]
        lines.append(f"training step fp32 / base fp32: {fp32:.2f}x (target <= 0.65x: {'met' if fp32 <= 0.65 else 'NOT met'})")
        if "train_bf16" in cmp["this"]:
            bf16 = cmp["this"]["train_bf16"] / cmp["base"]["train_fp32"]
            lines.append(f"training step bf16 / base fp32: {bf16:.2f}x (target <= 0.45x: {'met' if bf16 <= 0.45 else 'NOT met'})")
    if lines:
        print("acceptance (issue 12, CPU):")
        for line in lines:
            print(f"  {line}")


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (Linux flags); without it bf16 autocast is slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


if __name__ == "__main__":
    main()
