"""`python -m services.incentives`: configuration → resources → server → serve until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib

import stripe
import uvloop
from nerava.accounts.v1 import accounts_pb2_grpc
from nerava.incentives.v1 import incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2_grpc
from nerava.sessions.v1 import sessions_pb2_grpc

from services.common.db import open_asyncpg_pool
from services.common.logs import configure_logging
from services.common.outbox import OutboxRelay
from services.common.runtime import Runtime
from services.common.server import ServiceBinding, ServiceServer
from services.common.telemetry import init_tracing
from services.incentives import store
from services.incentives.adapters.stripe_checkout import StripeCheckout
from services.incentives.api import ACCESS, SERVICE_NAME, IncentivesApi
from services.incentives.campaigns import Campaigns
from services.incentives.config import IncentivesSettings
from services.incentives.funding import refund_closed
from services.incentives.granting import GRANT_CREDIT_TOPIC, Granting
from services.incentives.index import CampaignIndex
from services.incentives.peers import CampaignBudgets, ChargerDirectory, DriverEmails, GrantCredits
from services.incentives.workers import end_campaigns


async def build_server(settings: IncentivesSettings, stack: contextlib.AsyncExitStack) -> ServiceServer:
    """Opens every resource on ``stack`` and returns the (not yet started) server."""
    # The SDK would otherwise report usage to Stripe from every process.
    stripe.enable_telemetry = False
    runtime = await stack.enter_async_context(Runtime(settings.runtime))
    checkout = await stack.enter_async_context(
        StripeCheckout(
            api_key=settings.stripe_api_key.value,
            base_url=settings.stripe_base_url,
            timeout=settings.stripe_timeout_s,
            max_network_retries=settings.stripe_max_retries,
        )
    )
    index = CampaignIndex(runtime.engine, poll_s=settings.index_poll_s)
    # Loaded before the server answers: an evaluation must never see an empty index at start.
    await index.refresh(full=True)
    pool = await open_asyncpg_pool(settings.runtime.database_url.value, settings.runtime.service, size=8)
    stack.push_async_callback(pool.close)
    ledger = ledger_pb2_grpc.LedgerServiceStub(runtime.channel("ledger"))
    budgets = CampaignBudgets(ledger)
    granting = Granting(
        runtime.engine,
        pool,
        index,
        GrantCredits(ledger),
        emails=DriverEmails(accounts_pb2_grpc.AccountsServiceStub(runtime.channel("accounts"))),
        refund_closed=lambda campaign_id: refund_closed(runtime.engine, budgets, campaign_id),
    )
    relay = OutboxRelay(
        runtime.engine,
        store.outbox,
        {GRANT_CREDIT_TOPIC: granting.deliver_credit},
        "incentives",
        max_attempts=settings.outbox_max_attempts,
        on_dead_letter={GRANT_CREDIT_TOPIC: granting.fail_grant},
    )
    granting.relay = relay
    campaigns = Campaigns(
        runtime.engine,
        index,
        platform_fee_bps=settings.platform_fee_bps,
        driver_email=granting.driver_email,
        chargers=ChargerDirectory(sessions_pb2_grpc.SessionsServiceStub(runtime.channel("sessions"))),
    )
    api = IncentivesApi(
        runtime.engine,
        settings=settings,
        index=index,
        granting=granting,
        campaigns=campaigns,
        stripe=checkout,
        budgets=budgets,
    )

    async def ending(stop: asyncio.Event) -> None:
        await end_campaigns(runtime.engine, index, budgets, stop, settings.end_campaigns_every_s)

    binding = ServiceBinding(SERVICE_NAME, api, incentives_pb2_grpc.add_IncentivesServiceServicer_to_server, ACCESS)
    return ServiceServer(runtime, [binding], workers=[index.run, relay.run, ending])


async def main() -> None:
    settings = IncentivesSettings.from_env()
    configure_logging("incentives", settings.runtime.log_level)
    init_tracing("incentives", otlp_endpoint=settings.runtime.otlp_endpoint)
    async with contextlib.AsyncExitStack() as stack:
        server = await build_server(settings, stack)
        await server.serve_until_signal()


if __name__ == "__main__":
    uvloop.run(main())
