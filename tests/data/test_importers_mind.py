"""MIND importer on fixtures in the published behaviors.tsv / news.tsv format."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from fluidrec.data.importers import ImportOptions, import_mind
from fluidrec.data.io import Dataset
from fluidrec.errors import DataError
from tests.fixtures.checks import FIXTURES, assert_negatives_valid, load

GOOD, BAD = FIXTURES / "mind", FIXTURES / "mind_bad"


def test_import_keeps_logged_clicks_and_non_clicks(tmp_path):
    s = import_mind(GOOD, tmp_path, ImportOptions(progress=False))
    imp, rooms, slices = load(tmp_path)
    assert (s.users, s.positives, s.logged_negatives, s.bad_rows) == (3, 5, 9, 0)
    assert (np.diff(imp["ts"]) >= 0).all()  # the file is not in time order; the output is
    first = imp["request_id"] == 2  # "2 U11 11/11/2019 8:00:01 AM  N3-0 N4-1": the earliest row
    want = int(dt.datetime(2019, 11, 11, 8, 0, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)
    assert imp["ts"][0] == want and first[0]
    assert imp["room_id"][first].tolist() == [4, 3] and imp["click"][first].tolist() == [1, 0]  # clicked first in a request
    assert sorted(imp["position"][first].tolist()) == [0, 1]
    by_id = {sid: k for k, sid in enumerate(slices["slice_id"])}
    n3 = by_id[3]
    assert slices["title"][n3].startswith("Silver Spring") and slices["tags"][n3] == "sports more_sports"
    assert slices["topic_l1"][by_id[3]] == slices["topic_l1"][by_id[5]] != slices["topic_l1"][by_id[4]]  # both sports
    assert slices["title"][by_id[8]] is None  # N8 is not in news.tsv
    assert 99 not in by_id  # never shown: not imported
    r = rooms["room_id"].tolist().index(3)
    assert rooms["start_ts"][r] == want and rooms["end_ts"][r] > want
    ds = Dataset(tmp_path)
    assert ds.manifest["topic_names"]["topic_l1"] == ["lifestyle", "news", "sports"]
    assert ds.table("queries").to_pydict()["query_text"] == ["Marine Corps Marathon"]


def test_sampled_negatives_added_to_logged_ones(tmp_path):
    s = import_mind(GOOD, tmp_path, ImportOptions(negatives=2, seed=1, progress=False))
    imp, rooms, _ = load(tmp_path)
    assert s.sampled_negatives > 0
    assert assert_negatives_valid(imp, rooms) >= s.logged_negatives  # logged ones are checked too (none clicked)
    assert "position" not in imp


def test_drop_items_without_text(tmp_path):
    s = import_mind(GOOD, tmp_path, ImportOptions(progress=False), drop_items_without_text=True)
    assert s.notes["impressions_dropped_without_text"] == 1 and s.notes["items_without_text"] == 0
    load(tmp_path)


def test_malformed_rows(tmp_path):
    with pytest.raises(DataError) as exc:
        import_mind(BAD, tmp_path / "a", ImportOptions(progress=False))
    assert "behaviors.tsv" in str(exc.value) and "line 3" in str(exc.value) and "time is not" in str(exc.value)
    s = import_mind(BAD, tmp_path / "b", ImportOptions(skip_bad_rows=True, progress=False))
    assert s.bad_rows == 6
    assert s.bad_rows_by_reason["news.tsv: title_entities is not a JSON list"] == 1
    assert s.bad_rows_by_reason["behaviors.tsv: impression entry is not of the form N<digits>-<0|1>"] == 1
    load(tmp_path / "b")
