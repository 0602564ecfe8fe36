"""dtkit: decision transformers for every modality.

Returns-to-go, observations (vectors, images, audio, your own sensors), actions
and rewards become tokens of one causal Transformer, trained on local Minari
datasets and evaluated in Gymnasium environments with an exact KV cache.

Example:
    >>> import dtkit
    >>> result = dtkit.train(dtkit.TrainConfig(dataset="dtkit/cartpole/mixed-v0", steps=2000))  # doctest: +SKIP
    >>> policy = dtkit.make_policy(result.run_dir, num_envs=1, target_return=500)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public names and the modules that define them; imported on first use so that
# `dtkit --help` and `import dtkit` stay fast.
_EXPORTS = {
    "DecisionTransformer": "dtkit.model",
    "ModelConfig": "dtkit.model",
    "Encoder": "dtkit.encoders",
    "EncoderConfig": "dtkit.encoders",
    "FieldInfo": "dtkit.encoders",
    "register_encoder": "dtkit.encoders",
    "Spec": "dtkit.spec",
    "Trajectories": "dtkit.data",
    "load_trajectories": "dtkit.data",
    "SegmentSampler": "dtkit.data",
    "TrainConfig": "dtkit.trainer",
    "train": "dtkit.trainer",
    "load_checkpoint": "dtkit.trainer",
    "DTPolicy": "dtkit.policy",
    "evaluate": "dtkit.rollout",
    "EvalReport": "dtkit.rollout",
    "make_policy": "dtkit.api",
    "run_eval": "dtkit.api",
    "run_demo": "dtkit.api",
    "EvalConfig": "dtkit.api",
    "DemoConfig": "dtkit.api",
    "build_recipe": "dtkit.collect",
    "DtkitError": "dtkit.errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dtkit' has no attribute {name!r}")


def load_dataset(dataset_id: str) -> Any:
    """Load a local Minari dataset as :class:`~dtkit.data.Trajectories` (alias of ``load_trajectories``)."""
    from dtkit.data import load_trajectories

    return load_trajectories(dataset_id)


__all__.append("load_dataset")
