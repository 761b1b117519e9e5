"""Bad inputs to ``fluidrec data import`` (csv, microlens, mind, kuailive-m3): each one a
one-line error naming the file (and line, column or value), exit 2, and nothing written.

Classes covered: times and ids that overflow int64 or leave [1970, 2200); negative ids;
NaN / null timestamps; empty (0-byte) or header-only side files that would import with
every title null; non-UTF-8 bytes (reported at their own line), UTF-16 without a BOM;
unbalanced quotes (reported where the record starts); wrong field counts; deeply nested
JSON; corrupt Parquet pages; bad flags; output paths that cannot be created.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.fixtures.kuailive_m3 import write_kuailive_m3_fixture

from .harness import Case, check_clean_failure, flip_bytes, write

ITEMS = "i,title\nA,red shoes\nB,blue kettle\n"
TS_LOG = "u,i,t\nx,A,1700000000000\ny,B,1700000060000\n"


def csv_case(id: str, inter: str | bytes, items: str | bytes = ITEMS, *flags: str, names=("i.csv",), expect=(), time_col=True) -> Case:
    def build(root: Path) -> list[str]:
        write(root / "in" / "i.csv", inter)
        write(root / "in" / "t.csv", items)
        argv = ["data", "import", "csv", "--interactions", str(root / "in" / "i.csv"), "--items", str(root / "in" / "t.csv"),
                "--user-col", "u", "--item-col", "i", "--text-cols", "title", "--out", str(root / "out" / "ds"), "--no-progress"]
        return argv + (["--time-col", "t"] if time_col else []) + list(flags)  # fmt: skip

    return Case(f"csv-{id}", build, names, tuple(expect))


def _log(rows: list[str], header: str = "u,i,t") -> str:
    return "\n".join([header, *rows]) + "\n"


def _long(n: int, tail: str) -> str:
    return _log([f"x{k},A,{1_700_000_000_000 + k}" for k in range(n)] + [tail])


CSV_CASES = [
    # time: int64 overflow, the time range, units
    csv_case("time-int64-overflow", _log(["x,A,99999999999999999999999"]), expect=("line 2", "time outside")),
    csv_case("time-s-9.3e15", _log(["x,A,9300000000000000"]), ITEMS, "--time-unit", "s", expect=("line 2", "--time-unit s")),
    csv_case("time-s-overflow", _log(["x,A,9223372036854775"]), ITEMS, "--time-unit", "s", expect=("line 2",)),
    csv_case("time-negative", _log(["x,A,-5"]), expect=("line 2", "time outside")),
    csv_case("time-iso-1900", _log(["x,A,1900-01-01T00:00:00"]), expect=("1900-01-01",)),
    csv_case("time-iso-year1-offset", _log(["x,A,0001-01-01T00:00:00+05:00"]), expect=("line 2",)),
    csv_case("time-iso-2500", _log(["x,A,2500-01-01T00:00:00Z"]), expect=("line 2", "2200")),
    csv_case("time-ms-after-2200", _log(["x,A,7258118400000"]), expect=("line 2",)),
    csv_case("time-text", _log(["x,A,yesterday"]), expect=("line 2", "ISO-8601")),
    csv_case("time-float", _log(["x,A,1.7e12"]), expect=("line 2",)),
    csv_case("time-empty", _log(["x,A,"]), expect=("line 2",)),
    csv_case("time-row-5", _log(["x,A,1700000000000"] * 3 + ["y,B,nan"]), expect=("line 5",)),
    # ids and labels
    csv_case("empty-user", _log([",A,1700000000000"]), expect=("line 2", "empty user")),
    csv_case("empty-item", _log(["x,,1700000000000"]), expect=("line 2", "empty item")),
    csv_case("label-nan", "u,i,l\nx,A,nan\n", ITEMS, "--label-col", "l", time_col=False, expect=("line 2", "finite")),
    csv_case("label-inf", "u,i,l\nx,A,-inf\n", ITEMS, "--label-col", "l", time_col=False, expect=("line 2",)),
    csv_case("label-1e400", "u,i,l\nx,A,1e400\n", ITEMS, "--label-col", "l", time_col=False, expect=("1e400",)),
    csv_case("label-text", "u,i,l\nx,A,five\n", ITEMS, "--label-col", "l", time_col=False, expect=("five",)),
    # encodings
    csv_case("non-utf8-line-12", _long(10, "x,\xff,1700000000000").encode("latin-1"), expect=("line 12", "utf-8")),
    csv_case("non-utf8-line-5002", _long(5000, "x,\xe9t\xe9,1700000000000").encode("latin-1"), expect=("line 5002",)),
    csv_case("non-utf8-items", TS_LOG, "i,title\nA,caf\xe9\nB,x\n".encode("latin-1"), names=("t.csv",), expect=("line 2",)),
    csv_case("truncated-utf8-at-end", TS_LOG.encode() + b"z,A,\xe2\x82", expect=("i.csv",)),
    csv_case("utf16-no-bom-as-utf8", TS_LOG.encode("utf-16-le"), names=("i.csv",), expect=("UTF-16", "--encoding utf-16-le")),
    csv_case("utf16-no-bom-declared", TS_LOG.encode("utf-16-be"), ITEMS.encode("utf-16-be"), "--encoding", "utf-16", expect=("BOM",)),
    csv_case("unknown-encoding", TS_LOG, ITEMS, "--encoding", "klingon-8", names=("klingon-8",)),
    csv_case("not-a-text-encoding", TS_LOG, ITEMS, "--encoding", "rot13", names=("rot13",)),
    csv_case("binary-codec", TS_LOG, ITEMS, "--encoding", "hex", names=("hex",)),
    csv_case("nul-bytes-only", b"\x00" * 64, names=("i.csv",), expect=("NUL",)),
    # quoting and structure
    csv_case("quote-line-7", _log([f"x{k},A,{1_700_000_000_000 + k}" for k in range(5)] + ['x,"A,1700000000000']
                                  + [f"y{k},B,{1_700_000_000_000 + k}" for k in range(45)]), expect=("line 7", "quote")),  # fmt: skip
    csv_case("quote-then-text", _log(['x,"A"B,1700000000000']), expect=("line 2",)),
    csv_case("quote-items-line-3", TS_LOG, 'i,title\nA,ok\n"B,never closed\n', names=("t.csv",), expect=("line 3",)),
    csv_case("field-count", _log(["x,A,1700000000000,extra"]), expect=("line 2", "expected 3 fields")),
    csv_case("empty-line", _log(["x,A,1700000000000", "", "y,B,1700000000001"]), expect=("line 3", "empty line")),
    csv_case("header-lacks-column", "user,i,t\nx,A,1\n", names=("i.csv",), expect=("--user-col",)),
    csv_case("no-header-index", "x,A\n", ITEMS, "--no-header", "--user-col", "0", "--item-col", "5", "--text-cols", "1", time_col=False, names=("i.csv",)),
    csv_case("interactions-0-bytes", b"", names=("i.csv",), expect=("empty",)),
    csv_case("interactions-header-only", "u,i,t\n", names=("i.csv",), expect=("no valid interactions",)),
    csv_case("items-0-bytes", TS_LOG, b"", names=("t.csv",), expect=("empty",)),
    csv_case("items-header-only", TS_LOG, "i,title\n", names=("t.csv",), expect=("none of the 2",)),
    csv_case("items-other-ids", TS_LOG, "i,title\nZ,zebra\n", names=("t.csv",), expect=("none of the 2",)),
    csv_case("items-wrong-delimiter", TS_LOG, "i;title\nA;x\nB;y\n", names=("t.csv",)),
    csv_case("items-duplicate-id", TS_LOG, "i,title\nA,x\nA,y\n", names=("t.csv",), expect=("line 3", "duplicate")),
    csv_case("items-empty-id", TS_LOG, "i,title\n,x\n", names=("t.csv",), expect=("line 2",)),
    csv_case("bom-then-bad-row", "\ufeffu,i,t\nx,A,1700000000000\ny,B,oops\n", expect=("line 3", "oops")),
    # flags
    csv_case("negatives-2**64", TS_LOG, ITEMS, "--negatives", str(2**64), names=("--negatives",)),
    csv_case("negatives-1001", TS_LOG, ITEMS, "--negatives", "1001", names=("--negatives",)),
    csv_case("seed-2**64", TS_LOG, ITEMS, "--seed", str(2**64), names=("--seed",)),
    csv_case("seed-negative", TS_LOG, ITEMS, "--seed", "-1", names=("--seed",)),
    csv_case("max-users-0", TS_LOG, ITEMS, "--max-users", "0", names=("--max-users",)),
    csv_case("max-users-2**63", TS_LOG, ITEMS, "--max-users", str(2**63), names=("--max-users",)),
    csv_case("positive-threshold-nan", TS_LOG, ITEMS, "--label-col", "t", "--positive-threshold", "nan", names=("--positive-threshold",)),
    csv_case("delimiter-two-chars", TS_LOG, ITEMS, "--delimiter", ";;", names=("--delimiter",)),
]


def _csv_paths_case(id: str, mutate, names, expect=()) -> Case:
    """A good CSV import whose argv ``mutate(root, argv)`` points somewhere bad."""
    base = csv_case("x", TS_LOG)

    def build(root: Path) -> list[str]:
        return mutate(root, base.build(root))

    return Case(f"csv-{id}", build, names, tuple(expect))


def _swap(argv: list[str], flag: str, value: str) -> list[str]:
    argv = list(argv)
    argv[argv.index(flag) + 1] = value
    return argv


def _mkfile(p: Path) -> Path:
    write(p, "not a directory")
    return p


CSV_CASES += [
    _csv_paths_case("interactions-missing", lambda r, a: _swap(a, "--interactions", str(r / "in" / "nope.csv")), ("nope.csv",), ("not found",)),
    _csv_paths_case("interactions-is-dir", lambda r, a: _swap(a, "--interactions", str(r / "in")), (str(Path("in")),), ("directory",)),
    _csv_paths_case("items-missing", lambda r, a: _swap(a, "--items", str(r / "in" / "gone.csv")), ("gone.csv",)),
    _csv_paths_case("out-parent-is-file", lambda r, a: _swap(a, "--out", str(_mkfile(r / "in" / "f") / "ds")), ("f/ds",)),
    _csv_paths_case("out-is-file", lambda r, a: _swap(a, "--out", str(_mkfile(r / "in" / "g"))), ("in/g",)),
    _csv_paths_case("out-non-empty", lambda r, a: (write(r / "out" / "ds" / "keep.txt", "x"), a)[1], ("out/ds",), ("--force",)),
]

# ---------------------------------------------------------------- MicroLens

TITLES = "item,title\n1,a cat # funny\n2,a dog\n3,a bird\n"


def ml_case(id: str, pairs: str | bytes, titles: str | bytes = TITLES, *flags: str, names=("MicroLens-50k_pairs.tsv",), expect=()) -> Case:
    def build(root: Path) -> list[str]:
        write(root / "ml" / "MicroLens-50k_pairs.tsv", pairs)
        write(root / "ml" / "MicroLens-50k_titles.csv", titles)
        return ["data", "import", "microlens", "--path", str(root / "ml"), "--out", str(root / "out"), "--no-progress", *flags]

    return Case(f"microlens-{id}", build, names, tuple(expect))


TITLES_NAME = ("MicroLens-50k_titles.csv",)
ML_CASES = [
    ml_case("negative-item", "1\t1 -2 3\n", expect=("line 1", "negative", "'-2'")),
    ml_case("negative-user", "-7\t1 2\n", expect=("line 1", "negative")),
    ml_case("item-int64-overflow", f"1\t1 {2**63}\n", expect=("line 1", "int64")),
    ml_case("user-int64-overflow", f"{2**70}\t1 2\n", expect=("int64",)),
    ml_case("item-not-int", "1\t1 x2\n", expect=("not an integer",)),
    ml_case("field-count", "1\t1 2\t3\n", expect=("expected 2",)),
    ml_case("user-twice", "1\t1 2\n1\t3\n", expect=("line 2", "more than one line")),
    ml_case("no-items", "1\t \n", expect=("line 1",)),
    ml_case("non-utf8-line-4", b"1\t1\n2\t2\n3\t3\n4\t\xff\n", expect=("line 4", "utf-8")),
    ml_case("pairs-0-bytes", b"", expect=("empty",)),
    ml_case("titles-0-bytes", "1\t1 2\n", b"", names=TITLES_NAME, expect=("empty",)),
    ml_case("titles-header-only", "1\t1 2\n", "item,title\n", names=TITLES_NAME, expect=("none of the 2",)),
    ml_case("titles-other-items", "1\t1 2\n", "item,title\n9,x\n", names=TITLES_NAME, expect=("none of the 2",)),
    ml_case("titles-wrong-header", "1\t1 2\n", "id,name\n1,x\n", names=TITLES_NAME, expect=("line 1",)),
    ml_case("titles-negative-item", "1\t1 2\n", "item,title\n-1,x\n1,y\n", names=TITLES_NAME, expect=("line 2", "negative")),
    ml_case("titles-quote-line-3", "1\t1 2\n", 'item,title\n1,"ok"\n2,"open\n3,c\n4,d\n', names=TITLES_NAME, expect=("line 3",)),
    ml_case("titles-non-utf8-line-3", "1\t1 2\n", b"item,title\n1,a\n2,\xff\n", names=TITLES_NAME, expect=("line 3",)),
    ml_case("bom-then-bad-user", "\ufeff1\t1 2\nx\t2\n", expect=("line 2", "'x'")),
    ml_case("step-ms-9e18", "1\t1 2\n", TITLES, "--step-ms", "9e18", names=("--step-ms",)),
    ml_case("step-ms-int64", "1\t1 2\n", TITLES, "--step-ms", "9000000000000000000", names=("--step-ms",)),
    ml_case("step-ms-times-length", "1\t" + " ".join(str(i % 3 + 1) for i in range(20)) + "\n", TITLES, "--step-ms", str(10**12),
            expect=("--step-ms", "line 1")),  # fmt: skip
]


def _ml_missing(root: Path) -> list[str]:
    write(root / "ml" / "MicroLens-50k_pairs.tsv", "1\t1 2\n")
    return ["data", "import", "microlens", "--path", str(root / "ml"), "--out", str(root / "out"), "--no-progress"]


ML_CASES.append(Case("microlens-titles-missing", _ml_missing, TITLES_NAME, ("not found",)))

# ---------------------------------------------------------------- MIND

NEWS = "".join(f"N{k}\tnews\tworld\ttitle {k}\tabstract\thttps://x/{k}\t[]\t[]\n" for k in (1, 2, 3))
BEHAVIOR = "1\tU1\t11/11/2019 9:05:58 AM\tN3\tN1-1 N2-0\n"


def mind_case(id: str, behaviors: str | bytes, news: str | bytes = NEWS, *flags: str, names=("behaviors.tsv",), expect=()) -> Case:
    def build(root: Path) -> list[str]:
        write(root / "mind" / "behaviors.tsv", behaviors)
        write(root / "mind" / "news.tsv", news)
        return ["data", "import", "mind", "--path", str(root / "mind"), "--out", str(root / "out"), "--no-progress", *flags]

    return Case(f"mind-{id}", build, names, tuple(expect))


NEWS_NAME = ("news.tsv",)
MIND_CASES = [
    mind_case("date-1960", "1\tU1\t11/11/1960 9:05:58 AM\t\tN1-1 N2-0\n", expect=("line 1", "1970")),
    mind_case("date-1969-dec-31", BEHAVIOR + "2\tU2\t12/31/1969 11:59:59 PM\t\tN1-0\n", expect=("line 2",)),
    mind_case("date-garbage", "1\tU1\tyesterday\t\tN1-1\n", expect=("line 1", "M/D/YYYY")),
    mind_case("user-int64-overflow", f"1\tU{2**64}\t11/11/2019 9:05:58 AM\t\tN1-1\n", expect=("int64",)),
    mind_case("request-int64-overflow", f"{2**63}\tU1\t11/11/2019 9:05:58 AM\t\tN1-1\n", expect=("int64",)),
    mind_case("news-int64-overflow", f"1\tU1\t11/11/2019 9:05:58 AM\t\tN{2**63}-1\n", expect=("int64",)),
    mind_case("entry-form", "1\tU1\t11/11/2019 9:05:58 AM\t\tN1-2\n", expect=("N<digits>-<0|1>",)),
    mind_case("field-count", "1\tU1\t11/11/2019 9:05:58 AM\tN1-1\n", expect=("expected 5",)),
    mind_case("duplicate-request", BEHAVIOR + BEHAVIOR, expect=("line 2", "duplicate")),
    mind_case("behaviors-0-bytes", b"", expect=("empty",)),
    mind_case("behaviors-non-utf8-line-2", BEHAVIOR.encode() + b"2\tU\xff\t11/11/2019 9:05:58 AM\t\tN1-1\n", expect=("line 2",)),
    mind_case("news-0-bytes", BEHAVIOR, b"", names=NEWS_NAME, expect=("empty",)),
    mind_case("news-other-ids", BEHAVIOR, "N9\tnews\tworld\tt\ta\tu\t[]\t[]\n", names=NEWS_NAME, expect=("none of the news",)),
    mind_case("news-nested-json", BEHAVIOR, NEWS + "N4\tn\tw\tt\ta\tu\t" + "[" * 50_000 + "]" * 50_000 + "\t[]\n", names=NEWS_NAME,
              expect=("line 4", "title_entities")),  # fmt: skip
    mind_case("news-entities-not-json", BEHAVIOR, NEWS + "N4\tn\tw\tt\ta\tu\t{oops\t[]\n", names=NEWS_NAME, expect=("line 4",)),
    mind_case("news-entities-huge-int", BEHAVIOR, NEWS + "N4\tn\tw\tt\ta\tu\t[" + "9" * 5000 + "]\t[]\n", names=NEWS_NAME, expect=("line 4",)),
    mind_case("news-id-form", BEHAVIOR, "X1\tn\tw\tt\ta\tu\t[]\t[]\n", names=NEWS_NAME, expect=("line 1",)),
    mind_case("news-field-count", BEHAVIOR, "N1\tn\tw\n", names=NEWS_NAME, expect=("expected 8",)),
    mind_case("news-empty-category", BEHAVIOR, "N1\t\tw\tt\ta\tu\t[]\t[]\n", names=NEWS_NAME, expect=("category",)),
]


# ---------------------------------------------------------------- KuaiLive-M3

@pytest.fixture(scope="module")
def klm3_src(tmp_path_factory) -> Path:
    return write_kuailive_m3_fixture(tmp_path_factory.mktemp("klm3"))


def _rewrite(path: Path, column: str, values, type_: pa.DataType) -> None:
    table = pq.read_table(path)
    table = table.set_column(table.schema.get_field_index(column), column, pa.array(values, type_))
    pq.write_table(table, path)


def _meta(column: str, values, type_: pa.DataType):
    return lambda d: _rewrite(d / "live_room_meta.parquet", column, values, type_)


def _sessions(line: str):
    def mutate(d: Path) -> None:
        text = (d / "live_interaction.csv").read_text().splitlines()
        cols = text[0].split(",")
        row = dict(zip(cols, text[1].split(",")))
        for kv in line.split(";"):
            k, v = kv.split("=", 1)
            row[k] = v
        (d / "live_interaction.csv").write_text("\n".join([text[0], ",".join(row[c] for c in cols), *text[2:]]) + "\n")

    return mutate


def _segments(column: str, values, type_: pa.DataType):
    def mutate(d: Path) -> None:
        shard = sorted((d / "live_emb_128_ts").glob("*.parquet"))[0]
        n = pq.read_metadata(shard).num_rows
        _rewrite(shard, column, values(n), type_)

    return mutate


def klm3_case(id: str, mutate, names: tuple[str, ...], expect=()) -> Case:
    def build(root: Path) -> list[str]:
        src = root / "klm3"
        shutil.copytree(KLM3_SRC[0], src)
        mutate(src)
        return ["data", "import", "kuailive-m3", "--path", str(src), "--out", str(root / "out"), "--no-progress"]

    return Case(f"klm3-{id}", build, names, tuple(expect))


KLM3_SRC: list[Path] = []  # filled by the autouse fixture below (cases are built before fixtures exist)
META, SESS = ("live_room_meta.parquet",), ("live_interaction.csv",)
NAN4 = [float("nan"), 1.7477e12, 1.7477e12, 1.7477e12]
KLM3_CASES = [
    klm3_case("start-nan", _meta("start_timestamp", NAN4, pa.float64()), META, ("start_timestamp", "row 0", "nan")),
    klm3_case("start-null", _meta("start_timestamp", [None, 1_747_728_000_000, 1_747_728_000_000, 1_747_728_000_000], pa.int64()), META, ("start_timestamp",)),
    klm3_case("start-year-9999", _meta("start_timestamp", [253_402_300_799_000] * 4, pa.int64()), META, ("start_timestamp", "2200")),
    klm3_case("start-seconds-overflow", _meta("start_timestamp", [2**62] * 4, pa.int64()), META, ("start_timestamp",)),
    klm3_case("live-id-negative", _meta("live_id", [-101, 102, 103, 104], pa.int64()), META, ("live_id", "-101")),
    klm3_case("live-id-uint64", _meta("live_id", [2**64 - 1, 102, 103, 104], pa.uint64()), META, ("live_id",)),
    klm3_case("duration-overflow", _meta("live_duration", [2**62] * 4, pa.int64()), META, ("live_duration", "row 3")),
    klm3_case("end-year-9999", _meta("end_timestamp", [253_402_300_799_000] * 4, pa.int64()), META, ("end_timestamp",)),
    klm3_case("meta-corrupt-page", lambda d: flip_bytes(d / "live_room_meta.parquet", d / "live_room_meta.parquet", 0.2, 64), META),
    klm3_case("meta-not-parquet", lambda d: write(d / "live_room_meta.parquet", "live_id,author_id\n1,2\n"), META, ("Parquet",)),
    klm3_case("session-user-overflow", _sessions(f"user_id={2**64}"), SESS, ("line 2", "user_id")),
    klm3_case("session-live-negative", _sessions("live_id=-3"), SESS, ("line 2", "live_id")),
    klm3_case("session-start-huge", _sessions("live_play_start_timestamp=99999999999999999999"), SESS, ("line 2", "live_play_start_timestamp")),
    klm3_case("session-start-1960", _sessions("live_play_start_timestamp=1960-01-01 00:00:00.000"), SESS, ("line 2",)),
    klm3_case("session-duration-overflow", _sessions(f"play_duration={10**30}"), SESS, ("line 2", "play_duration")),
    klm3_case("sessions-0-bytes", lambda d: write(d / "live_interaction.csv", b""), SESS, ("empty",)),
    klm3_case("sessions-non-utf8-line-2", lambda d: write(d / "live_interaction.csv", (d / "live_interaction.csv").read_bytes().replace(b"feed", b"f\xffed", 2)),
              SESS, ("line 2",)),  # fmt: skip
    klm3_case("segment-ts-nan", _segments("timestamp", lambda n: [float("nan")] * n, pa.float64()), ("live_emb_128_ts_part0.parquet",), ("timestamp",)),
    klm3_case("segment-feature-3e38", _segments("feature_128", lambda n: [[3e38] * 128] * n, pa.list_(pa.float32())), ("live_emb_128_ts_part0.parquet",), ("feature_128",)),
    klm3_case("segment-feature-strings", _segments("feature_128", lambda n: [["1"] * 128] * n, pa.list_(pa.string())), ("live_emb_128_ts_part0.parquet",), ("feature_128",)),
    klm3_case("show-ts-nan", lambda d: _rewrite(d / "live_show.parquet", "show_timestamp", [float("nan")] * pq.read_metadata(d / "live_show.parquet").num_rows, pa.float64()),
              ("live_show.parquet",), ("show_timestamp",)),  # fmt: skip
    klm3_case("comment-ts-huge", lambda d: write(d / "live_comment.csv", "live_stream_id,user_id,author_id,content,comment_ts\n101,1,1,hi,99999999999999999999\n"),
              ("live_comment.csv",), ("line 2", "comment_ts")),  # fmt: skip
    klm3_case("user-set-0-bytes", lambda d: write(d / "user_id_set.csv", b""), ("user_id_set.csv",), ("empty",)),
    klm3_case("photo-id-negative", lambda d: _rewrite(d / "photo_meta.parquet", "photo_id", [-1, 502, 503, 504], pa.int64()), ("photo_meta.parquet",), ("photo_id",)),
]


@pytest.fixture(autouse=True)
def _klm3_source(klm3_src):
    KLM3_SRC[:] = [klm3_src]


ALL = CSV_CASES + ML_CASES + MIND_CASES + KLM3_CASES


def test_enough_cases():
    assert len(ALL) >= 100 and len({c.id for c in ALL}) == len(ALL)


@pytest.mark.parametrize("case", ALL, ids=[c.id for c in ALL])
def test_bad_import_input(case: Case, tmp_path, capsys):
    check_clean_failure(case, tmp_path, capsys)


def test_a_good_import_passes_the_same_harness(tmp_path, capsys):
    """Guard: the builders make inputs that import cleanly when nothing is wrong."""
    from .harness import run_main

    for case in (csv_case("good", TS_LOG), ml_case("good", "1\t1 2\n2\t2 3\n"), mind_case("good", BEHAVIOR)):
        root = tmp_path / case.id
        code, _, err = run_main(case.build(root), capsys)
        assert code == 0, err
        assert (root / ("out/ds" if case.id.startswith("csv") else "out") / "manifest.json").is_file()
