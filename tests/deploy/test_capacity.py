"""tools/capacity.py and docs/capacity.md: the page matches the model over bench/results, and the model's
arithmetic."""

from __future__ import annotations

import dataclasses
import math

import pytest

from tools import capacity


@pytest.fixture(scope="module")
def measured() -> capacity.Measured:
    return capacity.load()


def test_capacity_page_matches_the_model_over_the_bench_results(measured: capacity.Measured) -> None:
    text = capacity.DOCUMENT.read_text()
    assert capacity.replace_section(text, capacity.markdown(measured)) == text, (
        "docs/capacity.md is stale: run `make capacity` (python -m tools.capacity --write docs/capacity.md)"
    )


def test_the_page_has_a_row_per_fleet_size(measured: capacity.Measured) -> None:
    section = capacity.markdown(measured)
    for drivers in capacity.DRIVERS:
        assert f"\n| {drivers:,} | " in section
    assert "Next bottleneck" in section


def test_polls_pods_and_redis_follow_the_measured_figures(measured: capacity.Measured) -> None:
    a = capacity.Assumptions()
    row = capacity.compute(measured, 1_000_000, a)
    assert row.polls_per_s == pytest.approx(1_000_000 / 60)
    sessions_cores = row.polls_per_s * measured.sessions_us_per_poll / 1e6
    assert row.sessions_pods == math.ceil(sessions_cores / (a.sessions_pod_cores * a.hpa_cpu_target))
    cached = measured.mix["cached"]
    assert row.redis_ops_per_s == pytest.approx(row.polls_per_s * (cached * 1 + (1 - cached) * 4))
    assert row.redis_share == pytest.approx(row.redis_ops_per_s / measured.redis_ops_per_s)
    assert row.sessions_per_s == pytest.approx(1_000_000 * 2.5 / (7 * 24 * 3600))


def test_pods_grow_with_the_fleet_and_never_drop_below_the_minimum(measured: capacity.Measured) -> None:
    rows = [capacity.compute(measured, drivers) for drivers in capacity.DRIVERS]
    for field in ("sessions_pods", "gateway_pods", "ledger_pods", "incentives_pods"):
        counts = [getattr(row, field) for row in rows]
        assert counts == sorted(counts)
        assert min(counts) >= capacity.Assumptions().min_replicas
    assert rows[-1].sessions_pods > rows[0].sessions_pods


def test_a_slower_poll_needs_more_pods(measured: capacity.Measured) -> None:
    slower = dataclasses.replace(measured, sessions_us_per_poll=measured.sessions_us_per_poll * 2)
    assert capacity.compute(slower, 1_000_000).sessions_pods > capacity.compute(measured, 1_000_000).sessions_pods


def test_replace_section_refuses_a_page_without_markers() -> None:
    with pytest.raises(ValueError, match="markers"):
        capacity.replace_section("# Capacity\n", "x")
