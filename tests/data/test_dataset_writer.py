"""DatasetWriter: a dataset appears at its path whole, or not at all."""

import json
import os
import subprocess
import sys

import pytest

from fluidrec.data import io as dio
from fluidrec.data.io import DatasetWriter, clean_leftovers, write_manifest, write_table
from fluidrec.data.validate import validate_dataset
from fluidrec.errors import DataError
from tests.helpers import make_minimal_dataset


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _siblings(out):
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(out.name + "."))


def test_new_dataset_replaces_old_whole(tmp_path):
    out = make_minimal_dataset(tmp_path / "ds", seed=0)
    (out / "stale.txt").write_text("from the old run")
    with DatasetWriter(out) as tmp:
        assert tmp.parent == out.parent and tmp.name == f"ds.tmp-{os.getpid()}"
        make_minimal_dataset(tmp, seed=1, days=1)
        assert json.loads((out / "manifest.json").read_text())["seed"] == 0  # the old one, untouched until the end
    assert json.loads((out / "manifest.json").read_text())["seed"] == 1
    assert not (out / "stale.txt").exists() and _siblings(out) == []
    validate_dataset(out)


def test_failure_leaves_old_dataset_and_no_temp_dir(tmp_path):
    out = make_minimal_dataset(tmp_path / "ds", seed=0)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(RuntimeError):
        with DatasetWriter(out) as tmp:
            write_table(tmp, "authors", {"author_id": [7]})
            raise RuntimeError("killed by a bug")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and _siblings(out) == []


def test_data_error_names_the_final_path(tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(DataError) as info:
        with DatasetWriter(out) as tmp:
            raise DataError("bad", table=str(tmp / "rooms.parquet"), column="room_id", row=3)
    assert info.value.table == str(out / "rooms.parquet") and info.value.row == 3
    assert not out.exists() and _siblings(out) == []


def test_no_manifest_no_dataset(tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(DataError, match="without a manifest"):
        with DatasetWriter(out) as tmp:
            write_table(tmp, "authors", {"author_id": [0]})
    assert not out.exists() and _siblings(out) == []


def test_two_rename_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr(dio, "_exchange", lambda a, b: False)  # a platform without renameat2
    out = make_minimal_dataset(tmp_path / "ds", seed=0)
    with DatasetWriter(out) as tmp:
        make_minimal_dataset(tmp, seed=1)
    assert json.loads((out / "manifest.json").read_text())["seed"] == 1 and _siblings(out) == []


def test_leftovers_of_dead_writers_are_cleaned(tmp_path):
    out = make_minimal_dataset(tmp_path / "ds", seed=0)
    dead = _dead_pid()
    (tmp_path / f"ds.tmp-{dead}").mkdir()  # a writer killed mid-write
    (tmp_path / f"ds.tmp-{os.getpid()}x").mkdir()  # not a writer's name: kept
    (tmp_path / f"ds.tmp-{os.getppid()}").mkdir()  # a live process's: kept
    assert clean_leftovers(out) == [tmp_path / f"ds.tmp-{dead}"]
    assert (tmp_path / f"ds.tmp-{os.getppid()}").exists()


def test_old_dataset_moved_back_when_killed_between_the_two_renames(tmp_path):
    old = make_minimal_dataset(tmp_path / f"ds.old-{_dead_pid()}", seed=0)
    out = tmp_path / "ds"  # missing: the kill came after moving the old dataset aside
    clean_leftovers(out)
    assert not old.exists() and json.loads((out / "manifest.json").read_text())["seed"] == 0


def test_write_manifest_lists_side_files_but_not_hidden_ones(tmp_path):
    root = tmp_path / "ds"
    write_table(root, "authors", {"author_id": [0]})
    (root / "world").mkdir()
    (root / "world" / "truth.json").write_text("{}")
    (root / ".cache").mkdir()
    (root / ".cache" / "tokens.npz").write_text("x")
    m = write_manifest(root, source="t", seed=None)
    assert list(m["files"]) == ["world/truth.json"] and m["tables"]["authors"]["rows"] == 1 and m["frame_size"] is None
