"""Tracing (OpenTelemetry) and metrics (Prometheus) of a service process."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from wsgiref.simple_server import WSGIServer

import prometheus_client
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

RPC_REQUESTS = prometheus_client.Counter(
    "nerava_rpc_requests_total", "RPCs handled, by method and gRPC status code.", ["service", "method", "code"]
)
RPC_LATENCY = prometheus_client.Histogram(
    "nerava_rpc_duration_seconds",
    "Server-side RPC latency.",
    ["service", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
OUTBOX_LAG = prometheus_client.Gauge(
    "nerava_outbox_oldest_pending_seconds", "Age of the oldest undelivered outbox row.", ["service"]
)
OUTBOX_DELIVERED = prometheus_client.Counter(
    "nerava_outbox_delivered_total", "Outbox rows delivered, by topic and result.", ["service", "topic", "result"]
)
EXPIRED_STATES_DELETED = prometheus_client.Counter(
    "nerava_expired_states_deleted_total",
    "Expired single-use states (claim links, OAuth states) deleted by the sweep, by table.",
    ["service", "table"],
)

_provider_lock = threading.Lock()


def init_tracing(
    service: str, processors: Sequence[SpanProcessor] = (), otlp_endpoint: str | None = None
) -> TracerProvider:
    """Installs the global tracer provider once per process (later calls add span processors).

    W3C trace context is the propagator, so the ids Envoy puts in ``traceparent`` continue here.
    """
    with _provider_lock:
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            provider = current
        else:
            provider = TracerProvider(resource=Resource.create({"service.name": service}))
            trace.set_tracer_provider(provider)
        for processor in processors:
            provider.add_span_processor(processor)
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint, insecure=True)))
    return provider


def start_metrics_server(port: int, host: str = "127.0.0.1") -> tuple[WSGIServer, int]:
    """Serves /metrics on a background thread; returns the server and the port actually bound."""
    server, _thread = prometheus_client.start_http_server(port, addr=host)
    return server, int(server.server_port)
