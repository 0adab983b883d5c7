"""Outbound gRPC channels: one long-lived channel per peer service, created at start.

- Default deadline of every call comes from the service config (``timeout``); callers may pass shorter.
- Retries happen for UNAVAILABLE only (the request never reached a handler or the peer is restarting);
  everything else is an answer and goes back to the caller.
- ``round_robin`` over every address the name resolves to (a headless Service in Kubernetes), so calls
  spread over all replicas instead of pinning one HTTP/2 connection.
- Each call carries this service's identity token, the request id and the trace context.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, cast

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from services.common.auth import ServiceTokens
from services.common.config import SERVICE_TOKEN_HEADER
from services.common.context import request_id_var


def service_config(timeout_s: float = 5.0, max_attempts: int = 4) -> str:
    return json.dumps(
        {
            "loadBalancingConfig": [{"round_robin": {}}],
            "methodConfig": [
                {
                    "name": [{}],
                    "timeout": f"{timeout_s}s",
                    "retryPolicy": {
                        "maxAttempts": max_attempts,
                        "initialBackoff": "0.05s",
                        "maxBackoff": "1s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ],
        }
    )


# Generic only in grpc-stubs: the runtime class cannot be subscripted.
class _IdentityInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Adds the service token and the current request id to every outgoing call."""

    def __init__(self, tokens: ServiceTokens) -> None:
        self._tokens = tokens

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(SERVICE_TOKEN_HEADER, self._tokens.mint())
        request_id = request_id_var.get()
        if request_id:
            metadata.add("x-request-id", request_id)
        new_details = grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )
        return await continuation(new_details, request)


def open_channel(target: str, tokens: ServiceTokens | None = None, timeout_s: float = 5.0) -> grpc.aio.Channel:
    interceptors: Sequence[grpc.aio.ClientInterceptor] = [*aio_client_interceptors()]
    if tokens is not None:
        # grpc-stubs leaves ClientInterceptor a placeholder that every interceptor must be cast to.
        interceptors = [*interceptors, cast(grpc.aio.ClientInterceptor, _IdentityInterceptor(tokens))]
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.service_config", service_config(timeout_s)),
            ("grpc.enable_retries", 1),
            ("grpc.keepalive_time_ms", 30_000),
            # After a peer restarts, reconnect within seconds: gRPC's default backoff grows to 120 s, which
            # would hold outbox deliveries back long after the peer is serving again.
            ("grpc.initial_reconnect_backoff_ms", 250),
            ("grpc.max_reconnect_backoff_ms", 5_000),
        ],
        interceptors=interceptors,
    )
