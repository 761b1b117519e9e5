import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fluidrec.cli import main
from fluidrec.data.io import write_manifest
from fluidrec.data.stats import dataset_stats
from fluidrec.data.validate import validate_dataset
from fluidrec.errors import DataError
from tests.helpers import make_minimal_dataset


@pytest.fixture()
def ds(tmp_path):
    return make_minimal_dataset(tmp_path / "ds")


def _rewrite(ds, name, fn, *, manifest=True):
    """Change one table; re-record the manifest (as a writer would) unless ``manifest=False``."""
    path = ds / f"{name}.parquet"
    pq.write_table(fn(pq.read_table(path)), path)
    if manifest:
        write_manifest(ds, source="test-minimal", seed=0, extra={"frame_size": None})


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


# ---------------------------------------------------------------- manifest, checksums, frames, time ranges

INT64_MIN = -(2**63)


def _manifest(ds, **changes):
    m = json.loads((ds / "manifest.json").read_text())
    for key, value in changes.items():
        if value is _DROP:
            m.pop(key, None)
        else:
            m[key] = value
    (ds / "manifest.json").write_text(json.dumps(m))


_DROP = object()


def _frames(ds, lengths, frame_size):
    _rewrite(ds, "slices", lambda t: t.append_column("frame", pa.array([None if n is None else b"\x01" * n for n in lengths], pa.binary())),
             manifest=False)  # fmt: skip
    write_manifest(ds, source="test-minimal", seed=0, extra={"frame_size": frame_size})


def _other_impressions(ds, tmp_path):
    other = make_minimal_dataset(tmp_path / "other", seed=1)  # same shape, other labels: another run's table
    (ds / "impressions.parquet").write_bytes((other / "impressions.parquet").read_bytes())


def _side_file_changed(ds, tmp_path):
    (ds / "extra.json").write_text("{}")
    write_manifest(ds, source="test-minimal", seed=0, extra={"frame_size": None})
    (ds / "extra.json").write_text('{"changed": 1}')


def _side_file_missing(ds, tmp_path):
    (ds / "extra.json").write_text("{}")
    write_manifest(ds, source="test-minimal", seed=0, extra={"frame_size": None})
    (ds / "extra.json").unlink()


BAD_MANIFESTS = [
    # (what is wrong, how to make it, the file the error names, words in the error)
    ("schema_version from the future", lambda ds, _: _manifest(ds, schema_version=2), "manifest.json", "unsupported schema_version"),
    ("schema_version missing", lambda ds, _: _manifest(ds, schema_version=_DROP), "manifest.json", "no schema_version"),
    ("schema_version a string", lambda ds, _: _manifest(ds, schema_version="1"), "manifest.json", "unsupported schema_version"),
    ("frame_size zero", lambda ds, _: _manifest(ds, frame_size=0), "manifest.json", "frame_size must be a positive integer"),
    ("frame_size a string", lambda ds, _: _manifest(ds, frame_size="32"), "manifest.json", "frame_size must be a positive integer"),
    ("row_counts missing", lambda ds, _: _manifest(ds, row_counts=_DROP), "manifest.json", "no row_counts"),
    ("row_counts lacks a table", lambda ds, _: _manifest(ds, row_counts={"rooms": 6}), "manifest.json", "no entry for authors"),
    ("row_counts wrong", lambda ds, _: _manifest(ds, row_counts={**json.loads((ds / "manifest.json").read_text())["row_counts"], "slices": 5}),
     "slices.parquet", "holds 91 rows but the manifest's row_counts says 5"),
    ("table of another run", _other_impressions, "impressions.parquet", "differs from the manifest's"),
    ("table changed after writing", lambda ds, _: _rewrite(ds, "rooms", lambda t: _set(t, "author_id", 0, 1), manifest=False),
     "rooms.parquet", "differs from the manifest's"),
    ("side file changed", _side_file_changed, "extra.json", "differs from the manifest's"),
    ("side file missing", _side_file_missing, "extra.json", "listed in the manifest is missing"),
    ("frame too short", lambda ds, _: _frames(ds, [12, 12, 12, 11] + [12] * 87, 2), "slices.parquet", "row 3, value 11: frame has 11 bytes, expected 12"),
    ("frames without frame_size", lambda ds, _: _frames(ds, [None] * 90 + [12], None), "manifest.json", "frames but the manifest's frame_size is null"),
    ("room starts at INT64_MIN", lambda ds, _: _rewrite(ds, "rooms", lambda t: _set(t, "start_ts", 0, INT64_MIN)),
     "rooms.parquet", "column start_ts, row 0, value -9223372036854775808: time outside"),
    ("slice ends in 2300", lambda ds, _: _rewrite(ds, "slices", lambda t: _set(t, "end_ts", 4, 10_413_792_000_000)),
     "slices.parquet", "column end_ts, row 4, value 10413792000000: time outside"),
    ("impression before 1970", lambda ds, _: _rewrite(ds, "impressions", lambda t: _set(t, "ts", 0, -1)),
     "impressions.parquet", "column ts, row 0, value -1: time outside"),
]


@pytest.mark.parametrize("make, names, needle", [c[1:] for c in BAD_MANIFESTS], ids=[c[0] for c in BAD_MANIFESTS])
def test_bad_dataset_exit_2_one_line_naming_the_file(ds, tmp_path, capsys, make, names, needle):
    make(ds, tmp_path)
    capsys.readouterr()
    assert main(["data", "validate", str(ds)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and names in err[0] and needle in err[0], err


def test_checksums_can_be_skipped_but_row_counts_still_count(ds, tmp_path, capsys):
    _rewrite(ds, "rooms", lambda t: _set(t, "author_id", 0, 1), manifest=False)
    assert main(["data", "validate", str(ds), "--no-checksums"]) == 0
    assert "checksums skipped" in capsys.readouterr().out
    _rewrite(ds, "rooms", lambda t: t.slice(0, 5), manifest=False)
    with pytest.raises(DataError, match="holds 5 rows"):
        validate_dataset(ds, checksums=False)


def test_manifest_records_rows_and_checksums(ds):
    from fluidrec.utils.io import sha256_file

    m = json.loads((ds / "manifest.json").read_text())
    assert m["schema_version"] == 1 and m["frame_size"] is None and m["row_counts"]["impressions"] == 180
    assert m["tables"]["rooms"] == {"rows": 6, "bytes": (ds / "rooms.parquet").stat().st_size, "sha256": sha256_file(ds / "rooms.parquet")}
    assert validate_dataset(ds)["checksums"] == "verified"


def test_older_manifest_without_checksums_still_validates(ds):
    _manifest(ds, tables=_DROP, files=_DROP)
    assert validate_dataset(ds)["checksums"].startswith("not recorded")
