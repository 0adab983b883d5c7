"""`python -m services.merchants`: configuration → resources → cores → server → serve until SIGTERM."""

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
from services.merchants.api import ACCESS, SERVICE_NAME, Cores, MerchantsApi
from services.merchants.catalog import Catalog
from services.merchants.checkout import Checkout, Settlement
from services.merchants.config import MerchantsSettings
from services.merchants.exclusives import Exclusives
from services.merchants.favorites import Favorites
from services.merchants.funnel import Funnel
from services.merchants.onboarding import SquareOnboarding
from services.merchants.peers import ChargerDirectory, ClaimLinks, MerchantNova, NovaBalances, RedemptionTransfers
from services.merchants.portal import Portal
from services.merchants.records import token_cipher
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
    ledger = ledger_pb2_grpc.LedgerServiceStub(runtime.channel("ledger"))
    sessions = sessions_pb2_grpc.SessionsServiceStub(runtime.channel("sessions"))
    charger_directory = ChargerDirectory(sessions)
    reads = single_statement_reads(runtime.engine)
    onboarding = SquareOnboarding(runtime.engine, square, token_cipher(settings.square_token_keys.value))
    cores = Cores(
        engine=runtime.engine,
        checkout_page_url=settings.checkout_page_url,
        catalog=Catalog(runtime.engine, reads, charger_directory, NovaBalances(ledger)),
        onboarding=onboarding,
        checkout=Checkout(pool, reads, RedemptionTransfers(ledger), square, square_tokens=onboarding),
        exclusives=Exclusives(runtime.engine, reads, charger_directory),
        portal=Portal(reads, MerchantNova(ledger), charger_directory, settings),
        favorites=Favorites(runtime.engine, reads, charger_directory),
        funnel=Funnel(
            runtime.engine,
            reads,
            places,
            ClaimLinks(accounts_pb2_grpc.AccountsServiceStub(runtime.channel("accounts"))),
            settings,
        ),
    )
    api = MerchantsApi(cores)
    binding = ServiceBinding(SERVICE_NAME, api, merchants_pb2_grpc.add_MerchantsServiceServicer_to_server, ACCESS)
    workers = worker_tasks(Settlement(pool, RedemptionTransfers(ledger)), runtime.engine, settings)
    return ServiceServer(runtime, [binding], workers=workers)


async def main() -> None:
    settings = MerchantsSettings.from_env()
    configure_logging("merchants", settings.runtime.log_level)
    init_tracing("merchants", otlp_endpoint=settings.runtime.otlp_endpoint)
    async with contextlib.AsyncExitStack() as stack:
        server = await build_server(settings, stack)
        await server.serve_until_signal()


if __name__ == "__main__":
    uvloop.run(main())
