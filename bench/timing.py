"""Timing helpers shared by the benches: repeated runs in ms, median and p95."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    """Wall time of ``runs`` calls of ``fn``, in milliseconds."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"median {statistics.median(ordered):7.1f} ms   p95 {p95:7.1f} ms"


def target(case: str, figure: str, goal: str, met: bool) -> None:
    """One row of ``bench/RESULTS.md``'s table of targets (``run_all.py`` collects them)."""
    print(f"TARGET {case} | {figure} | {goal} | {'met' if met else 'NOT met'}", flush=True)
