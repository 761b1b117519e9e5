"""kill -9 at random moments of `world generate --force` and `data import --force`:
afterwards the output directory holds the old dataset or the new one, whole, never a mix.

"Whole" is checked three ways: ``data validate`` passes (which verifies every file
against the manifest's SHA-256), and every table's checksum equals that of a reference
copy of the old or of the new dataset (generation and import are deterministic).
Bounded: a few kills per command, each process at most a few seconds.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from fluidrec.data.importers import ImportOptions, import_microlens
from fluidrec.data.validate import validate_dataset
from fluidrec.data.world import WorldConfig, generate_world

MICROLENS = Path(__file__).resolve().parents[1] / "fixtures" / "microlens"
KILLS = 6


def _tables(out: Path) -> dict:
    m = json.loads((out / "manifest.json").read_text())
    return {"tables": {k: v["sha256"] for k, v in m["tables"].items()}, "files": {k: v["sha256"] for k, v in m["files"].items()}}


def _run_and_kill(argv: list[str], tmp_dir: Path, delay: float, wait_for_tmp: bool) -> int | None:
    """Start ``fluidrec argv``; kill -9 it ``delay`` s after start (or after its temp dir appears)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "fluidrec", *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        if wait_for_tmp:  # aim at the writing and the swap rather than at start-up
            tmp = tmp_dir.with_name(f"{tmp_dir.name}.tmp-{proc.pid}")
            while not tmp.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
        try:
            return proc.wait(timeout=delay)  # finished before the kill came
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def _check_whole(out: Path, versions: dict[str, dict]) -> str:
    validate_dataset(out)  # checksums of every table and side file against the manifest
    now = _tables(out)
    matches = [name for name, ref in versions.items() if ref == now]
    assert len(matches) == 1, f"{out} is neither the old nor the new dataset: {now}"
    return matches[0]


def _kill_loop(out: Path, argv_for: dict[str, list[str]], versions: dict[str, dict], write_s: float, rng: random.Random) -> list[str]:
    """Alternate the target version; kill each run at a random moment; check after each."""
    seen = []
    current = _check_whole(out, versions)
    for i in range(KILLS):
        target = next(v for v in versions if v != current)
        wait_for_tmp = i % 2 == 1
        delay = rng.uniform(0, write_s) if wait_for_tmp else rng.uniform(0, 1.0 + write_s)
        _run_and_kill(argv_for[target], out, delay, wait_for_tmp)
        current = _check_whole(out, versions)
        seen.append(current)
    return seen


def test_kill_9_world_generate_force(tmp_path):
    rng = random.Random(0)
    versions = {}
    for seed in (0, 1):
        versions[f"seed{seed}"] = _tables(generate_world(WorldConfig.for_scale("tiny", seed=seed), tmp_path / f"ref{seed}", progress=False))
    out = tmp_path / "world"
    generate_world(WorldConfig.for_scale("tiny", seed=0), out, progress=False)
    argv = {f"seed{s}": ["world", "generate", "--scale", "tiny", "--seed", str(s), "--out", str(out), "--force", "--no-progress"] for s in (0, 1)}
    _kill_loop(out, argv, versions, write_s=1.2, rng=rng)
    # an uninterrupted run still completes and removes what the killed ones left beside `out`
    target = next(v for v in versions if v != _check_whole(out, versions))
    assert _run_and_kill(argv[target], out, 60, False) == 0
    assert _check_whole(out, versions) == target
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("world.")] == []


def test_kill_9_data_import_force(tmp_path):
    rng = random.Random(1)
    opts = {"old": ImportOptions(seed=0, negatives=0, progress=False), "new": ImportOptions(seed=1, negatives=3, progress=False)}
    versions = {name: _tables(Path(import_microlens(MICROLENS, tmp_path / f"ref_{name}", o).out)) for name, o in opts.items()}
    assert versions["old"] != versions["new"]
    out = tmp_path / "ds"
    import_microlens(MICROLENS, out, opts["old"])
    argv = {
        name: ["data", "import", "microlens", "--path", str(MICROLENS), "--out", str(out), "--force", "--no-progress",
               "--seed", str(o.seed), "--negatives", str(o.negatives)]
        for name, o in opts.items()
    }  # fmt: skip
    _kill_loop(out, argv, versions, write_s=0.15, rng=rng)
    target = next(v for v in versions if v != _check_whole(out, versions))
    assert _run_and_kill(argv[target], out, 60, False) == 0
    assert _check_whole(out, versions) == target
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("ds.")] == []


def test_failed_import_force_keeps_the_old_dataset(tmp_path, capsys):
    from fluidrec.cli import main

    out = tmp_path / "ds"
    import_microlens(MICROLENS, out, ImportOptions(progress=False))
    before = _tables(out)
    bad = MICROLENS.with_name("microlens_bad")
    assert main(["data", "import", "microlens", "--path", str(bad), "--out", str(out), "--force", "--no-progress"]) == 2
    assert "line 2" in capsys.readouterr().err
    validate_dataset(out)
    assert _tables(out) == before and [p.name for p in tmp_path.iterdir() if p.name.startswith("ds.")] == []
