"""`python -m services.sessions`: configuration → resources → server → serve until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import datetime

import uvloop
from nerava.accounts.v1 import accounts_pb2_grpc
from nerava.incentives.v1 import incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2_grpc
from nerava.merchants.v1 import merchants_pb2_grpc
from nerava.sessions.v1 import sessions_pb2_grpc

from services.common.db import open_asyncpg_pool, single_statement_reads
from services.common.logs import configure_logging
from services.common.outbox import OutboxRelay
from services.common.runtime import Runtime
from services.common.server import ServiceBinding, ServiceServer
from services.common.telemetry import init_tracing
from services.sessions import store
from services.sessions.adapters.places import PlacesGeocoder
from services.sessions.adapters.smartcar import SmartcarClient
from services.sessions.adapters.tesla import TeslaFleetClient
from services.sessions.api import ACCESS, SERVICE_NAME, Cores, SessionsApi
from services.sessions.chargers import ChargerSearch
from services.sessions.config import SessionsSettings
from services.sessions.connections import VehicleReaders
from services.sessions.discovery import Discovery
from services.sessions.driver_sessions import DriverSessions
from services.sessions.ev_codes import EvCodes
from services.sessions.ingestion import Ingestion, PushGuard
from services.sessions.linking import SmartcarLinking, TeslaLinking
from services.sessions.peers import ChargerRewards, MerchantDirectory, ProviderDrivers, SessionGrants, Wallets
from services.sessions.polling import GeofencePings, Poller
from services.sessions.retention import SessionPartitions
from services.sessions.stats import AccountCards
from services.sessions.tesla_sign_in import TeslaSignIn
from services.sessions.tokens import TokenCipher
from services.sessions.tracking import SESSION_ENDED_TOPIC, SessionTracker
from services.sessions.watching import SessionWatcher
from services.sessions.workers import (
    STALE_CLEANUP_EVERY_S,
    EvaluationHandOff,
    end_stale_sessions,
    maintain_partitions,
    oauth_state_sweep,
)


async def build_server(settings: SessionsSettings, stack: contextlib.AsyncExitStack) -> ServiceServer:
    """Opens every resource on ``stack`` and returns the (not yet started) server."""
    runtime = await stack.enter_async_context(Runtime(settings.runtime))
    # The read path's one statement (a still-charging car's update) runs on asyncpg's own pool (tracking.py).
    pool = await open_asyncpg_pool(settings.runtime.database_url.value, settings.runtime.service, size=8)
    stack.push_async_callback(pool.close)
    incentives = incentives_pb2_grpc.IncentivesServiceStub(runtime.channel("incentives"))
    relay = OutboxRelay(runtime.engine, store.outbox, {SESSION_ENDED_TOPIC: EvaluationHandOff(incentives)}, "sessions")
    tracker = SessionTracker(
        runtime.engine,
        pool=pool,
        stale_after=datetime.timedelta(seconds=settings.session_stale_after_s),
        watch_interval=datetime.timedelta(seconds=settings.session_watch_interval_s),
        relay=relay,
    )

    def tesla_client(redirect_uri: str) -> TeslaFleetClient:
        client = TeslaFleetClient(
            client_id=settings.tesla_client_id,
            client_secret=settings.tesla_client_secret.value,
            redirect_uri=redirect_uri,
            api_base_url=settings.tesla_api_base,
            authorize_base_url=settings.tesla_auth_base,
            token_base_url=settings.tesla_auth_base,
        )
        stack.push_async_callback(client.aclose)
        return client

    tesla = tesla_client(settings.tesla_redirect_uri)
    # The same application, with the driver app's sign-in screen as redirect URI (Tesla checks it at the exchange).
    tesla_sign_in = tesla_client(settings.tesla_sign_in_redirect_uri)
    smartcar = None
    if settings.smartcar_client_id:
        smartcar = SmartcarClient(
            client_id=settings.smartcar_client_id,
            client_secret=settings.smartcar_client_secret.value,
            redirect_uri=settings.smartcar_redirect_uri,
            api_base_url=settings.smartcar_api_base,
            auth_base_url=settings.smartcar_auth_base,
            connect_base_url=settings.smartcar_connect_base,
        )
        stack.push_async_callback(smartcar.aclose)
    cipher = TokenCipher.from_config(settings.vehicle_token_keys.value)
    readers = VehicleReaders(runtime.engine, cipher, tesla=tesla, smartcar=smartcar, pool=pool)
    linking = TeslaLinking(runtime.engine, tesla, cipher, tracker, driver_app_url=settings.driver_app_url)
    smartcar_linking = (
        None
        if smartcar is None
        else SmartcarLinking(runtime.engine, smartcar, cipher, tracker, driver_app_url=settings.driver_app_url)
    )
    poller = Poller(
        runtime.redis,
        tracker=tracker,
        readers=readers,
        incentives=incentives,
        window_s=settings.poll_window_s,
    )
    watcher = SessionWatcher(
        runtime.engine, poller, interval=datetime.timedelta(seconds=settings.session_watch_interval_s)
    )
    geocoder = None
    if settings.places_api_key.value:
        geocoder = await stack.enter_async_context(
            PlacesGeocoder(
                settings.places_api_key.value,
                base_url=settings.places_api_base,
                timeout=settings.places_timeout_s,
            )
        )
    merchants = MerchantDirectory(merchants_pb2_grpc.MerchantsServiceStub(runtime.channel("merchants")))
    discovery = Discovery(runtime.engine, runtime.redis, rewards=ChargerRewards(incentives), merchants=merchants)
    reads = single_statement_reads(runtime.engine)
    cores = Cores(
        engine=runtime.engine,
        reads=reads,
        sessions=DriverSessions(reads, tracker, SessionGrants(incentives)),
        poller=poller,
        geofence=GeofencePings(reads, tracker, poller),
        ingestion=Ingestion(
            reads,
            tracker,
            PushGuard(runtime.redis, max_age_s=settings.push_max_age_s),
            runtime.flags,
            telemetry_secret=settings.tesla_telemetry_secret.value,
            smartcar_management_token=settings.smartcar_management_token.value,
        ),
        search=ChargerSearch(reads, runtime.flags, geocoder),
        discovery=discovery,
        account_cards=AccountCards(reads, Wallets(ledger_pb2_grpc.LedgerServiceStub(runtime.channel("ledger")))),
        tesla=linking,
        tesla_sign_in=TeslaSignIn(
            runtime.engine,
            tesla_sign_in,
            cipher,
            ProviderDrivers(accounts_pb2_grpc.AccountsServiceStub(runtime.channel("accounts"))),
        ),
        ev_codes=EvCodes(runtime.engine, poller, merchant_position=merchants.position),
        smartcar=smartcar_linking,
    )
    api = SessionsApi(cores)  # type: ignore[abstract]
    binding = ServiceBinding(SERVICE_NAME, api, sessions_pb2_grpc.add_SessionsServiceServicer_to_server, ACCESS)

    async def stale_cleanup(stop: asyncio.Event) -> None:
        await end_stale_sessions(tracker, stop, STALE_CLEANUP_EVERY_S)

    partitions = SessionPartitions(
        runtime.engine,
        retention_months=settings.session_retention_months,
        months_ahead=settings.session_partition_months_ahead,
    )

    async def partition_maintenance(stop: asyncio.Event) -> None:
        await maintain_partitions(partitions, stop, settings.session_partition_maintenance_s)

    state_sweep = oauth_state_sweep(runtime.engine, settings.expired_state_sweep_s)
    return ServiceServer(
        runtime, [binding], workers=[relay.run, stale_cleanup, watcher.run, partition_maintenance, state_sweep]
    )


async def main() -> None:
    settings = SessionsSettings.from_env()
    configure_logging("sessions", settings.runtime.log_level)
    init_tracing("sessions", otlp_endpoint=settings.runtime.otlp_endpoint)
    async with contextlib.AsyncExitStack() as stack:
        server = await build_server(settings, stack)
        await server.serve_until_signal()


if __name__ == "__main__":
    uvloop.run(main())
