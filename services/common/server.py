"""gRPC server bootstrap shared by the five services.

One call wires what every service must have: the request-context (OpenTelemetry spans, metrics) / auth /
validation interceptors, the health service, server reflection (so ``grpcurl list`` works), a
Prometheus /metrics endpoint, a bounded connection age (clients rebalance onto new replicas), background
workers, and graceful shutdown: on SIGTERM health turns NOT_SERVING, the process keeps serving for
``drain_seconds`` while load balancers notice, then stops accepting and lets in-flight RPCs finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import signal
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.interceptors import (
    Access,
    AuthInterceptor,
    InterceptorChain,
    RequestContextInterceptor,
    ValidationInterceptor,
)
from services.common.runtime import Runtime
from services.common.telemetry import start_metrics_server

log = logging.getLogger(__name__)

Worker = Callable[[asyncio.Event], Coroutine[Any, Any, None]]  # an async function; each runs as a task


@dataclasses.dataclass(frozen=True)
class ServiceBinding:
    """One gRPC service implemented by this process."""

    full_name: str  # e.g. "nerava.accounts.v1.AccountsService"
    servicer: object
    add_to_server: Callable[[Any, grpc.aio.Server], None]  # the generated add_<Service>Servicer_to_server
    access: Mapping[str, Access]  # method name → who may call it

    def register(self, server: grpc.aio.Server) -> None:
        self.add_to_server(self.servicer, server)


class ServiceServer:
    def __init__(self, runtime: Runtime, bindings: Sequence[ServiceBinding], workers: Sequence[Worker] = ()) -> None:
        self._runtime = runtime
        self.bindings = tuple(bindings)
        # Every process follows the access-token revocations (services/common/revocation.py) and the feature
        # flag changes (services/common/flags.py).
        self._workers = [
            *workers,
            runtime.revocations.follow,
            runtime.follow_flags,
        ]
        self._stop = asyncio.Event()
        self._worker_tasks: list[asyncio.Task[None]] = []
        self._health = health.aio.HealthServicer()  # type: ignore[attr-defined]  # grpc_health-stubs lacks .aio
        self._metrics_server: object | None = None
        self.metrics_port: int | None = None
        settings = runtime.settings
        names = frozenset(b.full_name for b in self.bindings)
        access: dict[str, Access] = {}
        for binding in self.bindings:
            access.update(binding.access)
        age_ms = settings.max_connection_age_seconds * 1000
        self._server = grpc.aio.server(
            interceptors=[
                InterceptorChain(
                    names,
                    [
                        RequestContextInterceptor(names, settings.service),
                        AuthInterceptor(names, access, runtime.verifier, runtime.service_tokens, runtime.revocations),
                        ValidationInterceptor(names),
                    ],
                )
            ],
            options=[
                ("grpc.max_connection_age_ms", age_ms),
                ("grpc.max_connection_age_grace_ms", 30_000),
                ("grpc.so_reuseport", 0),
            ],
        )
        for binding in self.bindings:
            binding.register(self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            [*sorted(names), health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self._server,
        )

    async def start(self) -> int:
        """Binds, starts serving and the workers; returns the bound port (useful with port 0)."""
        settings = self._runtime.settings
        port = self._server.add_insecure_port(f"{settings.host}:{settings.port}")
        if port == 0:
            raise RuntimeError(f"could not bind {settings.host}:{settings.port}")
        await self._server.start()
        # Everything built so far (modules, descriptors, the engine, the clients) lives as long as the process:
        # kept out of the collector's generations, a full collection no longer walks it again and again under load.
        gc.freeze()
        self._metrics_server, self.metrics_port = start_metrics_server(settings.metrics_port, settings.host)
        self._worker_tasks = [asyncio.create_task(worker(self._stop)) for worker in self._workers]
        await self._set_serving(health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", extra={"port": port, "metrics_port": self.metrics_port})
        return port

    async def _set_serving(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for name in ["", *(b.full_name for b in self.bindings)]:
            await self._health.set(name, status)

    async def stop(self) -> None:
        settings = self._runtime.settings
        await self._set_serving(health_pb2.HealthCheckResponse.NOT_SERVING)
        if settings.drain_seconds > 0:
            await asyncio.sleep(settings.drain_seconds)
        self._stop.set()
        await self._server.stop(settings.stop_grace_seconds)
        for task in self._worker_tasks:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=settings.stop_grace_seconds)
        if self._metrics_server is not None:
            shutdown = getattr(self._metrics_server, "shutdown", None)
            if shutdown is not None:
                await asyncio.to_thread(shutdown)
        log.info("stopped")

    async def serve_until_signal(self) -> None:
        """start(), then wait for SIGTERM or SIGINT, then stop()."""
        await self.start()
        received = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, received.set)
        await received.wait()
        log.info("signal received, draining")
        await self.stop()
