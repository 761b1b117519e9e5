"""kill -9 between writing and renaming leaves ``.<name>.tmp-<pid>`` beside the target; the
next write to the same target removes it (only when that pid is dead), and the target is
never half-written. Also: a failed command leaves no empty output directory behind.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fluidrec.codes.io import read_codes, write_codes
from fluidrec.data.io import TableWriter, write_table
from fluidrec.utils.io import atomic_path, clean_stale_temps, read_json, write_json

# Each snippet starts a write to argv[1], puts bytes in its temporary file, and kills itself with SIGKILL
# (no finally, no atexit): what a kill -9 from outside does at that moment.
KILLED_WRITERS = {
    "atomic_path": """
        from fluidrec.utils.io import atomic_path
        with atomic_path(sys.argv[1]) as tmp:
            tmp.write_bytes(b"half a file" * 1000)
            os.kill(os.getpid(), signal.SIGKILL)
    """,
    "TableWriter": """
        from fluidrec.data.io import TableWriter
        with TableWriter(os.path.dirname(sys.argv[1]), "users") as w:
            w.write({"user_id": list(range(1000))})
            os.kill(os.getpid(), signal.SIGKILL)
    """,
}


def _killed_writer(kind: str, target: Path) -> int:
    code = "import os, signal, sys\n" + textwrap.dedent(KILLED_WRITERS[kind])
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)], stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    return proc.pid


def _temps(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.tmp-"))


def test_killed_atomic_write_leaves_the_old_file_and_the_next_write_cleans_up(tmp_path):
    target = tmp_path / "codes.parquet"
    write_codes(target, np.arange(3), np.zeros((3, 2), np.int32), codebook_size=4)
    before = target.read_bytes()
    pids = [_killed_writer("atomic_path", target) for _ in range(2)]
    assert target.read_bytes() == before, "a killed writer changed the target"
    assert _temps(target) == [f".codes.parquet.tmp-{pids[1]}"]  # the second writer removed the first one's
    write_codes(target, np.arange(5), np.ones((5, 2), np.int32), codebook_size=4)  # the next write to the same target
    assert _temps(target) == []
    ids, codes = read_codes(target)
    assert len(ids) == 5 and (codes == 1).all()


def test_killed_table_writer_is_cleaned_by_the_next_table_write(tmp_path):
    target = tmp_path / "users.parquet"
    pid = _killed_writer("TableWriter", target)
    assert not target.exists() and _temps(target) == [f".users.parquet.tmp-{pid}"]
    write_table(tmp_path, "users", {"user_id": [1, 2]})
    assert _temps(target) == [] and target.is_file()
    pid = _killed_writer("TableWriter", target)
    with TableWriter(tmp_path, "users") as w:  # a streaming writer cleans up too
        w.write({"user_id": [3]})
    assert _temps(target) == []


def test_temporaries_of_live_processes_and_other_targets_stay(tmp_path):
    target = tmp_path / "x.json"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".x.json.tmp-{sleeper.pid}"
        live.write_text("a concurrent writer's file")
        other = tmp_path / ".y.json.tmp-999999999"  # another target's leftover: not ours to judge here
        other.write_text("")
        dead_dir = tmp_path / f".x.json.tmp-{_dead_pid()}"
        dead_dir.mkdir()
        (dead_dir / "part").write_text("x")
        write_json(target, {"a": 1})
        assert live.exists() and other.exists() and not dead_dir.exists()
        assert read_json(target) == {"a": 1}
        assert clean_stale_temps(target) == []
    finally:
        sleeper.kill()
        sleeper.wait()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # exited and reaped: no such process any more


def test_a_write_that_fails_leaves_no_temporary(tmp_path):
    target = tmp_path / "t.json"
    with pytest.raises(ZeroDivisionError):
        with atomic_path(target) as tmp:
            tmp.write_text("{")
            1 / 0
    assert not target.exists() and _temps(target) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["codes", "fit", "--embeddings", "{root}/missing.parquet", "--out", "{root}/new/deep/model"],
        ["data", "import", "microlens", "--path", "{root}/nowhere", "--out", "{root}/new/deep/ds", "--no-progress"],
        ["world", "generate", "--scale", "tiny", "--out", "{root}/new/deep/w", "--no-progress", "--json"],
    ],
    ids=["codes-fit", "data-import", "world-generate-interrupted"],
)
def test_failed_commands_leave_no_new_directories(argv, tmp_path, capsys, monkeypatch):
    from fluidrec.data.world import generate as gen
    from fluidrec.errors import DataError

    from .harness import run_main

    def boom(*a, **k):
        raise DataError("simulated failure half way", table="world")

    monkeypatch.setattr(gen, "generate_world_summary", boom)  # world generate: fail after the output dir exists
    code, _, err = run_main([a.replace("{root}", str(tmp_path)) for a in argv], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists(), sorted(p.name for p in tmp_path.rglob("*"))
    assert json.dumps(sorted(p.name for p in tmp_path.iterdir())) == "[]"
