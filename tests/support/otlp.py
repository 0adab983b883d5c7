"""An in-memory OTLP/gRPC trace collector: Envoy exports its spans here during tests (the receiver `make run`
uses, with a list for a store)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from opentelemetry.proto.trace.v1 import trace_pb2

from tools.trace_receiver import running_receiver


class OtlpCollector:
    def __init__(self) -> None:
        self.spans: list[tuple[str, trace_pb2.Span]] = []  # (service.name, span)
        self.port = 0

    def keep(self, received: Sequence[tuple[str, trace_pb2.Span]]) -> None:
        self.spans.extend(received)


@contextlib.asynccontextmanager
async def running_collector() -> AsyncIterator[OtlpCollector]:
    collector = OtlpCollector()
    async with running_receiver(collector.keep) as port:
        collector.port = port
        yield collector
