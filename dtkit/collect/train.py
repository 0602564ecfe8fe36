"""Train an SB3 behaviour agent with evaluated checkpoints, resumably.

A policy folder holds ``step-<steps>.zip`` checkpoints and ``index.json``, which
records each checkpoint's evaluated mean return (deterministic and stochastic
actions). Order of writes: zip (atomic), then index (atomic). A crash loses at
most the chunk in progress; on restart, zips already on disk are reused and
any zip missing from the index is evaluated again.

Resuming is exact for the weights and optimizer, not for the RNG or env state:
a resumed run is reproducible from the same crash point, but differs from an
uninterrupted one. Off-policy replay buffers are kept in a hidden file while
training so a resumed SAC/DQN does not restart from an empty buffer.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dtkit.collect.episodes import evaluate, sb3_actor
from dtkit.collect.recipe import TrainSpec, add_env_kwargs
from dtkit.collect.replay import replay_chunks, replay_file, save_replay_chunk
from dtkit.errors import DtkitError
from dtkit.gym_env import make_env
from dtkit.io import atomic_file, atomic_write_json

__all__ = ["Checkpoint", "PolicyIndex", "load_checkpoint", "prune_checkpoints", "read_index", "train_behaviour"]

INDEX = "index.json"


def replay_buffer_file(steps: int) -> str:
    """The pickled SB3 replay buffer as it stood at checkpoint ``steps`` (resuming an off-policy run needs it)."""
    return f".replay_buffer-{steps:09d}.pkl"


@dataclass(frozen=True)
class Checkpoint:
    """One saved policy and its evaluated returns."""

    file: str
    steps: int
    return_det: float  # mean return, deterministic actions
    return_stoch: float  # mean return, sampled actions
    std_det: float = 0.0
    std_stoch: float = 0.0

    def mean_return(self, deterministic: bool) -> float:
        return self.return_det if deterministic else self.return_stoch


@dataclass(frozen=True)
class PolicyIndex:
    """Contents of ``index.json``: what was trained, how far, and the checkpoints."""

    env_id: str
    algo: str
    seed: int
    run: dict[str, Any]  # env, algo, policy, hyperparams, n_envs, seed: a change means a different run
    trained_steps: int
    eval_episodes: int
    checkpoints: tuple[Checkpoint, ...]

    def to_json(self) -> dict[str, Any]:
        return {"format": 1, **asdict(self)}

    @property
    def final(self) -> Checkpoint:
        return max(self.checkpoints, key=lambda c: c.steps)


def train_run(env_id: str, spec: TrainSpec, seed: int) -> dict[str, Any]:
    """What makes two trainings the same run (the budget may grow; the rest may not).

    Round-tripped through JSON so it compares equal to what ``index.json`` holds.
    """
    blob = {"env_id": env_id, "algo": spec.algo, "policy": spec.policy, "n_envs": spec.n_envs,
            "hyperparams": spec.hyperparams, "seed": seed}
    add_env_kwargs(blob, env_id)  # the env the policy learns depends on them too
    return json.loads(json.dumps(blob, sort_keys=True))


def read_index(policy_dir: str | Path) -> PolicyIndex | None:
    """The policy folder's index, or None when there is none yet."""
    path = Path(policy_dir) / INDEX
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    del d["format"]
    return PolicyIndex(**{**d, "checkpoints": tuple(Checkpoint(**c) for c in d["checkpoints"])})


def _algo_class(algo: str) -> Any:
    """The SB3 class a recipe's ``train.algo`` names (``TrainSpec.algo`` lists them)."""
    return getattr(importlib.import_module("stable_baselines3"), algo.upper())


def load_checkpoint(policy_dir: str | Path, file: str, algo: str) -> Any:
    """Load checkpoint ``file`` for inference, on CPU (tiny MLPs run faster there than on a GPU)."""
    path = Path(policy_dir) / file
    if not path.is_file():
        raise DtkitError(f"checkpoint {path} is listed in {INDEX} but missing; delete {policy_dir} to retrain")
    # Schedules are pickled closures that may not load across Python versions;
    # inference never needs them, so replace them (SB3's documented workaround).
    custom = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "clip_range": lambda _: 0.0,
              "exploration_schedule": lambda _: 0.0}
    return _algo_class(algo).load(path, device="cpu", custom_objects=custom)


def _save_zip(model: Any, path: Path) -> None:
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        model.save(f)


def train_behaviour(
    env_id: str,
    spec: TrainSpec,
    policy_dir: str | Path,
    *,
    seed: int = 0,
    progress: bool = False,
    record_replay: bool = False,
) -> PolicyIndex:
    """Train (or resume, or reuse) an SB3 agent, checkpointing every ``spec.checkpoint_every`` steps.

    Returns at once when ``index.json`` says ``spec.steps`` were already trained.
    A failure while training keeps the checkpoints so far and says how to resume.
    With ``record_replay`` (off-policy algorithms), each checkpoint's newly
    collected transitions are also saved as ``replay-<steps>.npz``, the
    material of a ``medium-replay`` tier (see :mod:`dtkit.collect.replay`).

    Example:
        >>> spec = TrainSpec(algo="ppo", steps=2048, checkpoint_every=1024)
        >>> index = train_behaviour("CartPole-v1", spec, "runs/policies/cp")  # doctest: +SKIP
        >>> [c.return_det for c in index.checkpoints]  # doctest: +SKIP
    """
    from stable_baselines3.common.env_util import make_vec_env

    policy_dir = Path(policy_dir)
    run = train_run(env_id, spec, seed)
    index = read_index(policy_dir)
    if index is not None and index.run != run:
        raise DtkitError(
            f"{policy_dir} holds checkpoints of a different run ({index.algo} on {index.env_id}, "
            f"seed {index.seed}, other hyperparameters); delete it or choose another policy dir"
        )
    if index is not None and index.trained_steps >= spec.steps:
        return index
    # Only checkpoints whose zip survived count; the rest are retrained.
    ckpts = {c.file: c for c in (index.checkpoints if index else ()) if (policy_dir / c.file).is_file()}
    policy_dir.mkdir(parents=True, exist_ok=True)

    def record(model: Any, file: str) -> None:
        # Evaluate with a private RNG seed so evaluation never perturbs training.
        det = evaluate(env_id, sb3_actor(model, True), spec.eval_episodes, seed)
        sto = evaluate(env_id, sb3_actor(model, False), spec.eval_episodes, seed)
        ckpts[file] = Checkpoint(file, model.num_timesteps, det[0], sto[0], det[1], sto[1])
        listed = tuple(sorted(ckpts.values(), key=lambda c: c.steps))
        atomic_write_json(policy_dir / INDEX, PolicyIndex(
            env_id, spec.algo, seed, run, listed[-1].steps, spec.eval_episodes, listed,
        ).to_json())

    venv = make_vec_env(functools.partial(make_env, env_id), n_envs=spec.n_envs, seed=seed)
    zips = sorted(policy_dir.glob("step-*.zip"))
    cls = _algo_class(spec.algo)
    if zips:
        model = cls.load(zips[-1], env=venv, device="cpu")
        # Reseed from the crash point so a resumed run is itself reproducible.
        model.set_random_seed(seed + model.num_timesteps)
        if hasattr(model, "load_replay_buffer"):
            # The buffer of exactly this checkpoint: a crash between the pickle and the zip
            # leaves a newer pickle behind, which must not be paired with the older policy.
            buffer = policy_dir / replay_buffer_file(model.num_timesteps)
            if buffer.is_file():
                model.load_replay_buffer(buffer)
            else:
                print(f"dtkit: {policy_dir} has no {buffer.name}; {spec.algo} resumes at step "
                      f"{model.num_timesteps:,} with an empty replay buffer", file=sys.stderr)
        for z in zips:  # a crash between a zip and its index entry: evaluate it now
            if z.name not in ckpts:
                record(cls.load(z, device="cpu"), z.name)
    else:
        try:
            # A deep copy: the spec stays frozen data whatever SB3 does with its arguments.
            model = cls(spec.policy, venv, seed=seed, device="cpu", verbose=0, **copy.deepcopy(spec.hyperparams))
        except TypeError as e:
            raise DtkitError(f"train.hyperparams for {spec.algo}: {e}; fix or remove that key") from e

    if "tensorboard_log" not in spec.hyperparams:
        # SB3's own logger makes an empty /tmp/SB3-<time> folder on every learn() call, even at verbose=0.
        from stable_baselines3.common.logger import Logger

        model.set_logger(Logger(folder=None, output_formats=[]))
    bar, callback = _progress_bar(spec.steps, model.num_timesteps, f"train {spec.algo} {env_id}", progress)
    try:
        while model.num_timesteps < spec.steps:
            target = min(spec.steps, (model.num_timesteps // spec.checkpoint_every + 1) * spec.checkpoint_every)
            start_steps, start_pos = model.num_timesteps, model.replay_buffer.pos if record_replay else 0
            model.learn(target - model.num_timesteps, reset_num_timesteps=False, callback=callback)
            if record_replay:  # before the zip: a chunk never lags behind its checkpoint
                rows = (model.num_timesteps - start_steps) // spec.n_envs
                save_replay_chunk(model, start_pos, rows, policy_dir / replay_file(model.num_timesteps))
            file = f"step-{model.num_timesteps:09d}.zip"
            if hasattr(model, "save_replay_buffer") and model.num_timesteps < spec.steps:
                with atomic_file(policy_dir / replay_buffer_file(model.num_timesteps)) as tmp, open(tmp, "wb") as f:
                    model.save_replay_buffer(f)
            _save_zip(model, policy_dir / file)
            _drop_replay_buffers(policy_dir, keep=model.num_timesteps)
            record(model, file)
            bar.set_postfix(ret=f"{ckpts[file].return_det:.1f}")
    except DtkitError:
        raise
    except Exception as e:
        done = max((c.steps for c in ckpts.values()), default=0)
        raise DtkitError(
            f"training {spec.algo} on {env_id} failed after {done} of {spec.steps} steps ({type(e).__name__}: {e}); "
            f"the checkpoints so far are kept in {policy_dir}: run the same build again to resume from step {done}"
        ) from e
    finally:
        bar.close()
        venv.close()
    _drop_replay_buffers(policy_dir, keep=None)  # training is complete: the buffer is dead weight
    result = read_index(policy_dir)
    assert result is not None
    return result


def prune_checkpoints(policy_dir: str | Path, keep: set[str], *, replay_upto: int | None = None) -> PolicyIndex:
    """Delete checkpoint zips not in ``keep`` and drop them from the index.

    The index keeps ``trained_steps``, so the pruned folder still counts as fully
    trained and tier selection on it picks the same checkpoints as before.
    With ``replay_upto``, replay chunks past that step are deleted too (a
    medium-replay tier needs only those up to its checkpoint).
    """
    policy_dir = Path(policy_dir)
    index = read_index(policy_dir)
    if index is None:
        raise DtkitError(f"{policy_dir} has no {INDEX}; train first")
    kept = tuple(c for c in index.checkpoints if c.file in keep)
    doomed = [z for z in policy_dir.glob("step-*.zip") if z.name not in keep]
    if replay_upto is not None:
        doomed += [p for s, p in replay_chunks(policy_dir).items() if s > replay_upto]
    if not doomed and len(kept) == len(index.checkpoints):
        return index  # already pruned: leave a read-only (installed) folder untouched
    pruned = dataclasses.replace(index, checkpoints=kept)
    atomic_write_json(policy_dir / INDEX, pruned.to_json())  # index first: it never names a deleted zip
    for z in doomed:
        z.unlink()
    return pruned


def _drop_replay_buffers(policy_dir: Path, keep: int | None) -> None:
    """Delete the pickled replay buffers, all but checkpoint ``keep``'s (each is as big as the buffer)."""
    for p in policy_dir.glob(".replay_buffer*.pkl"):
        if keep is None or p.name != replay_buffer_file(keep):
            p.unlink(missing_ok=True)


def _progress_bar(total: int, initial: int, desc: str, enabled: bool) -> tuple[Any, Any]:
    """A tqdm bar of environment steps, and the SB3 callback that moves it."""
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not enabled, dynamic_ncols=True)

    class _Bar(BaseCallback):
        def _on_step(self) -> bool:
            bar.update(self.model.num_timesteps - bar.n)
            return True

    return bar, _Bar()
