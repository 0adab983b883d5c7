"""Outbound channels: retries for UNAVAILABLE only, a default deadline, identity and request id attached."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common.auth import SERVICE_TOKEN_HEADER, ServiceTokens
from services.common.clients import open_channel
from services.common.config import Secret
from services.common.context import request_id_var

METHOD = "/test.Echo/Call"


class Peer:
    """A gRPC server that answers with scripted status codes and records what it received."""

    def __init__(self) -> None:
        self.script: list[grpc.StatusCode] = []
        self.calls = 0
        self.metadata: list[dict[str, str]] = []
        self.delay_s = 0.0

    async def handle(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        self.calls += 1
        self.metadata.append({k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)})
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.script:
            code = self.script.pop(0)
            if code is not grpc.StatusCode.OK:
                await context.abort(code, f"scripted {code.name}")
        return request


@pytest.fixture
async def peer() -> AsyncIterator[tuple[Peer, int]]:
    peer = Peer()
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "test.Echo", {"Call": grpc.unary_unary_rpc_method_handler(peer.handle)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield peer, port
    await server.stop(None)


def _call(channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b)


async def test_unavailable_is_retried_until_it_succeeds(peer: tuple[Peer, int]) -> None:
    server, port = peer
    server.script = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.OK]
    channel = open_channel(f"127.0.0.1:{port}")
    assert await _call(channel)(b"hi") == b"hi"
    assert server.calls == 3
    await channel.close(None)


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ABORTED]
)
async def test_other_failures_are_answers_and_are_not_retried(peer: tuple[Peer, int], code: grpc.StatusCode) -> None:
    server, port = peer
    server.script = [code, grpc.StatusCode.OK]
    channel = open_channel(f"127.0.0.1:{port}")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _call(channel)(b"hi")
    assert caught.value.code() == code
    assert server.calls == 1
    await channel.close(None)


async def test_calls_have_a_default_deadline(peer: tuple[Peer, int]) -> None:
    server, port = peer
    server.delay_s = 2.0
    channel = open_channel(f"127.0.0.1:{port}", timeout_s=0.2)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _call(channel)(b"hi")
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await channel.close(None)


async def test_calls_carry_identity_request_id_and_trace_context(
    peer: tuple[Peer, int], span_exporter: InMemorySpanExporter
) -> None:
    server, port = peer
    tokens = ServiceTokens(Secret("k" * 32), "incentives")
    channel = open_channel(f"127.0.0.1:{port}", tokens)
    token = request_id_var.set("req-123")
    try:
        with trace.get_tracer("test").start_as_current_span("caller") as span:
            await _call(channel)(b"hi")
    finally:
        request_id_var.reset(token)
    received = server.metadata[-1]
    assert tokens.verify(received[SERVICE_TOKEN_HEADER]).service == "incentives"
    assert received["x-request-id"] == "req-123"
    assert format(span.get_span_context().trace_id, "032x") in received["traceparent"]
    await channel.close(None)
