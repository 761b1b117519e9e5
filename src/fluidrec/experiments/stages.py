"""Cached pipeline stages: each stage runs once, records its summary and seconds,
and is skipped on ``--resume`` when its record exists.

A stage's record (``<out>/stages/<name>.json``) is written only after the stage
returned, so a crash mid-stage leaves no record and the stage reruns.

Example:
    >>> runner = StageRunner(Path("runs/demo"), resume=True)
    >>> codes = runner.run("codes", lambda: fit_and_assign(...))
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from fluidrec.utils.io import read_json, write_json


class StageRunner:
    """Runs named stages in order, caching their JSON summaries.

    Args:
        out: the run directory.
        resume: skip stages whose record exists (their summary is loaded instead).
        log: where progress lines go (default: stderr).
    """

    def __init__(self, out: Path, resume: bool, log: Callable[[str], None] | None = None) -> None:
        self.out = Path(out)
        self.resume = resume
        # progress goes to stderr, like tqdm, so `--json` output on stdout stays parseable
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.seconds: dict[str, float] = {}
        (self.out / "stages").mkdir(parents=True, exist_ok=True)

    def record_path(self, name: str) -> Path:
        return self.out / "stages" / f"{name}.json"

    def run(self, name: str, fn: Callable[[], dict]) -> dict:
        path = self.record_path(name)
        if self.resume and path.exists():
            record = read_json(path)
            self.seconds[name] = record["seconds"]
            self.log(f"[{name}] cached ({record['seconds']:.1f} s when it ran)")
            return record["summary"]
        self.log(f"[{name}] running ...")
        t0 = time.perf_counter()
        summary = fn()
        seconds = time.perf_counter() - t0
        self.seconds[name] = seconds
        write_json(path, {"summary": summary, "seconds": seconds})
        self.log(f"[{name}] done in {seconds:.1f} s")
        return summary
