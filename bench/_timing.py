"""Micro-benchmark timing shared by the pure-code benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_us(fn: Callable[[], object], n: int) -> float:
    """Microseconds per call of ``fn``: the best of 5 runs of ``n`` calls (least disturbed)."""
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - start) / n * 1e6)
    return min(runs)
