"""Hand-made canonical datasets for tests that must not depend on the world generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fluidrec.data.io import write_manifest, write_table

T0 = 1_700_006_400_000  # a UTC midnight, ms
MIN = 60_000


def make_minimal_dataset(root: Path, *, days: int = 2, rooms_per_day: int = 3, seed: int = 0) -> Path:
    """A small, valid dataset: rooms of 30 min with 2-minute slices, one video, impressions per minute."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    n_rooms = days * rooms_per_day
    room_start = np.array([T0 + d * 1440 * MIN + (60 + 90 * r) * MIN for d in range(days) for r in range(rooms_per_day)], np.int64)
    room_end = room_start + 30 * MIN
    rooms = {"room_id": np.arange(n_rooms) + 100, "author_id": np.arange(n_rooms) % 2, "start_ts": room_start, "end_ts": room_end}
    sl_room, sl_start = [], []
    for rid, s in zip(rooms["room_id"], room_start):
        for k in range(15):
            sl_room.append(rid)
            sl_start.append(s + 2 * k * MIN)
    n_live = len(sl_room)
    slices = {
        "slice_id": np.arange(n_live + 1),
        "room_id": np.array(sl_room + [-1]),
        "start_ts": np.array(sl_start + [T0], np.int64),
        "end_ts": np.array([s + 2 * MIN for s in sl_start] + [T0 + MIN], np.int64),
        "domain": ["live"] * n_live + ["video"],
        "title": [f"room {r} title" for r in sl_room] + ["a short video"],
    }
    ts, room, slc, user = [], [], [], []
    for i, (rid, s) in enumerate(zip(rooms["room_id"], room_start)):
        for m in range(30):
            ts.append(s + m * MIN + 1)
            room.append(rid)
            slc.append(i * 15 + m // 2)
            user.append(m % 4)
    order = np.argsort(ts, kind="stable")
    n = len(ts)
    click = (rng.random(n) < 0.3).astype(np.int8)
    impressions = {
        "ts": np.array(ts, np.int64)[order],
        "user_id": np.array(user)[order],
        "room_id": np.array(room)[order],
        "slice_id": np.array(slc)[order],
        "click": click,
        "long_view": click * (rng.random(n) < 0.5),
        "like": np.zeros(n, np.int8),
        "follow": np.zeros(n, np.int8),
        "gift": np.zeros(n, np.int8),
        "watch_s": click * rng.uniform(1, 100, n).astype(np.float32),
    }
    write_table(root, "authors", {"author_id": [0, 1]})
    write_table(root, "rooms", rooms)
    write_table(root, "slices", slices)
    write_table(root, "impressions", impressions)
    write_table(root, "queries", {"query_id": [0, 1], "query_text": ["room", "video"], "slice_id": [0, n_live]})
    write_table(root, "users", {"user_id": np.arange(4)})
    write_manifest(root, source="test-minimal", seed=seed, extra={"frame_size": None})
    return root
