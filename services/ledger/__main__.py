"""`python -m services.ledger`: configuration → resources → server → serve until SIGTERM."""

from __future__ import annotations

import contextlib

import uvloop
from nerava.ledger.v1 import ledger_pb2_grpc

from services.common.config import RuntimeSettings
from services.common.logs import configure_logging
from services.common.runtime import Runtime
from services.common.server import ServiceBinding, ServiceServer
from services.common.telemetry import init_tracing
from services.ledger.api import ACCESS, SERVICE_NAME, LedgerApi


async def build_server(settings: RuntimeSettings, stack: contextlib.AsyncExitStack) -> ServiceServer:
    """Opens every resource on ``stack`` and returns the (not yet started) server."""
    runtime = await stack.enter_async_context(Runtime(settings))
    api = LedgerApi(runtime.engine)  # type: ignore[abstract]  # payout RPCs answer UNIMPLEMENTED until wired
    binding = ServiceBinding(
        SERVICE_NAME, lambda server: ledger_pb2_grpc.add_LedgerServiceServicer_to_server(api, server), ACCESS
    )
    return ServiceServer(runtime, [binding])


async def main() -> None:
    settings = RuntimeSettings.from_env("ledger")
    configure_logging("ledger", settings.log_level)
    init_tracing("ledger", otlp_endpoint=settings.otlp_endpoint)
    async with contextlib.AsyncExitStack() as stack:
        server = await build_server(settings, stack)
        await server.serve_until_signal()


if __name__ == "__main__":
    uvloop.run(main())
