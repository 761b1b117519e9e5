"""A small hand-made canonical dataset with codes, so ranker tests do not depend on the world generator.

Clicks depend on user-topic affinity (visible through codes) plus a per-room effect (only an
item ID can memorise it), so every arm has something to learn in a few steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fluidrec.data.io import write_manifest, write_table
from fluidrec.data.schema import LABELS_BINARY

DAY = 86_400_000
LEVELS, N_CODES = 3, 8


def make_toy_dataset(root: Path, n_imp: int = 6000, seed: int = 0) -> tuple[Path, Path]:
    """Write dataset to root/ds and codes (slice_codes.parquet, room_codes.parquet) to root/codes."""
    rng = np.random.default_rng(seed)
    ds, codes_dir = root / "ds", root / "codes"
    n_users, n_rooms, n_topics = 200, 120, 6
    t0 = 1_700_000_000_000
    room_start = np.sort(rng.integers(t0, t0 + 2 * DAY, n_rooms))
    room_len = rng.integers(20, 90, n_rooms) * 60_000
    room_topic = rng.integers(0, n_topics, n_rooms)
    room_effect = rng.normal(0, 1.0, n_rooms)
    # Slices: 2-minute pieces; topic mostly the room's, sometimes drifting.
    s_room, s_start, s_topic = [], [], []
    for r in range(n_rooms):
        for k in range(int(room_len[r] // 120_000)):
            s_room.append(r)
            s_start.append(room_start[r] + k * 120_000)
            s_topic.append(room_topic[r] if rng.random() < 0.8 else rng.integers(0, n_topics))
    s_room, s_start, s_topic = np.array(s_room), np.array(s_start), np.array(s_topic)
    n_slices = len(s_room)
    slice_codes = np.stack([s_topic % N_CODES, rng.integers(0, N_CODES, n_slices), rng.integers(0, N_CODES, n_slices)], 1)
    # Impressions: pick a random slice, a time inside it, a user.
    pick = rng.integers(0, n_slices, n_imp)
    ts = s_start[pick] + rng.integers(0, 120_000, n_imp)
    order = np.argsort(ts, kind="stable")
    pick, ts = pick[order], ts[order]
    users = rng.integers(0, n_users, n_imp)
    user_pref = rng.normal(0, 1.5, (n_users, n_topics))
    logit = user_pref[users, s_topic[pick]] + room_effect[s_room[pick]] - 1.0
    click = (rng.random(n_imp) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    labels = {"click": click}
    for j, lab in enumerate(LABELS_BINARY[1:]):
        labels[lab] = (click & (rng.random(n_imp) < 0.5 / (j + 1))).astype(np.int8)
    write_table(ds, "rooms", {"room_id": np.arange(n_rooms) + 1000, "author_id": np.arange(n_rooms) % 40,
                              "start_ts": room_start, "end_ts": room_start + room_len})
    write_table(ds, "slices", {"slice_id": np.arange(n_slices), "room_id": s_room + 1000, "start_ts": s_start,
                               "end_ts": s_start + 120_000, "domain": ["live"] * n_slices, "title": ["t"] * n_slices})
    write_table(ds, "users", {"user_id": np.arange(n_users), "age_bucket": rng.integers(0, 5, n_users),
                              "gender": rng.integers(0, 2, n_users), "region": rng.integers(0, 8, n_users),
                              "activity_level": rng.integers(0, 4, n_users)})
    write_table(ds, "impressions", {"ts": ts, "request_id": np.arange(n_imp), "user_id": users,
                                    "room_id": s_room[pick] + 1000, "slice_id": pick,
                                    "position": rng.integers(0, 10, n_imp), **labels,
                                    "watch_s": click.astype(np.float32) * 30})
    write_manifest(ds, source="toy", seed=seed)
    codes_dir.mkdir(parents=True, exist_ok=True)
    cols = {"slice_id": pa.array(np.arange(n_slices), pa.int64())}
    cols.update({f"c{i + 1}": pa.array(slice_codes[:, i], pa.int32()) for i in range(LEVELS)})
    pq.write_table(pa.table(cols), codes_dir / "slice_codes.parquet")
    # Room code: the room's dominant topic at level 1 (a stand-in for the causal vote).
    rc = np.stack([room_topic[s_room[pick]] % N_CODES, np.zeros(n_imp, int), np.zeros(n_imp, int)], 1)
    rcols = {"row": pa.array(np.arange(n_imp), pa.int64()), "room_id": pa.array(s_room[pick] + 1000, pa.int64())}
    rcols.update({f"r{i + 1}": pa.array(rc[:, i], pa.int32()) for i in range(LEVELS)})
    pq.write_table(pa.table(rcols), codes_dir / "room_codes.parquet")
    return ds, codes_dir


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> tuple[Path, Path]:
    """(dataset dir, codes dir) of the toy dataset."""
    return make_toy_dataset(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="session")
def toy_features(toy):
    from fluidrec.ranker.features import FeatureConfig, build_features

    ds, codes = toy
    return build_features(ds, codes / "slice_codes.parquet", codes / "room_codes.parquet", FeatureConfig(test_fraction=0.25, user_buckets=1024, author_buckets=256))
