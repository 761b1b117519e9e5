"""Shared helpers for the benchmark scripts: the machine's measured fp32 matmul rate."""

from __future__ import annotations

import time


def measure_matmul_flops(n: int = 1024, repeats: int = 10) -> float:
    """Measured fp32 GEMM rate of this machine, FLOP/s (best of ``repeats``, at the current thread count)."""
    import torch  # lazy: peak-memory measurements of scripts that never use torch stay honest

    a = torch.randn(n, n)
    b = torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (Linux ru_maxrss is in KB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
