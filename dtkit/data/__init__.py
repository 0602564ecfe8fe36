"""Data: Minari datasets to trajectories, returns-to-go, statistics and the segment sampler.

Never imports :mod:`dtkit.model`.
"""

from __future__ import annotations

from dtkit.data.lazy import LazyObs, lazy_obs_keys
from dtkit.data.sampler import SegmentSampler
from dtkit.data.spaces import check_env_spaces, check_supported, spec_from_spaces
from dtkit.data.trajectories import Trajectories, load_trajectories, obs_statistics, returns_to_go

__all__ = [
    "LazyObs",
    "SegmentSampler",
    "Trajectories",
    "check_env_spaces",
    "check_supported",
    "lazy_obs_keys",
    "load_trajectories",
    "obs_statistics",
    "returns_to_go",
    "spec_from_spaces",
]
