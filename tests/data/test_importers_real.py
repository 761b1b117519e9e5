"""Import the real MicroLens-50k and MIND-small sample when the shared data is present.

Set FLUIDREC_SHARED_DATA to the directory holding ``microlens_50k`` and
``mind_small_sample`` (default: ``<repo>/../shared/data``). The data is never
copied into the repository; subsets keep this test to a few seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fluidrec.data.importers import ImportOptions, import_microlens, import_mind
from tests.fixtures.checks import assert_negatives_valid, load

SHARED = Path(os.environ.get("FLUIDREC_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))


def _need(sub: str) -> Path:
    p = SHARED / sub
    if not p.is_dir():
        pytest.skip(f"real data not found at {p} (set FLUIDREC_SHARED_DATA to the shared data directory)")
    return p


def test_real_microlens_subset(tmp_path):
    src = _need("microlens_50k")
    s = import_microlens(src, tmp_path, ImportOptions(max_users=2000, negatives=1, seed=0, progress=False))
    assert s.users == 2000 and s.bad_rows == 0 and s.notes["items_without_title"] == 0
    assert s.sampled_negatives > 0.99 * s.positives
    imp, rooms, _ = load(tmp_path)
    assert assert_negatives_valid(imp, rooms) == s.sampled_negatives


def test_real_mind_sample(tmp_path):
    src = _need("mind_small_sample") / "MINDsmall_train"
    s = import_mind(src, tmp_path, ImportOptions(max_users=1000, progress=False))
    assert s.users == 1000 and s.bad_rows == 0 and s.positives > 0 and s.logged_negatives > 10 * s.positives
    load(tmp_path)
