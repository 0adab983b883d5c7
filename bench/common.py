"""Shared parts of the benchmarks: a closed-loop load generator, percentiles, and the results file."""

from __future__ import annotations

import asyncio
import json
import pathlib
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


async def closed_loop(
    call: Callable[[], Awaitable[None]], clients: int, seconds: float, warmup_s: float
) -> dict[str, Any]:
    """``clients`` concurrent callers, each issuing the next call when the previous one answered.

    Latencies are recorded only after the warm-up; throughput is completed calls per second of the
    measured window.
    """
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from = start + warmup_s
    stop_at = measure_from + seconds

    async def client() -> None:
        nonlocal errors
        while True:
            began = time.perf_counter()
            if began >= stop_at:
                return
            try:
                await call()
            except Exception:
                if began >= measure_from:
                    errors += 1
                continue
            if began >= measure_from:
                latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(client() for _ in range(clients)))
    latencies.sort()
    return {
        "requests_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else None,
        "requests": len(latencies),
        "errors": errors,
    }


def write_results(name: str, results: dict[str, Any]) -> pathlib.Path:
    """Writes bench/results/<name>.json; ``results`` must carry the headline object."""
    headline = results["headline"]
    assert set(headline) == {"metric", "value", "unit", "target"}, headline
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path
