"""Shared fixtures. ``tiny_world``: one generated ``tiny`` world (seed 0) per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a canonical dataset made by ``generate_world`` at scale ``tiny``, seed 0 (read-only)."""
    from fluidrec.data.world import WorldConfig, generate_world

    out = tmp_path_factory.mktemp("tiny_world")
    return generate_world(WorldConfig.for_scale("tiny", seed=0), out, progress=False)
