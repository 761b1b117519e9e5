"""Prometheus text metrics of one service process: requests, latencies, errors, ingests.

Kept by the app's middleware on the event-loop thread only, so plain dicts need no lock.
With ``--workers N`` each worker process counts its own requests (a scrape sees one worker).

Example:
    >>> m = Metrics(); m.observe("/v1/rank", "POST", 200, 0.004); print(m.render())
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from collections.abc import Callable

# Seconds; dense around the 30 ms p99 target of a rank request.
BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


def _labels(**kv: object) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in kv.items()) + "}"


class Metrics:
    """Counters and latency histograms, rendered in the Prometheus text format (version 0.0.4)."""

    def __init__(self) -> None:
        self.started = time.time()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.errors: dict[tuple[str, str], int] = defaultdict(int)
        self.hist: dict[str, list[int]] = {}
        self.sums: dict[str, float] = defaultdict(float)
        self.ingests: dict[str, int] = defaultdict(int)
        self.gauges: dict[str, float | Callable[[], float]] = {}  # a callable is read at each scrape

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests[(endpoint, method, status)] += 1
        if status >= 400:
            self.errors[(endpoint, "client" if status < 500 else "server")] += 1
        counts = self.hist.setdefault(endpoint, [0] * (len(BUCKETS) + 1))
        counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sums[endpoint] += seconds

    def ingest(self, result: str) -> None:
        """``created`` or ``duplicate``."""
        self.ingests[result] += 1

    def render(self) -> str:
        out = ["# HELP fluidrec_requests_total HTTP requests by endpoint, method and status.", "# TYPE fluidrec_requests_total counter"]
        out += [f"fluidrec_requests_total{_labels(endpoint=e, method=m, status=s)} {n}" for (e, m, s), n in sorted(self.requests.items())]
        out += ["# HELP fluidrec_errors_total Responses with status >= 400 (client: 4xx, server: 5xx).", "# TYPE fluidrec_errors_total counter"]
        out += [f"fluidrec_errors_total{_labels(endpoint=e, kind=k)} {n}" for (e, k), n in sorted(self.errors.items())]
        out += ["# HELP fluidrec_request_duration_seconds Time from request start to response start.",
                "# TYPE fluidrec_request_duration_seconds histogram"]  # fmt: skip
        for e, counts in sorted(self.hist.items()):
            running = 0
            for le, n in zip((*BUCKETS, "+Inf"), counts):
                running += n
                out.append(f"fluidrec_request_duration_seconds_bucket{_labels(endpoint=e, le=le)} {running}")
            out.append(f"fluidrec_request_duration_seconds_sum{_labels(endpoint=e)} {self.sums[e]:.6f}")
            out.append(f"fluidrec_request_duration_seconds_count{_labels(endpoint=e)} {running}")
        out += ["# HELP fluidrec_slices_ingested_total Slices accepted, new or repeated (idempotent).", "# TYPE fluidrec_slices_ingested_total counter"]
        out += [f"fluidrec_slices_ingested_total{_labels(result=r)} {n}" for r, n in sorted(self.ingests.items())]
        for name, value in sorted({**self.gauges, "fluidrec_uptime_seconds": time.time() - self.started}.items()):
            out += [f"# TYPE {name} gauge", f"{name} {value() if callable(value) else value:g}"]
        return "\n".join(out) + "\n"
