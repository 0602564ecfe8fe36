"""Shared fixtures: every test gets its own MINARI_DATASETS_PATH and few torch threads."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def minari_root(tmp_path_factory, monkeypatch):
    """Point Minari at a fresh temporary folder so tests never touch ~/.minari."""
    root = tmp_path_factory.mktemp("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root
