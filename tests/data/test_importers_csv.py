"""Generic CSV importer: delimiters, header / no header, labels, time formats, bad rows."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from fluidrec.cli import main
from fluidrec.data.importers import CsvFormat, ImportOptions, import_csv
from fluidrec.errors import ConfigError, DataError, UsageError
from tests.fixtures.checks import FIXTURES, assert_negatives_valid, load

D = FIXTURES / "csv"


def _fmt(root=D, **kw) -> CsvFormat:
    base = dict(
        interactions=str(root / "interactions.csv"), items=str(root / "items.csv"), user_col="user", item_col="item",
        time_col="when", label_col="rating", positive_threshold=4, text_cols=("title", "description"), delimiter=";",
    )
    base.update(kw)
    return CsvFormat(**base)


def test_import_with_labels_and_text(tmp_path):
    s = import_csv(_fmt(), tmp_path, ImportOptions(progress=False))
    imp, rooms, slices = load(tmp_path)
    assert (s.users, s.items, s.positives, s.logged_negatives) == (4, 5, 6, 3)
    ids = pq.read_table(tmp_path / "source_items.parquet").to_pydict()
    src = dict(zip(ids["room_id"], ids["source_id"]))
    title = {src[i]: t for i, t in zip(slices["slice_id"], slices["title"])}
    assert title["C"] == "Garden chair; teak | Outdoor #furniture"  # quoted delimiter kept
    assert title["D"] == "Desk lamp"  # empty description skipped
    assert "F" not in title  # never interacted with
    users = pq.read_table(tmp_path / "source_users.parquet").to_pydict()
    alice = users["source_id"].index("alice")
    assert imp["click"][imp["user_id"] == alice].tolist() == [1, 1, 1]
    r = rooms["room_id"].tolist().index(list(src.values()).index("A"))
    assert rooms["start_ts"][r] == 1704103200000  # 2024-01-01T10:00:00Z, first interaction
    assert rooms["end_ts"][r] == 1704268800000  # 2024-01-03T08:00:00Z, last


def test_negatives_without_labels(tmp_path):
    s = import_csv(_fmt(label_col=None), tmp_path, ImportOptions(negatives=2, progress=False))
    imp, rooms, _ = load(tmp_path)
    assert s.positives == 9 and s.sampled_negatives > 0
    assert assert_negatives_valid(imp, rooms) == s.sampled_negatives


def test_no_header_tsv_integer_seconds(tmp_path):
    d = FIXTURES / "csv_noheader"
    fmt = CsvFormat(interactions=str(d / "log.tsv"), items=str(d / "items.tsv"), user_col="0", item_col="1", time_col="2",
                    time_unit="s", label_col="3", text_cols=("1",), delimiter="\t", header=False)
    s = import_csv(fmt, tmp_path, ImportOptions(progress=False))
    imp, _, slices = load(tmp_path)
    assert (s.positives, s.logged_negatives, s.notes["items_without_text"]) == (3, 1, 0)
    assert imp["ts"][0] == 1704103200000
    assert sorted(slices["title"]) == ["First item", "Second item"]


def test_no_time_column_uses_row_order(tmp_path):
    import_csv(_fmt(time_col=None), tmp_path, ImportOptions(progress=False))
    imp, _, _ = load(tmp_path)
    assert imp["ts"].tolist() == list(range(9))


def test_bad_rows_and_bad_usage(tmp_path):
    with pytest.raises(DataError) as exc:
        import_csv(_fmt(root=FIXTURES / "csv_bad"), tmp_path / "a", ImportOptions(progress=False))
    assert "interactions.csv" in str(exc.value) and "line 4" in str(exc.value) and "time is neither" in str(exc.value)
    s = import_csv(_fmt(root=FIXTURES / "csv_bad"), tmp_path / "b", ImportOptions(skip_bad_rows=True, progress=False))
    assert s.bad_rows == 5 and s.bad_rows_by_reason["items.csv: duplicate item id"] == 1
    load(tmp_path / "b")
    with pytest.raises(UsageError, match="'stars'"):
        import_csv(_fmt(label_col="stars"), tmp_path / "c", ImportOptions(progress=False))
    with pytest.raises(ConfigError):
        _fmt(delimiter=";;")
    with pytest.raises(ConfigError):
        _fmt(header=False)  # named columns need a header


def test_cli(tmp_path, capsys):
    out = tmp_path / "ds"
    argv = ["data", "import", "csv", "--interactions", str(D / "interactions.csv"), "--items", str(D / "items.csv"),
            "--delimiter", ";", "--user-col", "user", "--item-col", "item", "--time-col", "when",
            "--text-cols", "title,description", "--out", str(out), "--no-progress", "--negatives", "1"]
    assert main(argv) == 0
    assert "validated" in capsys.readouterr().out
    assert main(["data", "import", "csv", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "--interactions" in capsys.readouterr().err
    imp, rooms, _ = load(out)
    assert (np.diff(imp["ts"]) >= 0).all()
