"""Wall time per stage of a run, logged as each stage ends (the companion methods' reproduce runs).

Example:
    >>> clock = StageClock("foresight")
    >>> ...                       # the world
    >>> clock.mark("world")       # logs "[foresight] world: 12.3 s" to stderr
    >>> clock.timings, clock.total()
"""

from __future__ import annotations

import sys
import time


class StageClock:
    """Seconds of each stage since the previous ``mark`` (or since construction)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.timings: dict[str, float] = {}
        self.start = self.last = time.perf_counter()

    def mark(self, name: str) -> float:
        """End stage ``name`` now: record and log its seconds; returns them."""
        now = time.perf_counter()
        self.timings[name] = round(now - self.last, 2)
        self.last = now
        print(f"[{self.tag}] {name}: {self.timings[name]} s", file=sys.stderr, flush=True)
        return self.timings[name]

    def total(self) -> float:
        """Seconds since the clock started, to 0.01 s (as the stages)."""
        return round(time.perf_counter() - self.start, 2)
