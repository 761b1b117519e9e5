import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fluidrec.cli import main
from fluidrec.data.stats import dataset_stats
from fluidrec.data.validate import validate_dataset
from fluidrec.errors import DataError
from tests.helpers import make_minimal_dataset


@pytest.fixture()
def ds(tmp_path):
    return make_minimal_dataset(tmp_path / "ds")


def _rewrite(ds, name, fn):
    path = ds / f"{name}.parquet"
    pq.write_table(fn(pq.read_table(path)), path)


def _set(table, column, row, value, type_=None):
    values = table.column(column).to_pylist()
    values[row] = value
    idx = table.column_names.index(column)
    return table.set_column(idx, column, pa.array(values, type=type_ or table.schema.field(column).type))


def test_valid_dataset_passes(ds):
    report = validate_dataset(ds)
    assert report["row_counts"]["rooms"] == 6
    assert report["row_counts"]["impressions"] == 180


def test_missing_column(ds):
    _rewrite(ds, "rooms", lambda t: t.drop(["end_ts"]))
    with pytest.raises(DataError, match="column end_ts.*required column is missing"):
        validate_dataset(ds)


def test_duplicate_key(ds):
    _rewrite(ds, "rooms", lambda t: _set(t, "room_id", 2, 100))
    with pytest.raises(DataError, match=r"rooms.parquet, column room_id, row 2, value 100: duplicate key"):
        validate_dataset(ds)


def test_dangling_reference(ds):
    _rewrite(ds, "impressions", lambda t: _set(t, "slice_id", 5, 999))
    with pytest.raises(DataError, match=r"impressions.parquet, column slice_id, row 5, value 999: refers to a missing slice"):
        validate_dataset(ds)


def test_slice_of_another_room(ds):
    _rewrite(ds, "impressions", lambda t: _set(t, "slice_id", 0, 20))
    with pytest.raises(DataError, match="slice belongs to room 101"):
        validate_dataset(ds)


def test_out_of_order_time(ds):
    _rewrite(ds, "impressions", lambda t: _set(t, "ts", 7, 0))
    with pytest.raises(DataError, match=r"column ts, row 7, value 0: impressions are not sorted by ts"):
        validate_dataset(ds)


def test_nan(ds):
    _rewrite(ds, "impressions", lambda t: _set(t, "watch_s", 3, float("nan")))
    with pytest.raises(DataError, match=r"column watch_s, row 3.*non-finite"):
        validate_dataset(ds)


def test_wrong_type(ds):
    _rewrite(ds, "rooms", lambda t: t.set_column(2, "start_ts", pa.array([str(v) for v in t.column("start_ts").to_pylist()])))
    with pytest.raises(DataError, match="column start_ts: wrong type string"):
        validate_dataset(ds)


def test_label_out_of_range(ds):
    _rewrite(ds, "impressions", lambda t: _set(t, "click", 4, 3))
    with pytest.raises(DataError, match=r"column click, row 4, value 3: value above the maximum"):
        validate_dataset(ds)


def test_bad_domain_and_video_room(ds):
    _rewrite(ds, "slices", lambda t: _set(t, "domain", 1, "radio"))
    with pytest.raises(DataError, match="column domain, row 1, value 'radio'"):
        validate_dataset(ds)


def test_cli_exit_codes(ds, tmp_path, capsys):
    assert main(["data", "validate", str(ds)]) == 0
    _rewrite(ds, "impressions", lambda t: _set(t, "ts", 7, 0))
    assert main(["data", "validate", str(ds)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not sorted" in err[0]
    assert main(["data", "validate", str(tmp_path / "nope")]) == 2


def test_stats_agree_with_direct_count(ds):
    s = dataset_stats(ds)
    imps = pq.read_table(ds / "impressions.parquet")
    click = imps.column("click").to_numpy()
    assert s["n_impressions"] == imps.num_rows == 180
    assert s["ctr"] == pytest.approx(click.mean())
    assert s["n_rooms"] == 6 and s["n_slices"] == 90 and s["n_videos"] == 1
    assert s["room_minutes_p50"] == 30.0
    assert s["slices_per_room_p50"] == 15.0
    assert s["impressions_per_room_p50"] == 30.0
    # impressions at minutes 0..29 of each room: minutes 0..9 are "younger than 10 min"
    assert s["share_impressions_on_rooms_younger_than_10min"] == pytest.approx(10 / 30)
    # day 2's rooms appear only on day 2
    assert s["share_test_rooms_unseen_in_train"] == 1.0


def test_stats_cli_json(ds, capsys):
    import json

    assert main(["data", "stats", str(ds), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("n_users", "n_authors", "n_rooms", "n_slices", "n_videos", "n_impressions", "room_minutes_p50",
                "room_minutes_p90", "slices_per_room_p50", "impressions_per_room_p50", "ctr",
                "share_impressions_on_rooms_younger_than_10min", "share_test_rooms_unseen_in_train"):
        assert key in out


def test_tiny_world_is_a_valid_dataset(tiny_world):
    report = validate_dataset(tiny_world)
    assert report["row_counts"]["impressions"] > 1000
    assert report["source"] == "synthetic-world"
