"""Metrics and logs an SRE reads: Prometheus counters per RPC, JSON log lines with trace and request ids."""

from __future__ import annotations

import json
import logging

import httpx
from nerava.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common.context import request_id_var
from services.common.interceptors import CLIENT_ADDRESS_HEADER, GRPC_STATUS_HEADER
from services.common.logs import JsonFormatter
from tests.support.mesh import Mesh


async def test_every_service_exposes_rpc_metrics(mesh: Mesh) -> None:
    stub = accounts_pb2_grpc.AccountsServiceStub(mesh.channels["accounts"])
    await stub.GetJwks(accounts_pb2.GetJwksRequest())
    async with httpx.AsyncClient() as client:
        for name, server in mesh.servers.items():
            reply = await client.get(f"http://127.0.0.1:{server.metrics_port}/metrics")
            assert reply.status_code == 200, name
            assert "nerava_rpc_duration_seconds" in reply.text
    counted = [
        line
        for line in reply.text.splitlines()
        if line.startswith("nerava_rpc_requests_total{") and 'method="GetJwks"' in line and 'code="OK"' in line
    ]
    assert counted and float(counted[0].rsplit(" ", 1)[1]) >= 1


def test_log_lines_are_json_with_trace_and_request_ids(span_exporter: InMemorySpanExporter) -> None:
    formatter = JsonFormatter("ledger")
    record = logging.LogRecord("ledger.api", logging.WARNING, __file__, 1, "transfer refused %s", ("t-1",), None)
    record.reason = "INSUFFICIENT_BALANCE"
    token = request_id_var.set("req-42")
    try:
        with trace.get_tracer("test").start_as_current_span("rpc") as span:
            line = formatter.format(record)
    finally:
        request_id_var.reset(token)
    entry = json.loads(line)
    assert entry["message"] == "transfer refused t-1"
    assert entry["service"] == "ledger"
    assert entry["level"] == "WARNING"
    assert entry["request_id"] == "req-42"
    assert entry["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert entry["reason"] == "INSUFFICIENT_BALANCE"


async def test_the_ok_status_header_goes_to_gateway_requests_only(mesh: Mesh) -> None:
    # The gateway's access log reads x-nerava-grpc-status from the answer's headers; a peer service's call does not
    # pay for the extra send.
    stub = accounts_pb2_grpc.AccountsServiceStub(mesh.channels["accounts"])
    forwarded = stub.GetJwks(accounts_pb2.GetJwksRequest(), metadata=((CLIENT_ADDRESS_HEADER, "203.0.113.9"),))
    await forwarded
    assert (GRPC_STATUS_HEADER, "0") in tuple(await forwarded.initial_metadata())
    direct = stub.GetJwks(accounts_pb2.GetJwksRequest())
    await direct
    assert GRPC_STATUS_HEADER not in dict(await direct.initial_metadata())
