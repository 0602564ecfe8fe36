"""Bundled Gymnasium environments, installed as ``dtkit.envs``.

Environments here stand alone: they never import dtkit's model or trainer.
Vision and speech tasks register themselves as ``dtkit/...-vN``.
"""

import gymnasium as gym

__all__: list[str] = []


def _register(env_id: str, entry_point: str, **kwargs: object) -> None:
    # Idempotent, so importing this package twice (or under both names) is harmless.
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=entry_point, kwargs=kwargs)


# Vision (issue 10). Entry points are lazy strings: registering imports neither minigrid nor ale-py.
_register("dtkit/DoorKey-5x5-RGB-v0", "dtkit.envs.minigrid_rgb:make_doorkey_rgb", size=5, tile_size=8, max_steps=100)
_register("dtkit/Breakout-v0", "dtkit.envs.atari:make_atari", game="Breakout", frame_stack=4)
_register("dtkit/Pong-v0", "dtkit.envs.atari:make_atari", game="Pong", frame_stack=4)

# Speech (issue 11): spoken-instruction tasks; `voices="heldout"` selects unseen speakers.
_register("dtkit/SpokenGoal-v0", "dtkit.envs.speech_tasks:SpokenGoalEnv", instruction="every_step")
_register("dtkit/SpokenGoalMemory-v0", "dtkit.envs.speech_tasks:SpokenGoalEnv", instruction="first_step")
_register("dtkit/SpokenGoTo-v0", "dtkit.envs.speech_tasks:SpokenGoToEnv", instruction="every_step", home_share=1.0,
          start="anywhere")
# The same tasks spoken by held-out voices, so `dtkit eval --env-id ...` can test on unseen speakers.
_register("dtkit/SpokenGoal-heldout-v0", "dtkit.envs.speech_tasks:SpokenGoalEnv", instruction="every_step", voices="heldout")
_register("dtkit/SpokenGoalMemory-heldout-v0", "dtkit.envs.speech_tasks:SpokenGoalEnv", instruction="first_step", voices="heldout")
_register("dtkit/SpokenGoTo-heldout-v0", "dtkit.envs.speech_tasks:SpokenGoToEnv", instruction="every_step", voices="heldout",
          home_share=1.0, start="anywhere")
