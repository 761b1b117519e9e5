"""What the CLI prints: every ``--json`` output is strict JSON (no bare NaN / Infinity), and a
few bad inputs end to end in a real subprocess (exit code 2, one line, no traceback).
"""

from __future__ import annotations

import inspect
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from fluidrec.cli import build_parser
from fluidrec.data.embeddings import write_embeddings
from fluidrec.data.io import write_manifest, write_table
from fluidrec.utils.cli import emit
from tests.helpers import make_minimal_dataset

from .harness import run_main, write


def strict_json(text: str):
    """json.loads that refuses NaN, Infinity and -Infinity (as jq, browsers and RFC 8259 do)."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_emit_prints_null_for_non_finite_numbers(capsys):
    emit({"a": math.nan, "b": [np.float32("inf"), 1.5], "c": {"d": -math.inf, "e": np.float64(2.0)}, "f": np.int64(3)}, True, str)
    assert strict_json(capsys.readouterr().out) == {"a": None, "b": [None, 1.5], "c": {"d": None, "e": 2.0}, "f": 3}


def _leaf_parsers(parser, prefix=()):
    for action in parser._actions:
        if hasattr(action, "choices") and isinstance(action.choices, dict):
            for name, sub in action.choices.items():
                yield from _leaf_parsers(sub, (*prefix, name))
            return
    yield prefix, parser


def test_every_json_flag_prints_through_emit():
    """All --json output goes through ``emit`` (strict, NaN -> null): checked for every subcommand that has the flag."""
    with_json = []
    for name, parser in _leaf_parsers(build_parser()):
        if any("--json" in a.option_strings for a in parser._actions):
            func = parser.get_default("func")
            assert func is not None, name
            assert "emit(" in inspect.getsource(func), f"`fluidrec {' '.join(name)} --json` prints without emit"
            with_json.append(name)
    assert len(with_json) >= 10  # data, world, codes, encoder, ranker, experiments commands


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("json")
    ds = make_minimal_dataset(root / "ds")
    # A copy whose slices carry an all-unknown topic path: purity and NMI are undefined (NaN) there.
    nan_ds = root / "ds_topics"
    shutil.copytree(ds, nan_ds)
    sl = pq.read_table(nan_ds / "slices.parquet").to_pydict()
    n = len(sl["slice_id"])
    write_table(nan_ds, "slices", {**sl, **{f"topic_l{j}": np.full(n, -1, np.int32) for j in range(1, 5)}})
    write_manifest(nan_ds, source="test-minimal", seed=0, extra={"frame_size": None})
    ids = np.asarray(sl["slice_id"])
    write_embeddings(root / "emb.parquet", ids, np.random.default_rng(0).standard_normal((n, 8)).astype(np.float32))
    write(root / "i.csv", "u,i,t\nx,A,1700000000000\ny,B,1700000000001\n")
    write(root / "t.csv", "i,title\nA,a\nB,b\n")
    return root


def test_json_outputs_are_strict(inputs, capsys):
    r = inputs
    commands = [
        ["data", "validate", str(r / "ds"), "--json"],
        ["data", "stats", str(r / "ds"), "--json"],
        ["data", "import", "csv", "--interactions", str(r / "i.csv"), "--items", str(r / "t.csv"), "--user-col", "u", "--item-col", "i",
         "--text-cols", "title", "--time-col", "t", "--out", str(r / "imported"), "--no-progress", "--json"],
        ["codes", "fit", "--embeddings", str(r / "emb.parquet"), "--levels", "2", "--size", "4", "--out", str(r / "model"), "--quiet", "--json"],
        ["codes", "assign", "--model", str(r / "model"), "--embeddings", str(r / "emb.parquet"), "--out", str(r / "codes" / "slice_codes.parquet"), "--quiet", "--json"],
        ["codes", "rooms", "--dataset", str(r / "ds"), "--codes", str(r / "codes" / "slice_codes.parquet"), "--out", str(r / "codes" / "room_codes.parquet"), "--json"],
        ["codes", "stats", "--model", str(r / "model"), "--embeddings", str(r / "emb.parquet"), "--dataset", str(r / "ds_topics"), "--table-cap", "8", "--json"],
    ]  # fmt: skip
    nulls = 0
    for argv in commands:
        code, out, err = run_main(argv, capsys)
        assert code == 0, (argv, err)
        result = strict_json(out)
        nulls += sum(v is None for v in result.values()) if isinstance(result, dict) else 0
    assert nulls > 0, "the codes stats case should report undefined purity as null"


# ---------------------------------------------------------------- end to end, in a subprocess


def _fluidrec(argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "fluidrec", *argv], capture_output=True, text=True, env=env, timeout=120)


def test_end_to_end_bad_inputs(inputs, tmp_path):
    bad_log = write(tmp_path / "log.csv", "u,i,t\nx,A,9300000000000000\n")
    ds = tmp_path / "ds"
    shutil.copytree(inputs / "ds", ds)
    (ds / "manifest.json").write_text("[1, 2, 3]")
    emb = tmp_path / "big.parquet"
    write_embeddings(emb, np.arange(3), np.full((3, 4), 3e38, np.float32))
    cases = [
        (["data", "import", "csv", "--interactions", str(bad_log), "--items", str(inputs / "t.csv"), "--user-col", "u", "--item-col", "i",
          "--text-cols", "title", "--time-col", "t", "--time-unit", "s", "--out", str(tmp_path / "out"), "--no-progress"], "log.csv"),
        (["data", "validate", str(ds)], "manifest.json"),
        (["world", "generate", "--scale", "tiny", "--seed", str(2**64), "--out", str(tmp_path / "w")], "--seed"),
        (["codes", "assign", "--model", str(inputs / "model"), "--embeddings", str(emb), "--out", str(tmp_path / "c.parquet"), "--quiet"], "big.parquet"),
    ]  # fmt: skip
    for argv, name in cases:
        proc = _fluidrec(argv)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (argv, proc.stderr[-3000:])
        assert "Traceback" not in proc.stderr and len(lines) == 1 and name in lines[0], proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.parquet", "ds", "log.csv"]  # nothing written
