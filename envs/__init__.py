"""Bundled Gymnasium environments, installed as ``dtkit.envs``.

Environments here stand alone: they never import dtkit's model or trainer.
Vision and speech tasks register themselves as ``dtkit/...-vN``.
"""

__all__: list[str] = []
