"""Memory and speed of training on image datasets read lazily (dtkit.data.lazy).

For each dataset size it builds (once) a synthetic Minari dataset of uint8
images, then, each in a fresh process:

- trains a DT with the ``cnn`` encoder for ``--steps`` updates and reports the
  process's peak RSS (``ru_maxrss``): the first load writes the observation
  cache, so the peak covers that too (the cache is removed before each run);
- times the sampler alone: batches/s with and without the prefetch thread.

The images are random noise (synthetic, cheap to generate, incompressible);
only their size and dtype matter here. ``--kind atari`` makes (4, 84, 84)
sliding frame stacks, which the cache stores as single frames.

Usage:
    python scripts/bench_lazy.py --frames 100000 500000 --steps 50
    python scripts/bench_lazy.py --kind atari --frames 50000 --steps 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

KINDS = {"rgb": (40, 40, 3), "atari": (4, 84, 84)}


def build(dataset_id: str, kind: str, frames: int, episode_len: int = 200, seed: int = 0) -> None:
    """A synthetic dataset of ``frames`` steps, streamed to disk episode by episode."""
    import gymnasium as gym

    from dtkit.collect.episodes import Episode
    from dtkit.collect.writer import DatasetStream, dataset_build_info

    if dataset_build_info(dataset_id) is not None:
        return
    shape = KINDS[kind]
    space = gym.spaces.Box(0, 255, shape, np.uint8)
    rng = np.random.default_rng(seed)
    with DatasetStream(dataset_id, env_id=None, algorithm_name="synthetic", description="bench_lazy: random images",
                       code_permalink="scripts/bench_lazy.py", observation_space=space,
                       action_space=gym.spaces.Discrete(4)) as out:
        done = 0
        while done < frames:
            n = min(episode_len, frames - done)
            if kind == "atari":  # sliding stacks of single frames, as FrameStackObservation makes them
                single = rng.integers(0, 256, (n + 1, *shape[1:]), dtype=np.uint8)
                obs = single[np.maximum(np.arange(n + 1)[:, None] - 3 + np.arange(4), 0)]
            else:
                obs = rng.integers(0, 256, (n + 1, *shape), dtype=np.uint8)
            out.add(Episode(seed=None, observations=obs, actions=rng.integers(4, size=n), rewards=rng.random(n),
                            terminations=np.r_[np.zeros(n - 1, bool), True], truncations=np.zeros(n, bool)), "synthetic")
            done += n
        out.finish(ref_min_score=None, ref_max_score=None, ref_episodes=0, build_info={"frames": frames, "kind": kind})


CHILD = textwrap.dedent("""
    import json, resource, sys, time, torch
    torch.set_num_threads(1)
    from dtkit.data import SegmentSampler, load_trajectories, spec_from_spaces
    from dtkit.trainer import TrainConfig, train
    from dtkit.model import ModelConfig
    dataset, steps, run_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    t = time.perf_counter()
    cfg = TrainConfig(dataset=dataset, steps=steps, batch_size=64, context_len=20, checkpoint_every=10**9,
                      log_every=max(1, steps), run_dir=run_dir, progress=False, model=ModelConfig())
    result = train(cfg, progress=False)
    train_s = time.perf_counter() - t
    peak_train = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    traj = load_trajectories(dataset)
    spec = spec_from_spaces(traj.observation_space, traj.action_space, context_len=20)
    rates = {}
    for prefetch in (0, 2):
        s = SegmentSampler(traj, spec, batch_size=64, seed=1, prefetch=prefetch)
        s.sample()
        t = time.perf_counter(); n = 0
        while time.perf_counter() - t < 5.0:
            s.sample(); n += 1
        rates[prefetch] = n / (time.perf_counter() - t)
        s.close()
    print(json.dumps({"steps": steps, "train_s": train_s, "peak_rss_mib_train": peak_train,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "batches_per_s": rates[0], "batches_per_s_prefetch": rates[2],
                      "num_steps": traj.num_steps}))
""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, nargs="+", default=[100_000, 500_000])
    ap.add_argument("--kind", choices=sorted(KINDS), default="rgb")
    ap.add_argument("--steps", type=int, default=50, help="training updates per size")
    ap.add_argument("--root", default="/tmp/dtkit-bench-lazy", help="MINARI_DATASETS_PATH for the synthetic datasets")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    os.environ["MINARI_DATASETS_PATH"] = args.root
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    rows = []
    for frames in args.frames:
        dataset_id = f"bench/{args.kind}/frames{frames}-v0"
        build(dataset_id, args.kind, frames)
        folder = Path(args.root) / dataset_id
        shutil.rmtree(folder / "obs_cache", ignore_errors=True)  # the run below builds it, inside the measured peak
        run_dir = Path(args.root) / "runs" / f"{args.kind}-{frames}"
        shutil.rmtree(run_dir, ignore_errors=True)
        out = subprocess.run([sys.executable, "-c", CHILD, dataset_id, str(args.steps), str(run_dir)], env=env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(out.stderr[-3000:])
        row = json.loads(out.stdout.strip().splitlines()[-1])
        size = sum(p.stat().st_size for p in (folder / "data").rglob("*") if p.is_file())
        row |= {"frames": frames, "kind": args.kind, "frame_shape": list(KINDS[args.kind]),
                "dataset_gib": size / 2**30,
                "cache_gib": sum(p.stat().st_size for p in (folder / "obs_cache").glob("*.bin")) / 2**30}
        rows.append(row)
        print(f"{frames:>9,} frames {KINDS[args.kind]} ({row['dataset_gib']:.2f} GiB in Minari, cache "
              f"{row['cache_gib']:.2f} GiB): peak RSS {row['peak_rss_mib']:.0f} MiB "
              f"(training {row['steps']} updates: {row['peak_rss_mib_train']:.0f} MiB, {row['train_s']:.0f} s incl. "
              f"first load); sampler B=64 K=20: {row['batches_per_s']:.1f} batches/s, "
              f"{row['batches_per_s_prefetch']:.1f} with prefetch", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
