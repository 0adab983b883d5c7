"""An OTLP/gRPC trace receiver: what Envoy and the services export their spans to on one machine.

`make run` starts it as a process (`python -m tools.trace_receiver --port P --store .run/traces.db`) that keeps
the last hours of spans in the local trace store (nerava_client.traces), which `nerava trace` reads; the tests
run the same receiver in memory (tests/support/otlp.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pathlib
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from nerava_client.traces import DEFAULT_STORE, Span, TraceStore

# What the receiver hands on: the exporting process's service.name and each span as it came.
Sink = Callable[[Sequence[tuple[str, trace_pb2.Span]]], None]


class OtlpReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        received: list[tuple[str, trace_pb2.Span]] = []
        for resource_spans in request.resource_spans:
            service = next(
                (a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"), ""
            )
            for scope in resource_spans.scope_spans:
                received.extend((service, span) for span in scope.spans)
        self._sink(received)
        return trace_service_pb2.ExportTraceServiceResponse()


@contextlib.asynccontextmanager
async def running_receiver(sink: Sink, port: int = 0) -> AsyncIterator[int]:
    """Serves OTLP/gRPC on 127.0.0.1 until the block ends; yields the port."""
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(OtlpReceiver(sink), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield bound
    finally:
        await server.stop(0)


def _value(value: common_pb2.AnyValue) -> str:
    kind = value.WhichOneof("value")
    return "" if kind is None else str(getattr(value, kind))


def stored(service: str, span: trace_pb2.Span) -> Span:
    return Span(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        service=service,
        name=span.name,
        kind=trace_pb2.Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        error=span.status.code == trace_pb2.Status.STATUS_CODE_ERROR,
        attributes={attribute.key: _value(attribute.value) for attribute in span.attributes},
    )


async def serve(port: int, store: TraceStore) -> None:
    def keep(received: Sequence[tuple[str, trace_pb2.Span]]) -> None:
        store.add([stored(service, span) for service, span in received], now_ns=time.time_ns())

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with running_receiver(keep, port):
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store", default=str(DEFAULT_STORE), help="SQLite file of the local trace store")
    parser.add_argument("--retention-hours", type=float, default=6.0)
    args = parser.parse_args(argv)
    store = TraceStore(pathlib.Path(args.store), retention_s=args.retention_hours * 3600)
    try:
        asyncio.run(serve(args.port, store))
    finally:
        store.close()


if __name__ == "__main__":
    main()
