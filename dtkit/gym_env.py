"""Making Gymnasium environments: one place for the id check and MuJoCo's warnings.

MuJoCo prints its warnings to the terminal and appends them to ``MUJOCO_LOG.TXT``
in the working directory. Gymnasium's HalfCheetah XML uses a compiler attribute
current MuJoCo releases deprecate (`settotalmass`), so every HalfCheetah env made (ten per evaluation, one per
rollout worker) repeated that notice and left the log file behind. dtkit routes
MuJoCo's warnings through Python's ``warnings`` instead and drops that one
deprecation notice, which users cannot act on.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import gymnasium as gym

from dtkit.errors import DtkitError

__all__ = ["make_env", "env_spec_for", "import_env_modules", "quiet_mujoco"]


def import_env_modules(modules: tuple[str, ...] | list[str]) -> None:
    """Import modules that register environments (``--env-module``), with one clear error per bad name."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise DtkitError(f"--env-module {name!r} could not be imported ({exc}); put the module that calls "
                             "gymnasium.register on PYTHONPATH (or install its package)") from None


def env_spec_for(env_id: str, recorded_spec: str | None = None) -> gym.envs.registration.EnvSpec:
    """The spec to make ``env_id`` from.

    ``env_id`` may use gymnasium's ``"module:Env-v0"`` form (the module is
    imported first, as ``gym.make`` does). When ``recorded_spec`` (a dataset's
    ``env_spec`` JSON, as Minari stores it) describes the same id, it wins: it
    carries the kwargs, time limit and wrappers the data was collected with,
    and it rebuilds envs registered only in the collecting process (the
    ``dtkit_tiny/...`` envs of ``--tiny`` builds).
    """
    module, sep, name = env_id.rpartition(":")
    if sep:
        try:
            import_env_modules([module])
        except DtkitError as exc:
            raise DtkitError(f"environment {env_id!r}: {str(exc).removeprefix('--env-module ')}") from None
    else:
        name = env_id
    if recorded_spec:
        try:
            rec = gym.envs.registration.EnvSpec.from_json(recorded_spec)
        except Exception:  # a spec from another gymnasium version: the registry below decides
            rec = None
        if rec is not None and rec.id == name:
            return rec
    if name.startswith("dtkit/"):
        import dtkit.envs  # noqa: F401  registers the bundled dtkit/... ids (cheap: lazy entry points)
    try:
        return gym.spec(name)
    except gym.error.Error as exc:
        raise DtkitError(f"environment {env_id!r} is not registered with gymnasium ({exc}); check the id, "
                         "write it as 'module:Env-v0', or pass --env-module with the module that registers it") from None


def make_env(env_id: str, recorded_spec: str | None = None, **kwargs: Any) -> gym.Env:
    """``gym.make`` with a clear error for an unknown id and MuJoCo's warnings tamed.

    See :func:`env_spec_for` for ``"module:Env-v0"`` ids and ``recorded_spec``.
    """
    spec = env_spec_for(env_id, recorded_spec)
    if "mujoco" in str(spec.entry_point):
        quiet_mujoco()
    try:
        return gym.make(spec, **kwargs)
    except (gym.error.Error, ImportError) as exc:  # a missing extra or a bad entry point: the user's to fix
        if recorded_spec and spec.id in gym.registry:  # the recorded wrappers are gone; the registered env may still do
            import sys

            print(f"dtkit: warning: the dataset's recorded spec of {spec.id!r} could not be made ({exc}); "
                  "using the registered env, without the recorded wrappers", file=sys.stderr)
            return gym.make(gym.spec(spec.id), **kwargs)
        raise DtkitError(f"environment {env_id!r} could not be made ({type(exc).__name__}: {exc}); "
                         "install its package or check the id") from None


@functools.cache
def quiet_mujoco() -> None:
    """Send MuJoCo's warnings to ``warnings.warn``, dropping compiler deprecation notices.

    A handler the user installed is left in place.
    """
    import mujoco

    if mujoco.get_mju_user_warning() is not None:
        return

    def on_warning(message: str) -> None:
        if "compiler attribute" in message and "deprecated" in message:
            return
        warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)

    mujoco.set_mju_user_warning(on_warning)
