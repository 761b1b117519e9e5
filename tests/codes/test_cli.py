"""`fluidrec codes fit|assign|rooms|stats` end to end on small files, and every bad-input exit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fluidrec.cli import main
from fluidrec.codes import UNKNOWN_CODE, read_codes, read_room_codes
from fluidrec.codes.rqkmeans import kernel_available
from fluidrec.data.embeddings import write_embeddings
from fluidrec.data.io import write_manifest, write_table


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("codes_cli")
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((8, 16)).astype(np.float32) * 3
    x = centres[rng.integers(0, 8, 600)] + rng.standard_normal((600, 16)).astype(np.float32)
    write_embeddings(d / "emb.parquet", np.arange(600), x)
    write_embeddings(d / "emb8.parquet", np.arange(10), x[:10, :8])
    return d


def _fit(files, out="model", extra=()):
    return main(["codes", "fit", "--embeddings", str(files / "emb.parquet"), "--levels", "2", "--size", "8", "--out", str(files / out), "--quiet", *extra])


def test_fit_assign_stats(files, capsys) -> None:
    assert _fit(files, extra=["--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 600 and summary["l2_relative_error"] < summary["l1_relative_error"] < 1
    assert (files / "model" / "run_config.json").exists()
    capsys.readouterr()
    assert main(["codes", "assign", "--model", str(files / "model"), "--embeddings", str(files / "emb.parquet"), "--out", str(files / "codes.parquet"), "--quiet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["encode_path"] == ("C kernel" if kernel_available() else "torch")
    ids, codes = read_codes(files / "codes.parquet")
    assert ids.tolist() == list(range(600)) and codes.shape == (600, 2) and codes.max() < 8
    assert (files / "codes.config.json").exists()
    capsys.readouterr()
    assert main(["codes", "stats", "--model", str(files / "model"), "--embeddings", str(files / "emb.parquet"), "--json", "--table-cap", "10"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["l1_utilisation"] == 1.0 and "l2_hashed_collision_rate" in stats
    assert main(["codes", "stats", "--model", str(files / "model"), "--embeddings", str(files / "emb.parquet")]) == 0
    assert "l1_perplexity" in capsys.readouterr().out


def test_rooms_on_hand_made_dataset(files, tmp_path) -> None:
    ds = tmp_path / "ds"
    # room 1: slices 100 (t=0), 101 (t=1000), 102 (t=2000); room 2: slice 200 (t=500) has no code; video 300
    write_table(ds, "slices", {
        "slice_id": [100, 101, 102, 200, 300], "room_id": [1, 1, 1, 2, -1], "start_ts": [0, 1000, 2000, 500, 0],
        "end_ts": [1000, 2000, 3000, 1500, 60], "domain": ["live"] * 4 + ["video"], "title": ["t"] * 5,
    })
    n = 6
    write_table(ds, "impressions", {
        "ts": [0, 999, 1000, 1500, 2500, 2600], "user_id": [1] * n, "room_id": [1, 1, 1, 2, 1, -1],
        "slice_id": [100, 100, 101, 200, 102, 300], **{k: [0] * n for k in ("click", "long_view", "like", "follow", "gift")},
        "watch_s": [0.0] * n,
    })
    write_manifest(ds, source="test", seed=0)
    from fluidrec.codes import write_codes

    codes = tmp_path / "codes.parquet"
    write_codes(codes, [100, 101, 102, 300, 999], [[1, 5], [2, 6], [2, 5], [7, 7], [0, 0]])
    out = tmp_path / "rooms.parquet"
    assert main(["codes", "rooms", "--dataset", str(ds), "--codes", str(codes), "--out", str(out), "--json"]) == 0
    got = read_room_codes(out)
    u = UNKNOWN_CODE
    # t=1000: slices 100,101 tie at level 1 (1 vs 2) -> incumbent 1; t=2500: 2 has 2 votes, level 2: 5 has 2
    np.testing.assert_array_equal(got, [[1, 5], [1, 5], [1, 5], [u, u], [2, 5], [u, u]])
    assert main(["codes", "rooms", "--dataset", str(ds), "--codes", str(codes), "--out", str(out), "--exclude-on-air"]) == 0
    np.testing.assert_array_equal(read_room_codes(out)[:3], [[u, u], [1, 5], [1, 5]])


def _bad_embeddings(path, kind: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if kind == "nan":
        x = np.ones((50, 16), np.float32)
        x[7, 3] = np.nan
        write_embeddings(path, np.arange(50), x)
    elif kind == "empty":
        col = pa.FixedSizeListArray.from_arrays(pa.array([], pa.float32()), 16)
        pq.write_table(pa.table({"id": pa.array([], pa.int64()), "embedding": col}), path)


@pytest.mark.parametrize("kind, message", [("nan", "row 7"), ("empty", "empty")])
def test_fit_bad_embeddings_exit_2(files, tmp_path, capsys, kind, message) -> None:
    _bad_embeddings(tmp_path / "bad.parquet", kind)
    rc = main(["codes", "fit", "--embeddings", str(tmp_path / "bad.parquet"), "--levels", "2", "--size", "8", "--out", str(tmp_path / "m"), "--quiet"])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_bad_inputs_exit_2(files, tmp_path, capsys) -> None:
    _fit(files, out="model2")
    cases = [
        # model/embedding dimension mismatch
        (["codes", "assign", "--model", str(files / "model2"), "--embeddings", str(files / "emb8.parquet"), "--out", str(tmp_path / "c.parquet")], "dimension 8"),
        (["codes", "stats", "--model", str(files / "model2"), "--embeddings", str(files / "emb8.parquet")], "dimension 8"),
        (["codes", "assign", "--model", str(tmp_path / "nope"), "--embeddings", str(files / "emb.parquet"), "--out", str(tmp_path / "c.parquet")], "model directory not found"),
        (["codes", "fit", "--embeddings", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "m")], "not found"),
        # more codewords than vectors
        (["codes", "fit", "--embeddings", str(files / "emb8.parquet"), "--size", "64", "--out", str(tmp_path / "m2")], "at least"),
        # non-empty output dir without --force
        (["codes", "fit", "--embeddings", str(files / "emb.parquet"), "--levels", "2", "--size", "8", "--out", str(files / "model2")], "not empty"),
        (["codes", "rooms", "--dataset", str(tmp_path / "nods"), "--codes", str(files / "codes.parquet"), "--out", str(tmp_path / "r.parquet")], "not found"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "c.parquet").exists()
