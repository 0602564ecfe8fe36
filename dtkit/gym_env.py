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

__all__ = ["make_env", "quiet_mujoco"]


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` with a clear error for an unknown id and MuJoCo's warnings tamed."""
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as exc:
        raise DtkitError(f"environment {env_id!r} is not registered with gymnasium ({exc}); "
                         "check the id or import the package that registers it") from None
    if "mujoco" in str(spec.entry_point):
        quiet_mujoco()
    return gym.make(env_id, **kwargs)


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
