"""The local trace store and its tree (what `nerava trace` prints), and what `make run` shows on its console."""

from __future__ import annotations

import pathlib

from nerava_client.traces import Span, TraceStore, tree_lines
from tools.processes import console_line

MS = 1_000_000
T0 = 1_800_000_000 * 1_000_000_000


def span(
    name: str, span_id: str, parent: str = "", *, start: int, end: int, trace: str = "ab", **attributes: str
) -> Span:
    service, _, operation = name.partition(": ")
    return Span(
        trace_id=trace * 16,
        span_id=span_id * 8,
        parent_span_id=parent * 8 if parent else "",
        service=service,
        name=operation,
        kind="CLIENT" if "egress" in operation else "SERVER",
        start_ns=T0 + start * MS,
        end_ns=T0 + end * MS,
        error=attributes.pop("error", "") == "yes",
        attributes=attributes,
    )


REQUEST = [
    span("nerava-gateway: ingress", "01", start=0, end=40, **{"guid:x-request-id": "req-1"}),
    span("nerava-gateway: router ledger egress", "02", "01", start=1, end=39),
    span("ledger: GetWalletBalance", "03", "02", start=3, end=30),
    span("ledger: GetJwks", "04", "03", start=5, end=9, error="yes"),
]


def test_tree_shows_each_hop_under_its_parent_with_timings() -> None:
    assert tree_lines(REQUEST) == [
        f"trace {'ab' * 16}  request req-1",
        "      0.0 ms      40.0 ms  nerava-gateway: ingress [server]",
        "      1.0 ms      38.0 ms    nerava-gateway: router ledger egress [client]",
        "      3.0 ms      27.0 ms      ledger: GetWalletBalance [server]",
        "      5.0 ms       4.0 ms        ledger: GetJwks [server]  ERROR",
    ]


def test_a_span_whose_parent_is_missing_is_shown_at_the_top() -> None:
    lines = tree_lines([REQUEST[2], REQUEST[3]])
    assert lines[1].endswith("ledger: GetWalletBalance [server]")
    assert lines[2].endswith("  ledger: GetJwks [server]  ERROR")


def test_the_store_finds_a_trace_by_request_id_or_trace_id_and_forgets_old_ones(tmp_path: pathlib.Path) -> None:
    store = TraceStore(tmp_path / "traces.db", retention_s=3600)
    store.add(REQUEST, now_ns=T0)
    assert store.find("req-1") == REQUEST
    assert store.find("AB" * 16) == REQUEST
    assert store.find("req-2") == []
    old = [span("sessions: Poll", "09", start=-7200_000, end=-7199_000, trace="cd", request_id="req-old")]
    # A span of the same trace that is past the retention goes; the trace's newer spans and its request id stay.
    early = span("nerava-gateway: ingress", "08", start=-7300_000, end=-7200_000)
    store.add([*old, early], now_ns=T0)
    assert store.find("req-old") == []
    assert store.count() == 4
    store.close()
    reopened = TraceStore(tmp_path / "traces.db")
    assert reopened.find("req-1") == REQUEST
    reopened.close()


def test_the_console_shows_warnings_and_errors_only() -> None:
    info = '{"time": "t", "level": "INFO", "logger": "services.common.server", "message": "serving"}'
    warning = '{"level": "WARNING", "logger": "services.accounts.adapters.otp", "message": "stub OTP provider"}'
    access = '{"method": "GET", "path": "/v1/wallet/balance", "status": 200}'
    assert console_line("accounts", info) is None
    assert console_line("accounts", warning) == "[accounts] WARNING services.accounts.adapters.otp: stub OTP provider"
    assert console_line("envoy", access) is None
    assert console_line("envoy", "[2026-12-07][1][warning][jwt] fetch failed\n") == (
        "[envoy] [2026-12-07][1][warning][jwt] fetch failed"
    )
    assert console_line("fake-stripe", "Traceback (most recent call last):") is not None
    assert console_line("fake-stripe", "listening on 127.0.0.1:4242") is None
    assert console_line("fake-stripe", "   ") is None
