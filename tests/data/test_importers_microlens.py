"""MicroLens-50k importer on fixtures in the published format (CRLF TSV + quoted CSV)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fluidrec.cli import main
from fluidrec.data.importers import ImportOptions, import_microlens
from fluidrec.data.io import Dataset
from fluidrec.errors import DataError
from tests.fixtures.checks import FIXTURES, assert_negatives_valid, load

GOOD, BAD = FIXTURES / "microlens", FIXTURES / "microlens_bad"
QUIET = dict(progress=False)


def test_import_maps_sequences_to_pseudo_time_and_one_slice_rooms(tmp_path):
    s = import_microlens(GOOD, tmp_path, ImportOptions(**QUIET))
    imp, rooms, slices = load(tmp_path)
    assert (s.users, s.items, s.positives, s.sampled_negatives, s.bad_rows) == (5, 14, 26, 0, 0)
    assert (imp["click"] == 1).all() and (imp["watch_s"] == 0).all() and (imp["like"] == 0).all()
    assert (np.diff(imp["ts"]) >= 0).all()
    # user 3's sequence "19 11 20 13 12 16": the j-th item at j pseudo-minutes
    u3 = imp["user_id"] == 3
    assert imp["room_id"][u3].tolist() == [19, 11, 20, 13, 12, 16]
    assert imp["ts"][u3].tolist() == [0, 60_000, 120_000, 180_000, 240_000, 300_000]
    # item 11 goes live at its first interaction (user 1, position 0) and ends at its last (user 4, position 4)
    r = rooms["room_id"].tolist().index(11)
    assert (rooms["start_ts"][r], rooms["end_ts"][r]) == (0, 240_000)
    assert slices["slice_id"] == slices["room_id"] and set(slices["domain"]) == {"live"}
    title = dict(zip(slices["slice_id"], slices["title"]))
    assert title[16] == 'He said "hello" to the camera # vlog'  # quoted CSV with escaped quotes
    assert title[18] == "Two-line\ntitle with a newline inside quotes"  # quoted newline in a CRLF file
    manifest = Dataset(tmp_path).manifest
    assert manifest["source"] == "microlens" and manifest["seed"] == 0 and manifest["time_kind"] == "sequence_index"
    queries = Dataset(tmp_path).table("queries").to_pydict()
    assert ("unexpected ending", 13) in set(zip(queries["query_text"], queries["slice_id"]))
    assert json.loads((tmp_path / "import_config.json").read_text())["options"]["seed"] == 0


def test_negatives_are_seeded_live_and_not_positives(tmp_path):
    s = import_microlens(GOOD, tmp_path / "a", ImportOptions(negatives=3, seed=5, **QUIET))
    import_microlens(GOOD, tmp_path / "b", ImportOptions(negatives=3, seed=5, **QUIET))
    imp, rooms, _ = load(tmp_path / "a")
    imp_b, _, _ = load(tmp_path / "b")
    assert s.sampled_negatives > 0 and assert_negatives_valid(imp, rooms) == s.sampled_negatives
    for col in ("ts", "user_id", "room_id", "click", "request_id"):
        np.testing.assert_array_equal(imp[col], imp_b[col])
    # a negative shares its positive's request and time
    pos_ts = dict(zip(imp["request_id"][imp["click"] == 1].tolist(), imp["ts"][imp["click"] == 1].tolist()))
    neg = imp["click"] == 0
    assert all(pos_ts[r] == t for r, t in zip(imp["request_id"][neg].tolist(), imp["ts"][neg].tolist()))


def test_malformed_rows_fail_with_file_line_and_reason(tmp_path):
    with pytest.raises(DataError) as exc:
        import_microlens(BAD, tmp_path, ImportOptions(**QUIET))
    msg = str(exc.value)
    assert "MicroLens-50k_pairs.tsv" in msg and "line 2" in msg and "item id is not an integer" in msg


def test_skip_bad_rows_counts_them(tmp_path):
    s = import_microlens(BAD, tmp_path, ImportOptions(skip_bad_rows=True, **QUIET))
    reasons = s.bad_rows_by_reason
    assert s.bad_rows == 7
    assert reasons["MicroLens-50k_pairs.tsv: empty line"] == 1
    assert reasons["MicroLens-50k_pairs.tsv: user appears on more than one line"] == 1
    assert reasons["MicroLens-50k_titles.csv: duplicate item id"] == 1
    assert s.users == 3  # users 1, 4, 5 survive
    load(tmp_path)


def test_max_users_and_cli_round_trip(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["data", "import", "microlens", "--path", str(GOOD), "--out", str(out), "--max-users", "2", "--negatives", "1", "--no-progress", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["users"] == 2 and summary["positives"] == 10
    assert main(["data", "validate", str(out)]) == 0
    assert main(["data", "import", "microlens", "--path", str(GOOD), "--out", str(out), "--no-progress"]) == 2  # not empty, no --force
    assert main(["data", "import", "microlens", "--path", str(BAD), "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "line 2" in err[-1] and "MicroLens-50k_pairs.tsv" in err[-1]
