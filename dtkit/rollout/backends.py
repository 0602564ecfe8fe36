"""Vector-env engines for evaluation: gymnasium ``sync``, gymnasium ``async`` and ``envpool``.

Every engine is handed to :func:`dtkit.rollout.evaluate` as a ``gymnasium.vector.VectorEnv``,
so the episode accounting (equal quotas per env, returns, lengths) is one loop for all of them:

- ``sync``: ``SyncVectorEnv``, every env stepped in this process (the default; no extra cost
  per step, best when the physics is cheap next to the model).
- ``async``: ``AsyncVectorEnv``, one worker process per env (pays off when one env step costs
  far more than the pipe round trip, and cores are free).
- ``envpool``: envpool's C++ thread pool (an optional extra: ``pip install envpool``). Only ids
  that envpool itself implements (MuJoCo, Atari, classic control); its MuJoCo build may differ
  from gymnasium's (see the README's equivalence figures), so gymnasium stays the scorer of
  record for normalised scores.

On ``async`` and ``envpool`` the envs step outside this thread, so :func:`dtkit.rollout.evaluate`
splits them into two halves that take turns: the model picks one half's actions while the other
half's physics runs (:mod:`dtkit.rollout.runner`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from dtkit.errors import DtkitError
from dtkit.gym_env import make_env

__all__ = ["ENV_BACKENDS", "EnvpoolVectorEnv", "make_vector_env"]

ENV_BACKENDS = ("sync", "async", "envpool")
"""The engines ``--env-backend`` accepts."""


def _autoreset(mode: str) -> dict[str, Any]:
    # gymnasium 1.0 has no AutoresetMode: its vector envs always reset on the step after an episode ends,
    # which evaluate handles too. 1.1+ can reset within the step, which saves one model call per episode.
    enum = getattr(gym.vector, "AutoresetMode", None)
    return {"autoreset_mode": getattr(enum, mode)} if enum is not None else {}


def make_vector_env(env: str | Callable[[], gym.Env], num_envs: int, env_kwargs: dict[str, Any] | None = None,
                    recorded_spec: str | None = None, backend: str = "sync") -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``env`` (an id, or a factory of single envs) on the engine ``backend``.

    ``recorded_spec``: a dataset's env spec JSON, used to remake the env it was collected in (see :func:`make_env`).

    Example:
        >>> envs = make_vector_env("CartPole-v1", 8, backend="async")  # doctest: +SKIP
    """
    if backend not in ENV_BACKENDS:
        raise DtkitError(f"env backend {backend!r} is unknown; use one of {', '.join(ENV_BACKENDS)}")
    if backend == "envpool":
        if not isinstance(env, str):
            raise DtkitError("the envpool backend makes envs by id only, not from a factory; pass an env id, or use "
                             "--env-backend sync/async for a wrapped or unregistered env")
        return EnvpoolVectorEnv(env, num_envs, env_kwargs or {})
    if isinstance(env, str):
        kwargs = env_kwargs or {}
        make_env(env, recorded_spec, **kwargs).close()  # an unknown id fails here, once, with a clear line
        factory: Callable[[], gym.Env] = lambda: make_env(env, recorded_spec, **kwargs)
    else:
        factory = env
    if backend == "async":
        # Workers are forked, so envs registered by an --env-module import exist in them too.
        return gym.vector.AsyncVectorEnv([factory for _ in range(num_envs)], context="fork", **_autoreset("SAME_STEP"))
    return gym.vector.SyncVectorEnv([factory for _ in range(num_envs)], **_autoreset("SAME_STEP"))


def _import_envpool() -> Any:
    try:
        import envpool
    except ImportError:
        raise DtkitError("--env-backend envpool needs the envpool package, which is not installed; "
                         "pip install 'envpool>=1.2.5' (an optional extra), or use --env-backend sync or async") from None
    return envpool


class EnvpoolVectorEnv(gym.vector.VectorEnv):
    """envpool's thread pool as a gymnasium ``VectorEnv`` that resets a finished env on the next step.

    envpool seeds its envs when the pool is built, so ``reset(seed=s)`` rebuilds the pool with seed
    ``s``: every target then starts from the same states, as with gymnasium's vector envs. envpool's
    own seeding (env i gets ``seed + i``) draws other start states than gymnasium's for the same seed.
    """

    def __init__(self, env_id: str, num_envs: int, env_kwargs: dict[str, Any], seed: int = 0) -> None:
        envpool = _import_envpool()
        if env_id not in envpool.list_all_envs():
            raise DtkitError(f"envpool does not serve {env_id!r} (it implements its own MuJoCo, Atari and classic-control "
                             "envs only, e.g. Hopper-v5, Pong-v5, CartPole-v1); use --env-backend sync or async for it")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            keys = set(envpool.make_spec(env_id).config._asdict())
        unknown = sorted(set(env_kwargs) - keys)
        if unknown:
            raise DtkitError(f"envpool's {env_id} takes no option(s) {unknown}; drop them or use --env-backend sync or async")
        self._envpool, self._id, self._kwargs = envpool, env_id, dict(env_kwargs)
        self.num_envs = num_envs
        self._pool = self._build(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.single_observation_space = self._pool.observation_space
            self.single_action_space = self._pool.action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        enum = getattr(gym.vector, "AutoresetMode", None)
        self.metadata = {"autoreset_mode": enum.NEXT_STEP} if enum is not None else {}
        self.spec = None
        self._seed = seed
        self._ids = np.arange(num_envs, dtype=np.int32)

    def _build(self, seed: int) -> Any:
        with warnings.catch_warnings():  # envpool builds float64-bounded Boxes, which gymnasium warns about each time
            warnings.simplefilter("ignore", UserWarning)
            return self._envpool.make_gymnasium(self._id, num_envs=self.num_envs, seed=int(seed), **self._kwargs)

    @property
    def env_id(self) -> str:
        return self._id

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if seed is not None:
            first = int(seed[0] if isinstance(seed, (list, tuple, np.ndarray)) else seed)
            self._pool.close()
            self._pool, self._seed = self._build(first), first
        obs, info = self._pool.reset()
        return obs, info

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: Any) -> None:
        """Start every env stepping in envpool's threads and return at once (see :func:`dtkit.rollout.runner.run_target`)."""
        self._pool.send(np.asarray(actions), self._ids)

    def step_wait(self) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._pool.recv()
        ids = np.asarray(info["env_id"])
        if (ids[1:] < ids[:-1]).any():  # a batch comes back in finishing order: put it back in env order
            order = np.argsort(ids)
            obs, reward, terminated, truncated = obs[order], reward[order], terminated[order], truncated[order]
            info = {k: (v[order] if isinstance(v, np.ndarray) and len(v) == len(order) else v) for k, v in info.items()}
        return obs, reward, terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        self._pool.close()
