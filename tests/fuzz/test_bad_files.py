"""Bad files and flags for the commands after import: embeddings (``codes fit/assign/stats``),
dataset tables and manifests (``data validate/stats``, ``codes rooms``), code files, output
paths and CLI integers. Each: exit 2, one line naming the file (or flag), nothing written.

One boundary per input kind is exercised through every command that reads it:
``read_embeddings`` (embedding files), ``read_parquet`` / ``Dataset.table`` (tables),
``read_json`` / ``Dataset`` (manifests), ``read_codes`` (code files), ``atomic_path`` and
``output_dir`` (outputs), ``utils.cli`` integer types (flags).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fluidrec.codes.io import read_codes, read_room_codes, write_codes, write_room_codes
from fluidrec.codes.rqkmeans import RQKMeans
from fluidrec.data.embeddings import write_embeddings
from fluidrec.errors import DataError
from tests.helpers import make_minimal_dataset

from .harness import Case, check_clean_failure, flip_bytes, run_main, write

D = 8
FIX: dict[str, Path] = {}  # shared inputs, filled by the module fixture (cases are built at import)


@pytest.fixture(scope="module", autouse=True)
def shared(tmp_path_factory):
    """A valid dataset, embeddings of its slices, a fitted 2 x 4 code model, slice and room codes."""
    root = tmp_path_factory.mktemp("shared")
    ds = make_minimal_dataset(root / "ds")
    ids = pq.read_table(ds / "slices.parquet", columns=["slice_id"]).column("slice_id").to_numpy()
    x = np.random.default_rng(0).standard_normal((len(ids), D)).astype(np.float32)
    write_embeddings(root / "emb.parquet", ids, x)
    model = RQKMeans(levels=2, codebook_size=4, seed=0).fit(x)
    model.save(root / "model")
    write_codes(root / "codes.parquet", ids, model.encode(x), codebook_size=4)
    FIX.update(root=root, ds=ds, emb=root / "emb.parquet", model=root / "model", codes=root / "codes.parquet", ids=ids, x=x)
    yield FIX


# ---------------------------------------------------------------- embedding files


def _vec(x: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), pa.float32()), x.shape[1])


def _emb_table(kind: str) -> pa.Table:
    ids, x = FIX["ids"], FIX["x"].copy()
    rows = [list(map(float, r)) for r in x]
    n = len(ids)
    special = {
        "3e38": lambda: (x.__setitem__((3, 2), 3e38), pa.table({"id": ids, "embedding": _vec(x)}))[1],
        "-3e38": lambda: (x.__setitem__((5, 0), -3e38), pa.table({"id": ids, "embedding": _vec(x)}))[1],
        "1e16": lambda: (x.__setitem__((1, 1), 1e16), pa.table({"id": ids, "embedding": _vec(x)}))[1],
        "nan": lambda: (x.__setitem__((4, 4), np.nan), pa.table({"id": ids, "embedding": _vec(x)}))[1],
        "inf": lambda: (x.__setitem__((0, 7), np.inf), pa.table({"id": ids, "embedding": _vec(x)}))[1],
        "f64-beyond-f32": lambda: pa.table({"id": ids, "embedding": pa.array([[1e300] * D] + rows[1:], pa.list_(pa.float64()))}),
        "null-row": lambda: pa.table({"id": ids, "embedding": pa.array(rows[:2] + [None] + rows[3:], pa.list_(pa.float32()))}),
        "null-inside": lambda: pa.table({"id": ids, "embedding": pa.array(rows[:6] + [[None] * D] + rows[7:], pa.list_(pa.float32()))}),
        "zero-length": lambda: pa.table({"id": ids, "embedding": pa.array([[]] * n, pa.list_(pa.float32()))}),
        "ragged": lambda: pa.table({"id": ids, "embedding": pa.array(rows[:9] + [rows[9][:3]] + rows[10:], pa.list_(pa.float32()))}),
        "string-vectors": lambda: pa.table({"id": ids, "embedding": pa.array([["0.5"] * D] * n, pa.list_(pa.string()))}),
        "scalar-column": lambda: pa.table({"id": ids, "embedding": pa.array(np.ones(n))}),
        "string-column": lambda: pa.table({"id": ids, "embedding": pa.array(["[1, 2]"] * n)}),
        "string-ids": lambda: pa.table({"id": pa.array([f"s{i}" for i in ids]), "embedding": _vec(x)}),
        "float-ids": lambda: pa.table({"id": pa.array(ids.astype(np.float64)), "embedding": _vec(x)}),
        "null-id": lambda: pa.table({"id": pa.array([None, *ids[1:].tolist()], pa.int64()), "embedding": _vec(x)}),
        "negative-id": lambda: pa.table({"id": pa.array([-5, *ids[1:].tolist()], pa.int64()), "embedding": _vec(x)}),
        "uint64-id": lambda: pa.table({"id": pa.array([2**64 - 1, *ids[1:].tolist()], pa.uint64()), "embedding": _vec(x)}),
        "duplicate-id": lambda: pa.table({"id": pa.array([ids[1], *ids[1:].tolist()], pa.int64()), "embedding": _vec(x)}),
        "empty": lambda: pa.table({"id": pa.array([], pa.int64()), "embedding": pa.array([], pa.list_(pa.float32(), D))}),
        "no-id-column": lambda: pa.table({"embedding": _vec(x)}),
        "no-embedding-column": lambda: pa.table({"id": ids, "vector": _vec(x)}),
    }
    return special[kind]()


EMB_EXPECT = {  # kind -> what the error must say
    "3e38": ("row 3", "1e+15"), "-3e38": ("row 5",), "1e16": ("row 1",), "nan": ("row 4", "non-finite"), "inf": ("row 0",),
    "f64-beyond-f32": ("row 0",), "null-row": ("row 2", "null vector"), "null-inside": ("row 6", "null value"),
    "zero-length": ("length 0",), "ragged": ("row 9", "different lengths"), "string-vectors": ("list of floats",),
    "scalar-column": ("list of floats",), "string-column": ("list of floats",), "string-ids": ("integers", "column id"),
    "float-ids": ("integers",), "null-id": ("row 0", "null id"), "negative-id": ("row 0", "-5"), "uint64-id": ("int64",),
    "duplicate-id": ("row 1", "duplicate"), "empty": ("empty",), "no-id-column": ("no id column",),
    "no-embedding-column": ("column embedding",),
}  # fmt: skip


def _assign_argv(root: Path, emb: Path) -> list[str]:
    return ["codes", "assign", "--model", str(FIX["model"]), "--embeddings", str(emb), "--out", str(root / "out" / "codes.parquet"), "--quiet"]


def emb_case(kind: str) -> Case:
    def build(root: Path) -> list[str]:
        p = root / f"{kind}.parquet"
        pq.write_table(_emb_table(kind), p)
        return _assign_argv(root, p)

    return Case(f"emb-{kind}", build, (f"{kind}.parquet",), EMB_EXPECT[kind])


def emb_file_case(id: str, make, expect=()) -> Case:
    """An embedding file that is damaged as a file: ``make(root) -> path``."""
    def build(root: Path) -> list[str]:
        return _assign_argv(root, make(root))

    return Case(f"emb-file-{id}", build, ("emb",), tuple(expect))


EMB_CASES = [emb_case(k) for k in EMB_EXPECT]
EMB_CASES += [
    emb_file_case(f"corrupt-page-{at}", lambda r, at=at: flip_bytes(FIX["emb"], r / "emb.parquet", at), ("Parquet",)) for at in (0.05, 0.3, 0.6)
]
EMB_CASES += [
    emb_file_case("truncated", lambda r: write(r / "emb.parquet", FIX["emb"].read_bytes()[:300]), ("Parquet",)),
    emb_file_case("text-named-parquet", lambda r: write(r / "emb.parquet", "id,embedding\n1,2\n"), ("Parquet",)),
    emb_file_case("0-bytes", lambda r: write(r / "emb.parquet", b""), ("Parquet",)),
    emb_file_case("missing", lambda r: r / "emb-nope.parquet", ("not found",)),
    emb_file_case("directory", lambda r: (r / "emb.dir").mkdir() or r / "emb.dir", ("not found",)),
]


def _cmd_case(id: str, cmd: list[str], kind: str) -> Case:
    """The same embedding boundary through another command (``{emb}`` / ``{out}`` placeholders)."""
    def build(root: Path) -> list[str]:
        p = root / f"{kind}.parquet"
        pq.write_table(_emb_table(kind), p)
        subst = {"{emb}": str(p), "{out}": str(root / "out" / "m"), "{model}": str(FIX["model"])}
        return [subst.get(a, a) for a in cmd]

    return Case(id, build, (f"{kind}.parquet",), EMB_EXPECT[kind])


FIT = ["codes", "fit", "--embeddings", "{emb}", "--levels", "2", "--size", "4", "--out", "{out}", "--quiet"]
STATS = ["codes", "stats", "--model", "{model}", "--embeddings", "{emb}", "--json"]
EMB_CASES += [_cmd_case(f"fit-{k}", FIT, k) for k in ("3e38", "null-row", "string-ids", "zero-length", "nan")]
EMB_CASES += [_cmd_case(f"stats-{k}", STATS, k) for k in ("3e38", "null-id", "string-vectors")]

# ---------------------------------------------------------------- dataset tables and manifests


def ds_case(id: str, mutate, cmd: str, names: tuple[str, ...], expect=()) -> Case:
    """Copy the shared dataset, ``mutate(ds_dir)``, run ``cmd`` (validate, stats or rooms) on it."""
    def build(root: Path) -> list[str]:
        ds = root / "ds"
        shutil.copytree(FIX["ds"], ds)
        mutate(ds)
        if cmd == "validate":
            return ["data", "validate", str(ds)]
        if cmd == "stats":
            return ["data", "stats", str(ds), "--json"]
        if cmd == "codes-stats":
            return ["codes", "stats", "--model", str(FIX["model"]), "--embeddings", str(FIX["emb"]), "--dataset", str(ds), "--json"]
        return ["codes", "rooms", "--dataset", str(ds), "--codes", str(FIX["codes"]), "--out", str(root / "out" / "rc.parquet")]

    return Case(f"{cmd}-{id}", build, names, tuple(expect))


def _flip(table: str, column: str, n: int = 16):
    """Invert bytes at the start of ``column``'s first data page (its header or its values)."""
    def mutate(ds: Path) -> None:
        path = ds / f"{table}.parquet"
        meta = pq.read_metadata(path).row_group(0)
        chunk = next(meta.column(i) for i in range(meta.num_columns) if meta.column(i).path_in_schema == column)
        data = bytearray(path.read_bytes())
        for i in range(chunk.data_page_offset + 4, chunk.data_page_offset + 4 + n):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))

    return mutate


def _retype(table: str, column: str, values):
    def mutate(ds: Path) -> None:
        t = pq.read_table(ds / f"{table}.parquet")
        t = t.set_column(t.schema.get_field_index(column), column, pa.array(values(t.num_rows)))
        pq.write_table(t, ds / f"{table}.parquet")

    return mutate


def _manifest(content: bytes):
    return lambda ds: (ds / "manifest.json").write_bytes(content)


IMP, SL, RM, MAN = ("impressions.parquet",), ("slices.parquet",), ("rooms.parquet",), ("manifest.json",)
TABLE_CASES = []
for cmd in ("validate", "stats", "rooms"):
    TABLE_CASES += [
        ds_case("impressions-corrupt-page", _flip("impressions", "ts"), cmd, IMP, ("SHA-256",) if cmd == "validate" else ("Parquet",)),
        ds_case("impressions-truncated", lambda ds: write(ds / "impressions.parquet", (ds / "impressions.parquet").read_bytes()[:-40]), cmd, IMP),
        ds_case("impressions-text", lambda ds: write(ds / "impressions.parquet", "ts,user_id\n1,2\n"), cmd, IMP, ("Parquet",)),
        ds_case("impressions-missing", lambda ds: (ds / "impressions.parquet").unlink(), cmd, IMP, ("not found",)),
    ]
    if cmd != "rooms":  # codes rooms never reads rooms.parquet
        TABLE_CASES.append(ds_case("rooms-corrupt-page", _flip("rooms", "start_ts"), cmd, RM, ("SHA-256",) if cmd == "validate" else ("Parquet",)))
    if cmd != "validate":  # validate reads every byte and reports these more precisely (test_validate.py)
        TABLE_CASES += [
            ds_case("slices-corrupt-page", _flip("slices", "room_id"), cmd, SL, ("Parquet",)),
            ds_case("slices-room-id-strings", _retype("slices", "room_id", lambda n: [str(i) for i in range(n)]), cmd, SL, ("column room_id", "wrong type")),
        ]
    for name, content, expect in [
        ("number", b"5", "JSON object"), ("null", b"null", "JSON object"), ("list", b"[1, 2]", "JSON object"), ("string", b'"x"', "JSON object"),
        ("non-utf8", b'{"source": "\xff"}', "UTF-8"), ("nested", b"[" * 100_000 + b"]" * 100_000, "nested"), ("empty", b"", "not valid JSON"),
        ("utf16-no-bom", '{"schema_version": 1}'.encode("utf-16-le"), "not valid JSON"), ("truncated", b'{"schema_version": 1, "row', "not valid JSON"),
        ("5000-digit-int", b'{"schema_version": 1' + b"0" * 5000 + b"}", "not valid JSON"),
    ]:  # fmt: skip
        TABLE_CASES.append(ds_case(f"manifest-{name}", _manifest(content), cmd, MAN, (expect,)))
    TABLE_CASES.append(ds_case("manifest-directory", lambda ds: ((ds / "manifest.json").unlink(), (ds / "manifest.json").mkdir()), cmd, MAN, ("directory",)))
TABLE_CASES += [
    ds_case("slices-truncated", lambda ds: write(ds / "slices.parquet", (ds / "slices.parquet").read_bytes()[:-30]), "codes-stats", SL, ("Parquet",)),
    ds_case("slices-text", lambda ds: write(ds / "slices.parquet", "slice_id\n1\n"), "codes-stats", SL, ("Parquet",)),
    ds_case("manifest-list", _manifest(b"[]"), "codes-stats", MAN, ("JSON object",)),
    ds_case("impressions-ts-null", _retype("impressions", "ts", lambda n: [None] + list(range(1, n))), "rooms", IMP, ("column ts", "null")),
    ds_case("slices-start-null", _retype("slices", "start_ts", lambda n: pa.array([None] * n, pa.int64())), "rooms", SL, ("null",)),
    ds_case("manifest-empty-object", _manifest(b"{}"), "stats", MAN, ("JSON object",)),
    ds_case("manifest-empty-object", _manifest(b"{}"), "validate", MAN, ("schema_version",)),
]

# ---------------------------------------------------------------- code files (codes rooms)


def codes_case(id: str, make, expect=(), sidecar: str | None = None) -> Case:
    """Slice codes written by ``make(path)`` (raw Parquet), read by ``codes rooms``."""
    def build(root: Path) -> list[str]:
        p = root / "slice_codes.parquet"
        make(p)
        if sidecar is not None:
            write(root / "slice_codes.config.json", sidecar)
        return ["codes", "rooms", "--dataset", str(FIX["ds"]), "--codes", str(p), "--out", str(root / "out" / "rc.parquet")]

    return Case(f"codes-{id}", build, ("slice_codes.parquet", "slice_codes.config.json"), tuple(expect))


def _codes(c1=None, ids=None, k: int | None = 4, extra: dict | None = None, drop: tuple = ()):
    def make(p: Path) -> None:
        t = pq.read_table(FIX["codes"])
        if c1 is not None:
            t = t.set_column(t.schema.get_field_index("c1"), "c1", c1(t.num_rows))
        if ids is not None:
            t = t.set_column(0, "slice_id", ids(t.num_rows))
        for name, col in (extra or {}).items():
            t = t.append_column(name, col(t.num_rows))
        t = t.drop_columns(list(drop))
        meta = None if k is None else {b"fluidrec.codebook_size": str(k).encode()}
        pq.write_table(t.replace_schema_metadata(meta), p)

    return make


def _i32(value, at=0):
    return lambda n: pa.array([value if i == at else 0 for i in range(n)], pa.int32())


CODES_CASES = [
    codes_case("above-codebook-metadata", _codes(c1=_i32(4, at=3)), ("row 3", "codebook size 4")),
    codes_case("above-codebook-sidecar", _codes(c1=_i32(9), k=None), ("codebook size 8",), sidecar='{"config": {"codebook_size": 8}}'),
    codes_case("above-codebook-oracle-sidecar", _codes(c1=_i32(3), k=None), ("codebook size 3",), sidecar='{"num_codes": 3}'),
    codes_case("above-cap-no-metadata", _codes(c1=_i32(2**24), k=None), ("MAX_CODEBOOK_SIZE",)),
    codes_case("negative-code", _codes(c1=_i32(-1, at=2), k=None), ("row 2", "below 0")),
    codes_case("null-code", _codes(c1=lambda n: pa.array([None] * n, pa.int32())), ("null code",)),
    codes_case("string-code", _codes(c1=lambda n: pa.array(["1"] * n)), ("integer codes",)),
    codes_case("null-slice-id", _codes(ids=lambda n: pa.array([None] * n, pa.int64())), ("null id",)),
    codes_case("float-slice-id", _codes(ids=lambda n: pa.array(np.arange(n, dtype=np.float64))), ("integer ids",)),
    codes_case("no-slice-id", _codes(drop=("slice_id",)), ("column slice_id",)),
    codes_case("no-code-columns", _codes(drop=("c1", "c2")), ("no code columns",)),
    codes_case("gap-in-levels", _codes(extra={"c4": _i32(0)}), ("without gaps",)),
    codes_case("bad-metadata", _codes(k="many"), ("malformed codebook size",)),
    codes_case("bad-sidecar", _codes(k=None), ("not valid JSON",), sidecar="{"),
    codes_case("corrupt-page", lambda p: flip_bytes(FIX["codes"], p, 0.3), ("Parquet",)),
]


def test_codes_readers_refuse_what_would_grow_a_ranker_table(shared, tmp_path):
    """``ranker train`` reads codes through these two: out-of-codebook codes stop here."""
    ids = np.arange(5)
    bad = np.array([[0, 1], [1, 1], [2, 5], [0, 0], [1, 2]])  # 5 >= K = 4
    write_codes(tmp_path / "s.parquet", ids, bad, codebook_size=4)
    with pytest.raises(DataError, match=r"s\.parquet, column c2, row 2, value 5: code outside the codebook"):
        read_codes(tmp_path / "s.parquet")
    write_room_codes(tmp_path / "r.parquet", ids, np.array([[0, -1], [-1, -1], [3, 3], [-2, 0], [0, 0]]), codebook_size=4)
    with pytest.raises(DataError, match=r"r\.parquet, column r1, row 3, value -2: code below -1"):
        read_room_codes(tmp_path / "r.parquet")
    write_room_codes(tmp_path / "ok.parquet", ids, np.array([[0, -1], [-1, -1], [3, 3], [2, 0], [0, 0]]), codebook_size=4)
    assert read_room_codes(tmp_path / "ok.parquet").max() == 3  # -1 (unknown) and K - 1 are fine


def test_codes_rooms_records_the_codebook_size(shared, tmp_path, capsys):
    out = tmp_path / "rc.parquet"
    code, _, err = run_main(["codes", "rooms", "--dataset", str(FIX["ds"]), "--codes", str(FIX["codes"]), "--out", str(out)], capsys)
    assert code == 0, err
    assert pq.read_schema(out).metadata[b"fluidrec.codebook_size"] == b"4"


# ---------------------------------------------------------------- output paths


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def out_case(id: str, cmd, names: tuple[str, ...], expect=()) -> Case:
    def build(root: Path) -> list[str]:
        write(root / "afile", "a file, not a directory")
        return cmd(root)

    return Case(f"out-{id}", build, names, tuple(expect))


OUT_CASES = [
    out_case("assign-parent-is-file", lambda r: _assign_argv(r, FIX["emb"])[:-3] + ["--out", str(r / "afile" / "c.parquet"), "--quiet"], ("afile/c.parquet",), ("cannot write", "is not a directory")),
    out_case("assign-out-is-dir", lambda r: _assign_argv(r, FIX["emb"])[:-3] + ["--out", str(_mkdir(r / "adir")), "--quiet"], ("adir",), ("directory",)),
    out_case("rooms-parent-is-file", lambda r: ["codes", "rooms", "--dataset", str(FIX["ds"]), "--codes", str(FIX["codes"]), "--out", str(r / "afile" / "x" / "rc.parquet")],
             ("afile/x/rc.parquet",)),  # fmt: skip
    out_case("fit-parent-is-file", lambda r: ["codes", "fit", "--embeddings", str(FIX["emb"]), "--out", str(r / "afile" / "m"), "--quiet"], ("afile/m",)),
    out_case("fit-out-is-file", lambda r: ["codes", "fit", "--embeddings", str(FIX["emb"]), "--out", str(r / "afile"), "--quiet"], ("afile",), ("not a directory",)),
    out_case("fit-bad-input-new-dir", lambda r: ["codes", "fit", "--embeddings", str(r / "none.parquet"), "--out", str(r / "new" / "deeper" / "m")], ("none.parquet",)),
    out_case("world-parent-is-file", lambda r: ["world", "generate", "--scale", "tiny", "--out", str(r / "afile" / "w"), "--no-progress"], ("afile/w",)),
    out_case("world-bad-scale-new-dir", lambda r: ["world", "generate", "--scale", "galactic", "--out", str(r / "new" / "w")], ("galactic",)),
    out_case("oracle-out-is-file", lambda r: ["codes", "oracle", "--dataset", str(FIX["ds"]), "--out", str(r / "afile")], ("afile",)),
]

# ---------------------------------------------------------------- CLI integers and floats


def flag_case(id: str, argv: list[str], flag: str) -> Case:
    return Case(f"flag-{id}", lambda root: [a.replace("{root}", str(root)) for a in argv], (flag,), ("argument",))


R = "{root}"
FLAG_CASES = [
    flag_case("world-seed-2**64", ["world", "generate", "--scale", "tiny", "--seed", str(2**64), "--out", f"{R}/w"], "--seed"),
    flag_case("world-seed-negative", ["world", "generate", "--scale", "tiny", "--seed", "-1", "--out", f"{R}/w"], "--seed"),
    flag_case("world-seed-float", ["world", "generate", "--scale", "tiny", "--seed", "1.5", "--out", f"{R}/w"], "--seed"),
    flag_case("fit-seed-2**31", ["codes", "fit", "--embeddings", "e", "--out", f"{R}/m", "--seed", str(2**31)], "--seed"),
    flag_case("fit-levels-2**64", ["codes", "fit", "--embeddings", "e", "--out", f"{R}/m", "--levels", str(2**64)], "--levels"),
    flag_case("fit-size-0", ["codes", "fit", "--embeddings", "e", "--out", f"{R}/m", "--size", "0"], "--size"),
    flag_case("stats-table-cap-2**63", ["codes", "stats", "--model", "m", "--embeddings", "e", "--table-cap", str(2**63)], "--table-cap"),
    flag_case("ranker-seed-negative", ["ranker", "train", "--dataset", "d", "--codes", "c", "--arm", "baseline", "--out", f"{R}/r", "--seed", "-1"], "--seed"),
    flag_case("ranker-seed-2**64", ["ranker", "train", "--dataset", "d", "--codes", "c", "--arm", "baseline", "--out", f"{R}/r", "--seed", str(2**64)], "--seed"),
    flag_case("ranker-test-days-nan", ["ranker", "train", "--dataset", "d", "--codes", "c", "--arm", "baseline", "--out", f"{R}/r", "--test-days", "nan"], "--test-days"),
    flag_case("ranker-max-rows-2**63", ["ranker", "train", "--dataset", "d", "--codes", "c", "--arm", "baseline", "--out", f"{R}/r", "--max-rows", str(2**63)], "--max-rows"),
    flag_case("encoder-seed-negative", ["encoder", "train", "--dataset", "d", "--out", f"{R}/e", "--seed", "-1"], "--seed"),
    flag_case("encoder-lr-inf", ["encoder", "train", "--dataset", "d", "--out", f"{R}/e", "--lr", "inf"], "--lr"),
    flag_case("encoder-steps-2**64", ["encoder", "train", "--dataset", "d", "--out", f"{R}/e", "--steps", str(2**64)], "--steps"),
    flag_case("ablate-seed-2**40", ["encoder", "ablate", "--dataset", "d", "--out", f"{R}/a", "--seed", str(2**40)], "--seed"),
    flag_case("import-step-ms-9e18", ["data", "import", "microlens", "--path", "p", "--out", f"{R}/o", "--step-ms", "9e18"], "--step-ms"),
    flag_case("import-long-view-nan", ["data", "import", "kuailive-m3", "--path", "p", "--out", f"{R}/o", "--long-view-s", "nan"], "--long-view-s"),
    flag_case("import-max-videos-2**63", ["data", "import", "kuailive-m3", "--path", "p", "--out", f"{R}/o", "--max-videos", str(2**63)], "--max-videos"),
]

ALL = EMB_CASES + TABLE_CASES + CODES_CASES + OUT_CASES + FLAG_CASES


def test_enough_cases():
    assert len(ALL) >= 100 and len({c.id for c in ALL}) == len(ALL)


@pytest.mark.parametrize("case", ALL, ids=[c.id for c in ALL])
def test_bad_file_or_flag(case: Case, tmp_path, capsys):
    check_clean_failure(case, tmp_path, capsys)


def test_the_shared_inputs_are_good(tmp_path, capsys):
    """Guard: without the damage, the same commands succeed (so each case fails for its damage)."""
    for argv in (_assign_argv(tmp_path, FIX["emb"]), ["data", "validate", str(FIX["ds"])], ["data", "stats", str(FIX["ds"])],
                 ["codes", "rooms", "--dataset", str(FIX["ds"]), "--codes", str(FIX["codes"]), "--out", str(tmp_path / "rc.parquet")]):  # fmt: skip
        code, _, err = run_main(argv, capsys)
        assert code == 0, (argv, err)


# ---------------------------------------------------------------- unreadable files


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode")
@pytest.mark.parametrize("target", ["manifest.json", "impressions.parquet"])
def test_unreadable_file_by_mode(target, tmp_path, capsys):
    ds = tmp_path / "ds"
    shutil.copytree(FIX["ds"], ds)
    (ds / target).chmod(0)
    try:
        code, _, err = run_main(["data", "validate", str(ds)], capsys)
    finally:
        (ds / target).chmod(0o644)
    assert code == 2 and target in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unreadable_manifest(tmp_path, capsys, monkeypatch):
    """An OS read error (here a PermissionError, as for mode 000 without root) is one line naming the file."""
    ds = tmp_path / "ds"
    shutil.copytree(FIX["ds"], ds)
    real = Path.read_bytes

    def deny(self):
        if self.name == "manifest.json":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", deny)
    code, _, err = run_main(["data", "validate", str(ds)], capsys)
    assert code == 2 and "manifest.json: unreadable (Permission denied)" in err and "Traceback" not in err


def test_unreadable_csv(tmp_path, capsys, monkeypatch):
    import builtins

    from fluidrec.data.importers import common

    write(tmp_path / "i.csv", "u,i\nx,A\n")
    write(tmp_path / "t.csv", "i,title\nA,a\n")
    real = builtins.open

    def deny(path, *a, **k):
        if str(path).endswith("i.csv"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(common, "open", deny, raising=False)
    code, _, err = run_main(["data", "import", "csv", "--interactions", str(tmp_path / "i.csv"), "--items", str(tmp_path / "t.csv"),
                             "--user-col", "u", "--item-col", "i", "--text-cols", "title", "--out", str(tmp_path / "o"), "--no-progress"], capsys)  # fmt: skip
    assert code == 2 and "i.csv: unreadable (Permission denied)" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
