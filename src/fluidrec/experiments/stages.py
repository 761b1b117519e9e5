"""Cached pipeline stages: each stage runs once, records its summary, seconds and key,
and is skipped on ``--resume`` when its record exists with the same key.

A stage's key (``stage_key``) hashes the settings the stage reads and the keys of the
stages it reads from, so a changed setting changes the key of its stage and of every
stage downstream: on ``--resume`` those are recomputed (and say so on stderr), the
others are reused.

A stage's record (``<out>/stages/<name>.json``) is written only after the stage
returned, so a crash mid-stage leaves no record and the stage reruns. While it runs,
``<name>.started.json`` holds its key: a rerun with the same key keeps the stage's
partial outputs (an encoder resumes from its checkpoint), one with another key
deletes them first.

Example:
    >>> runner = StageRunner(Path("runs/demo"), resume=True)
    >>> key = stage_key("codes", embed_key, {"levels": 4, "codebook_size": 64})
    >>> codes = runner.run("codes", lambda: fit_and_assign(...), key=key, outputs=[Path("runs/demo/codes")])
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fluidrec.utils.io import read_json, to_jsonable, write_json

STAGES_DIR = "stages"


def stage_key(*parts: Any) -> str:
    """A short, stable hash of what a stage depends on (settings, upstream keys; JSON-able).

    Example:
        >>> stage_key("encoder", world_key, enc_cfg.to_dict())
    """
    payload = json.dumps(to_jsonable(list(parts)), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


class StageRunner:
    """Runs named stages in order, caching their JSON summaries under their keys.

    Args:
        out: the run directory.
        resume: reuse stages whose record exists with the same key (their summary is
            loaded instead); without it every stage runs afresh.
        log: where progress lines go (default: stderr).
    """

    def __init__(self, out: Path, resume: bool, log: Callable[[str], None] | None = None) -> None:
        self.out = Path(out)
        self.resume = resume
        # progress goes to stderr, like tqdm, so `--json` output on stdout stays parseable
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.seconds: dict[str, float] = {}
        (self.out / STAGES_DIR).mkdir(parents=True, exist_ok=True)

    @staticmethod
    def holds_run(out: str | Path) -> bool:
        """``out`` holds a finished or partial run (a config or any stage record)."""
        root = Path(out)
        return (root / "config.json").exists() or any((root / STAGES_DIR).glob("*.json"))

    def record_path(self, name: str) -> Path:
        return self.out / STAGES_DIR / f"{name}.json"

    def started_path(self, name: str) -> Path:
        return self.out / STAGES_DIR / f"{name}.started.json"

    def run(self, name: str, fn: Callable[[], dict], *, key: str, outputs: Sequence[Path] = ()) -> dict:
        """Run stage ``name`` (or load its record); returns its summary.

        Args:
            fn: computes the stage, returns a JSON-able summary.
            key: ``stage_key`` of what the stage depends on.
            outputs: files and directories the stage writes; deleted before it runs when
                they may hold another configuration's results (a record or a started
                marker with another key, or a run without ``resume``).
        """
        path, started = self.record_path(name), self.started_path(name)
        record = read_json(path) if path.exists() else None
        if not self.resume:
            stale = True
        elif record is not None:
            if record.get("key") == key:
                self.seconds[name] = record["seconds"]
                self.log(f"[{name}] cached ({record['seconds']:.1f} s when it ran)")
                return record["summary"]
            stale = True
            why = "its record has no settings key (an older fluidrec)" if "key" not in record else "its settings or an upstream stage's changed since it ran"
            self.log(f"[{name}] {why}: recomputing")
        elif started.exists():
            stale = read_json(started).get("key") != key
            if stale:
                self.log(f"[{name}] a killed run with other settings left outputs: removing them")
        else:
            stale = False
        if stale:
            for p in outputs:
                _remove(Path(p))
        path.unlink(missing_ok=True)  # a record must never outlive the outputs it describes
        write_json(started, {"key": key})
        self.log(f"[{name}] running ...")
        t0 = time.perf_counter()
        summary = fn()
        seconds = time.perf_counter() - t0
        self.seconds[name] = seconds
        write_json(path, {"summary": summary, "seconds": seconds, "key": key})
        started.unlink(missing_ok=True)
        self.log(f"[{name}] done in {seconds:.1f} s")
        return summary
