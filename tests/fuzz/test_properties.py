"""Property-based tests (hypothesis) of two input boundaries.

- The CSV importer: any well-formed log (ids with commas, quotes, newlines, non-ASCII;
  any delimiter; a BOM or not) round-trips exactly: the dataset validates and its
  impressions, mapped back through ``source_users`` / ``source_items``, are the input
  rows. Any bytes at all either import or fail with a FluidrecError, leaving no output.
- The embeddings reader: for any table of ids and vectors, ``read_embeddings`` returns
  exactly the input when it satisfies the documented rules and raises a DataError
  naming the file when it does not (an independent oracle decides which).
"""

from __future__ import annotations

import collections
import csv
import io
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fluidrec.data.embeddings import MAX_ABS_VALUE, read_embeddings  # noqa: E402
from fluidrec.data.importers import CsvFormat, ImportOptions, import_csv  # noqa: E402
from fluidrec.data.validate import TIME_MAX_MS, validate_dataset  # noqa: E402
from fluidrec.errors import DataError, FluidrecError  # noqa: E402

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], derandomize=True, database=None)

# ---------------------------------------------------------------- the CSV importer

# Ids: any printable text without NUL, surrogates or outer whitespace (the importer strips ids).
ids = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x00") | st.sampled_from(",;\t|\"'\n\r"), min_size=1, max_size=6)
ids = ids.map(str.strip).filter(bool)
rows_strategy = st.lists(st.tuples(ids, st.sampled_from(["A", "b,2", 'q"x', "é", "line\nbreak"]), st.integers(0, TIME_MAX_MS - 1)), min_size=1, max_size=25)


def _csv_text(header: list[str], rows, delimiter: str) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


@settings(max_examples=20, **SETTINGS)
@given(rows=rows_strategy, delimiter=st.sampled_from([",", ";", "\t", "|"]), bom=st.booleans(), crlf=st.booleans())
def test_csv_import_round_trips(rows, delimiter, bom, crlf, tmp_path_factory):
    d = tmp_path_factory.mktemp("csv")
    text = _csv_text(["user", "item", "ts"], rows, delimiter)
    if crlf:
        text = text.replace("\n", "\r\n") if all("\n" not in f and "\r" not in f for r in rows for f in r[:2]) else text
    (d / "log.csv").write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    items = sorted({r[1] for r in rows})
    (d / "items.csv").write_text(_csv_text(["item", "title"], [(i, f"title of {i}") for i in items], delimiter), encoding="utf-8")
    fmt = CsvFormat(str(d / "log.csv"), str(d / "items.csv"), "user", "item", ("title",), delimiter=delimiter, time_col="ts")
    summary = import_csv(fmt, d / "out", ImportOptions(progress=False))
    validate_dataset(d / "out")
    assert summary.impressions == len(rows) and summary.bad_rows == 0
    users = pq.read_table(d / "out" / "source_users.parquet").to_pydict()
    itemmap = pq.read_table(d / "out" / "source_items.parquet").to_pydict()
    user_of = dict(zip(users["user_id"], users["source_id"]))
    item_of = dict(zip(itemmap["room_id"], itemmap["source_id"]))
    imp = pq.read_table(d / "out" / "impressions.parquet").to_pydict()
    got = collections.Counter((user_of[u], item_of[i], t) for u, i, t in zip(imp["user_id"], imp["room_id"], imp["ts"]))
    assert got == collections.Counter(tuple(r) for r in rows)
    titles = pq.read_table(d / "out" / "slices.parquet").to_pydict()
    assert {item_of[s]: t for s, t in zip(titles["slice_id"], titles["title"])} == {i: f"title of {i}" for i in items}


GOOD_LOG = b"user,item,ts\nalice,A,1700000000000\nbob,B,1700000000001\n"


# Junk that hits each reader's failure modes: quotes, bad UTF-8, NUL, line ends, a BOM, huge or negative numbers.
JUNK = st.lists(st.sampled_from([b'"', b"\xff", b"\x00", b"\n", b",", b"\r", b"\xef\xbb\xbf", b"9" * 25, b"-", b"\xe2\x82"]) | st.binary(min_size=1, max_size=3),
                min_size=1, max_size=4).map(b"".join)  # fmt: skip


@settings(max_examples=80, **SETTINGS)
@given(data=st.binary(max_size=300) | st.builds(lambda cut, junk: GOOD_LOG[:cut] + junk + GOOD_LOG[cut:], st.integers(0, len(GOOD_LOG)), JUNK))
def test_csv_import_never_crashes(data, tmp_path_factory):
    d = tmp_path_factory.mktemp("junk")
    (d / "log.csv").write_bytes(data)
    (d / "items.csv").write_text("item,title\nA,a\nB,b\n")
    fmt = CsvFormat(str(d / "log.csv"), str(d / "items.csv"), "user", "item", ("title",), time_col="ts")
    try:
        import_csv(fmt, d / "out", ImportOptions(progress=False))
    except FluidrecError as exc:
        assert "\n" not in str(exc).strip()
        assert not any(p.name.startswith("out") and p.name != "out" for p in d.iterdir()), "temporary dataset left behind"
        assert not (d / "out").exists() or not any((d / "out").iterdir()), "a failed import wrote output"
    else:
        validate_dataset(d / "out")


# ---------------------------------------------------------------- the embeddings reader

floats = st.one_of(
    st.floats(-10, 10, width=32),
    st.sampled_from([math.nan, math.inf, -math.inf, 3e38, -3e38, 1e16, 9e14, 0.0]),
)
vector = st.one_of(st.none(), st.lists(st.one_of(floats, st.none()), min_size=0, max_size=4))
id_value = st.one_of(st.integers(-3, 40), st.none(), st.just(2**63 - 1))


FAULTS = ["null-id", "negative-id", "duplicate-id", "uint64-beyond-int64", "string-ids", "float-ids", "null-vector", "null-value",
          "ragged", "zero-length", "nan", "inf", "beyond-1e15", "beyond-float32", "no-rows"]  # fmt: skip


@st.composite
def embedding_tables(draw):
    """A clean table with at most one injected fault (so each rule is tested on its own), or a messy one."""
    n, d = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    id_type, vec_type = "int64", draw(st.sampled_from(["list32", "list64", "fixed32"]))
    id_values = draw(st.permutations(list(range(100, 100 + n))))
    vectors = [[draw(st.floats(-10, 10, width=32)) for _ in range(d)] for _ in range(n)]
    fault = draw(st.sampled_from([None, None, "messy", *FAULTS]))
    row = draw(st.integers(0, n - 1))
    if fault == "messy":  # several faults at once, anything goes
        id_type = draw(st.sampled_from(["int64", "int32", "uint64", "string", "float64"]))
        id_values = [draw(id_value) for _ in range(n)]
        vectors = [draw(vector) for _ in range(n)]
    elif fault in ("null-id", "negative-id", "duplicate-id", "uint64-beyond-int64"):
        id_values[row] = {"null-id": None, "negative-id": -1, "duplicate-id": id_values[(row + 1) % n] if n > 1 else None,
                          "uint64-beyond-int64": 2**64 - 1}[fault]  # fmt: skip
        id_type = "uint64" if fault == "uint64-beyond-int64" else "int64"
    elif fault in ("string-ids", "float-ids"):
        id_type = "string" if fault == "string-ids" else "float64"
    elif fault == "null-vector":
        vectors[row] = None
    elif fault == "null-value":
        vectors[row][draw(st.integers(0, d - 1))] = None
    elif fault == "ragged" and vec_type != "fixed32":
        vectors[row] = vectors[row] + [1.0]
    elif fault == "zero-length" and vec_type != "fixed32":
        vectors = [[] for _ in vectors]
    elif fault in ("nan", "inf", "beyond-1e15", "beyond-float32"):
        big = {"nan": math.nan, "inf": -math.inf, "beyond-1e15": draw(st.sampled_from([3e38, -1e16, 2e15])), "beyond-float32": 1e39}[fault]
        vec_type = "list64" if fault == "beyond-float32" else vec_type
        vectors[row][draw(st.integers(0, d - 1))] = big
    elif fault == "no-rows":
        id_values, vectors = [], []
    if vec_type == "fixed32":  # a fixed-size list cannot hold ragged rows: pad them
        d = max([len(v) for v in vectors if v is not None] + [1])
        vectors = [None if v is None else (v + [0.0] * d)[:d] for v in vectors]
    return id_type, vec_type, id_values, vectors


def _arrow(id_type, vec_type, id_values, vectors) -> pa.Table:
    if id_type == "string":
        id_col = pa.array([None if v is None else str(v) for v in id_values], pa.string())
    elif id_type == "uint64":
        id_col = pa.array([None if v is None else v % 2**64 for v in id_values], pa.uint64())
    elif id_type == "int32":
        id_col = pa.array([None if v is None else max(min(v, 2**31 - 1), -(2**31)) for v in id_values], pa.int32())
    elif id_type == "float64":
        id_col = pa.array([None if v is None else float(v) for v in id_values], pa.float64())
    else:
        id_col = pa.array(id_values, pa.int64())
    value = pa.float64() if vec_type == "list64" else pa.float32()
    if vec_type == "fixed32":
        d = max([len(v) for v in vectors if v is not None] + [1])
        vec_col = pa.array(vectors, pa.list_(value, d))
    else:
        vec_col = pa.array(vectors, pa.list_(value))
    return pa.table({"id": id_col, "embedding": vec_col})


def _oracle(table: pa.Table) -> tuple[np.ndarray, np.ndarray] | None:
    """What read_embeddings must return for ``table``, or None if it must refuse it."""
    ids, vecs = table.column("id").to_pylist(), table.column("embedding").to_pylist()
    if not ids or not pa.types.is_integer(table.column("id").type):
        return None
    if any(i is None or i < 0 or i > 2**63 - 1 for i in ids) or len(set(ids)) != len(ids):
        return None
    if any(v is None for v in vecs) or len({len(v) for v in vecs}) != 1 or len(vecs[0]) == 0:
        return None
    if any(x is None for v in vecs for x in v):
        return None
    with np.errstate(over="ignore"):
        x = np.array(vecs, dtype=np.float64).astype(np.float32)
    if not np.isfinite(x).all() or (np.abs(x) > MAX_ABS_VALUE).any():
        return None
    return np.array(ids, np.int64), x


@settings(max_examples=300, **SETTINGS)
@given(spec=embedding_tables())
def test_read_embeddings_matches_the_oracle(spec, tmp_path_factory):
    path = tmp_path_factory.mktemp("emb") / "emb.parquet"
    table = _arrow(*spec)
    pq.write_table(table, path)
    want = _oracle(table)
    if want is None:
        with pytest.raises(DataError) as exc:
            read_embeddings(path)
        assert str(path) in str(exc.value) and "\n" not in str(exc.value)
    else:
        got_ids, got_x = read_embeddings(path)
        assert got_ids.dtype == np.int64 and got_x.dtype == np.float32
        np.testing.assert_array_equal(got_ids, want[0])
        np.testing.assert_array_equal(got_x, want[1])


def test_the_oracle_accepts_and_refuses_something(tmp_path):
    """Guard: both outcomes are reachable, so neither branch above is vacuous."""
    ok = _arrow("int64", "list32", [1, 2], [[0.5, 1.0], [2.0, 3.0]])
    assert _oracle(ok) is not None
    assert _oracle(_arrow("int64", "list32", [1, 1], [[0.5], [2.0]])) is None
    pq.write_table(ok, tmp_path / "e.parquet")
    assert read_embeddings(tmp_path / "e.parquet")[1].shape == (2, 2)
