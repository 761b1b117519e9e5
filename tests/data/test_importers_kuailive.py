"""KuaiLive-M3 importer on a generated fixture in the published layout."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from fluidrec.data.embeddings import read_embeddings
from fluidrec.data.importers import ImportOptions, import_kuailive_m3
from fluidrec.data.io import Dataset
from fluidrec.errors import DataError
from tests.fixtures.checks import assert_negatives_valid, load
from tests.fixtures.kuailive_m3 import MIN, T0, write_kuailive_m3_fixture

QUIET = ImportOptions(progress=False)


@pytest.fixture(scope="module")
def klm3(tmp_path_factory):
    return write_kuailive_m3_fixture(tmp_path_factory.mktemp("klm3"))


def test_sessions_shows_segments_and_videos(klm3, tmp_path):
    s = import_kuailive_m3(klm3, tmp_path, QUIET)
    imp, rooms, slices = load(tmp_path)
    # room 103 has no segment (1 session + 1 show dropped); room 105 has no metadata (1 session dropped)
    assert s.notes["impressions_dropped_room_without_segments"] == 2 and s.notes["impressions_dropped_room_not_in_meta"] == 1
    assert (s.positives, s.logged_negatives, s.items) == (7, 5, 3)
    assert sorted(rooms["room_id"].tolist()) == [101, 102, 104]
    r104 = rooms["room_id"].tolist().index(104)
    assert rooms["end_ts"][r104] == T0 + 65 * MIN  # null end_timestamp -> start + live_duration
    # session of user 1 in room 102 at minute 13 lands on the segment (12, 14] and keeps its labels
    k = np.flatnonzero((imp["user_id"] == 1) & (imp["room_id"] == 102))[0]
    sl = slices["slice_id"].index(int(imp["slice_id"][k]))
    assert (slices["start_ts"][sl], slices["end_ts"][sl]) == (T0 + 12 * MIN, T0 + 14 * MIN)
    assert slices["comments"][sl] == "looks tasty"
    assert (imp["click"][k], imp["like"][k], imp["gift"][k], imp["long_view"][k], imp["watch_s"][k]) == (1, 1, 1, 1, 120.0)
    # user 4 at minute 35 in room 101: after segment 30, inside (30, 40]
    k = np.flatnonzero((imp["user_id"] == 4) & (imp["room_id"] == 101))[0]
    assert slices["end_ts"][slices["slice_id"].index(int(imp["slice_id"][k]))] == T0 + 40 * MIN
    live = [i for i, d in enumerate(slices["domain"]) if d == "live"]
    first_101 = min(i for i in live if slices["room_id"][i] == 101)
    assert slices["start_ts"][first_101] == T0  # the first segment starts with the room
    # show impressions are negatives with all labels 0
    neg = imp["click"] == 0
    assert neg.sum() == 5 and (imp["watch_s"][neg] == 0).all() and (imp["like"][neg] == 0).all()
    # videos: domain video, room -1, 4-level tags -> topics, texts
    vid = [i for i, d in enumerate(slices["domain"]) if d == "video"]
    assert len(vid) == 4 and all(slices["room_id"][i] == -1 for i in vid)
    i = next(i for i in vid if slices["title"][i] == "Ten-minute noodles")
    assert slices["tags"][i] == "Food / Cooking / Noodles / Quick meals" and slices["ocr"][i] == "boil water add noodles"
    j = next(i for i in vid if slices["title"][i] == "Street food tour")
    assert slices["topic_l1"][i] == slices["topic_l1"][j] and slices["topic_l2"][i] != slices["topic_l2"][j]
    # embeddings: every live slice and the 3 videos with a feature; vectors copied exactly
    ids, vec = read_embeddings(tmp_path / "slice_embeddings.parquet")
    assert vec.shape == (len(live) + 3, 128) and set(ids.tolist()) == set(slices["slice_id"]) - {slices["slice_id"][next(i for i in vid if slices["title"][i].startswith("Chess"))]}
    src = pq.read_table(tmp_path / "slice_sources.parquet").to_pydict()
    seg = dict(zip(src["slice_id"], src["source_id"]))
    shard = pq.read_table(klm3 / "live_emb_128_ts" / "live_emb_128_ts_part0.parquet").to_pydict()
    want = np.array(shard["feature_128"][shard["segment_id"].index("s101_4")], np.float32)
    got = vec[ids.tolist().index(next(s for s, v in seg.items() if v == "s101_4"))]
    np.testing.assert_array_equal(got, want)
    q = Dataset(tmp_path).table("queries").to_pydict()
    assert "Quick meals" in q["query_text"] and "singing" in q["query_text"]


def test_sampled_negatives_on_air_segments(klm3, tmp_path):
    s = import_kuailive_m3(klm3, tmp_path, ImportOptions(negatives=2, seed=3, progress=False))
    imp, rooms, slices = load(tmp_path)
    assert s.sampled_negatives > 0
    assert assert_negatives_valid(imp, rooms) == s.logged_negatives + s.sampled_negatives
    start = dict(zip(slices["slice_id"], slices["start_ts"]))
    end = dict(zip(slices["slice_id"], slices["end_ts"]))
    for sl, t in zip(imp["slice_id"].tolist(), imp["ts"].tolist()):
        first = start[sl] == min(v for k, v in start.items() if slices["room_id"][k] == slices["room_id"][sl])
        assert (start[sl] < t or first) and (t <= end[sl] or end[sl] == max(v for k, v in end.items() if slices["room_id"][k] == slices["room_id"][sl]))


def test_keep_rooms_without_segments_and_max_users(klm3, tmp_path):
    s = import_kuailive_m3(klm3, tmp_path / "a", QUIET, keep_rooms_without_segments=True)
    assert s.items == 4 and s.notes["slices_without_embedding"] == 2  # room 103's slice + photo 504
    load(tmp_path / "a")
    s = import_kuailive_m3(klm3, tmp_path / "b", ImportOptions(max_users=2, progress=False), max_videos=1)
    imp, _, _ = load(tmp_path / "b")
    assert set(imp["user_id"].tolist()) <= {1, 2} and s.users == 2 and s.notes["videos"] == 1


def test_malformed_session_rows(tmp_path):
    good = "7,1,101,2025-05-20 08:01:00.000,2025-05-20 08:02:00.000,20250520,feed,click,0,0,0,60000,0,0,0,0,0,0,0,0"
    root = write_kuailive_m3_fixture(tmp_path / "src", extra_session_lines=[good, "x" + good, good.replace("08:01:00.000", "soon"), "7,1,101"])
    with pytest.raises(DataError) as exc:
        import_kuailive_m3(root, tmp_path / "a", QUIET)
    msg = str(exc.value)
    assert "live_interaction.csv" in msg and "line 12" in msg and "user_id is not an integer" in msg
    s = import_kuailive_m3(root, tmp_path / "b", ImportOptions(skip_bad_rows=True, progress=False))
    assert s.bad_rows == 3 and s.positives == 8
    assert s.bad_rows_by_reason["live_interaction.csv: expected 20 fields, got 3"] == 1
    load(tmp_path / "b")


def test_missing_segment_shards_is_a_clear_error(klm3, tmp_path):
    import shutil

    root = tmp_path / "src"
    shutil.copytree(klm3, root)
    shutil.rmtree(root / "live_emb_128_ts")
    with pytest.raises(DataError, match="live_emb_128_ts"):
        import_kuailive_m3(root, tmp_path / "out", QUIET)
