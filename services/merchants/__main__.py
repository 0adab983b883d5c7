"""`python -m services.merchants`: configuration → resources → server → serve until SIGTERM."""

from __future__ import annotations

import contextlib

import uvloop
from nerava.accounts.v1 import accounts_pb2_grpc
from nerava.ledger.v1 import ledger_pb2_grpc
from nerava.merchants.v1 import merchants_pb2_grpc
from nerava.sessions.v1 import sessions_pb2_grpc

from services.common.db import open_asyncpg_pool, single_statement_reads
from services.common.logs import configure_logging
from services.common.runtime import Runtime
from services.common.server import ServiceBinding, ServiceServer
from services.common.telemetry import init_tracing
from services.merchants.adapters.places import PlacesDirectory
from services.merchants.adapters.square import SquareAccounts
from services.merchants.api import ACCESS, SERVICE_NAME, MerchantsApi
from services.merchants.config import MerchantsSettings
from services.merchants.records import Resources, token_cipher
from services.merchants.workers import worker_tasks


async def build_server(settings: MerchantsSettings, stack: contextlib.AsyncExitStack) -> ServiceServer:
    """Opens every resource on ``stack`` and returns the (not yet started) server."""
    runtime = await stack.enter_async_context(Runtime(settings.runtime))
    square = await stack.enter_async_context(
        SquareAccounts(
            application_id=settings.square_application_id,
            application_secret=settings.square_application_secret.value,
            redirect_uri=settings.square_redirect_uri,
            base_url=settings.square_base_url,
            timeout=settings.square_timeout_s,
            # A driver waits at the till: one quick retry, not Square's full backoff.
            max_retries=1,
        )
    )
    places = PlacesDirectory(
        settings.places_api_base, settings.places_api_key.value, timeout_s=settings.places_timeout_s
    )
    stack.push_async_callback(places.aclose)
    pool = await open_asyncpg_pool(settings.runtime.database_url.value, settings.runtime.service, size=8)
    stack.push_async_callback(pool.close)
    resources = Resources(
        engine=runtime.engine,
        reads=single_statement_reads(runtime.engine),
        pool=pool,
        settings=settings,
        ledger=ledger_pb2_grpc.LedgerServiceStub(runtime.channel("ledger")),
        sessions=sessions_pb2_grpc.SessionsServiceStub(runtime.channel("sessions")),
        square=square,
        token_cipher=token_cipher(settings.square_token_keys.value),
        places=places,
        accounts=accounts_pb2_grpc.AccountsServiceStub(runtime.channel("accounts")),
    )
    api = MerchantsApi(resources)
    binding = ServiceBinding(SERVICE_NAME, api, merchants_pb2_grpc.add_MerchantsServiceServicer_to_server, ACCESS)
    return ServiceServer(runtime, [binding], workers=worker_tasks(resources, settings))


async def main() -> None:
    settings = MerchantsSettings.from_env()
    configure_logging("merchants", settings.runtime.log_level)
    init_tracing("merchants", otlp_endpoint=settings.runtime.otlp_endpoint)
    async with contextlib.AsyncExitStack() as stack:
        server = await build_server(settings, stack)
        await server.serve_until_signal()


if __name__ == "__main__":
    uvloop.run(main())
