"""`python -m services.ledger`: configuration → resources → cores → server → serve until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import datetime

import stripe
import uvloop
from nerava.incentives.v1 import incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2_grpc

from services.common.db import open_asyncpg_pool, single_statement_reads
from services.common.logs import configure_logging
from services.common.outbox import OutboxRelay
from services.common.runtime import Runtime
from services.common.server import ServiceBinding, ServiceServer
from services.common.telemetry import init_tracing
from services.ledger import store
from services.ledger.adapters.stripe_payouts import StripePayouts
from services.ledger.api import ACCESS, SERVICE_NAME, LedgerApi
from services.ledger.config import LedgerSettings
from services.ledger.fee_periods import FeePeriods
from services.ledger.funding import TOPIC as CAMPAIGN_FUNDED
from services.ledger.funding import CampaignFundings
from services.ledger.onboarding import StripeOnboarding
from services.ledger.payouts import Payouts
from services.ledger.posting import Posting
from services.ledger.reconciliation import Reconciliation
from services.ledger.refunds import TOPIC as REFUND_TOPIC
from services.ledger.refunds import BudgetRefunds, refund_dead_letter, refund_delivery
from services.ledger.transfers import TransferReads
from services.ledger.wallet import Wallet
from services.ledger.webhooks import StripeEvents
from services.ledger.workers import campaign_funded_delivery, reconcile_payouts
from services.reconcile.worker import reconcile_forever


def utc_now() -> datetime.datetime:
    """The one clock the ledger's cores read."""
    return datetime.datetime.now(datetime.UTC)


async def build_server(settings: LedgerSettings, stack: contextlib.AsyncExitStack) -> ServiceServer:
    """Opens every resource on ``stack`` and returns the (not yet started) server."""
    # The SDK would otherwise report usage to Stripe from every process.
    stripe.enable_telemetry = False
    runtime = await stack.enter_async_context(Runtime(settings.runtime))
    stripe_client = await stack.enter_async_context(
        StripePayouts(
            api_key=settings.stripe_api_key.value,
            base_url=settings.stripe_base_url,
            timeout=settings.stripe_timeout_s,
            max_network_retries=settings.stripe_max_retries,
        )
    )
    payouts = Payouts(runtime.engine, stripe_client, clock=utc_now)
    pool = await open_asyncpg_pool(settings.runtime.database_url.value, settings.runtime.service, purpose="writer")
    stack.push_async_callback(pool.close)
    writer = store.TransferWriter(pool)
    stack.push_async_callback(writer.close)
    incentives = incentives_pb2_grpc.IncentivesServiceStub(runtime.channel("incentives"))
    # The refund handler wakes the relay (its payment.refund row is due now); the closure reads `relay` later.
    relay = OutboxRelay(
        runtime.engine,
        store.outbox,
        {
            # `relay` is assigned below; the lambda reads it when called.
            CAMPAIGN_FUNDED: campaign_funded_delivery(incentives, runtime.engine, lambda: relay.wake()),  # noqa: PLW0108
            REFUND_TOPIC: refund_delivery(runtime.engine, stripe_client),
        },
        "ledger",
        idle_poll_s=settings.outbox_poll_s,
        max_backoff_s=settings.outbox_max_backoff_s,
        max_attempts=settings.outbox_max_attempts,
        on_dead_letter={REFUND_TOPIC: refund_dead_letter(runtime.engine)},
    )
    fundings = CampaignFundings(runtime.engine, on_enqueued=relay.wake)
    # The reads that need no transaction run as single statements.
    reads = single_statement_reads(runtime.engine)
    transfer_reads = TransferReads(reads)
    onboarding = StripeOnboarding(runtime.engine, reads, stripe_client, settings.redirect_origins, utc_now)
    api = LedgerApi(
        runtime.engine,
        posting=Posting(runtime.engine, writer, transfer_reads),
        transfer_reads=transfer_reads,
        wallet=Wallet(reads),
        fee_periods=FeePeriods(runtime.engine, reads, utc_now),
        payouts=payouts,
        onboarding=onboarding,
        stripe_events=StripeEvents(
            runtime.engine,
            payouts=payouts,
            fundings=fundings,
            onboarding=onboarding,
            webhook_secret=settings.stripe_webhook_secret.value,
            clock=utc_now,
        ),
        refunds=BudgetRefunds(runtime.engine, on_refund=relay.wake),
        reconciliation=Reconciliation(runtime.engine, stripe_client, utc_now),
    )

    async def reconcile(stop: asyncio.Event) -> None:
        await reconcile_payouts(payouts, stop, settings.reconcile_interval_s, settings.reconcile_after_s)

    async def reconcile_money(stop: asyncio.Event) -> None:
        # Reads the incentives and merchants schemas too (read-only; see services/reconcile/checks.py).
        window = datetime.timedelta(hours=settings.money_reconcile_window_h)
        await reconcile_forever(runtime.engine, stripe_client, stop, settings.money_reconcile_every_s, window)

    binding = ServiceBinding(SERVICE_NAME, api, ledger_pb2_grpc.add_LedgerServiceServicer_to_server, ACCESS)
    workers = [reconcile, relay.run]
    if settings.money_reconcile_every_s > 0:
        workers.append(reconcile_money)
    return ServiceServer(runtime, [binding], workers=workers)


async def main() -> None:
    settings = LedgerSettings.from_env()
    configure_logging("ledger", settings.runtime.log_level)
    init_tracing("ledger", otlp_endpoint=settings.runtime.otlp_endpoint)
    async with contextlib.AsyncExitStack() as stack:
        server = await build_server(settings, stack)
        await server.serve_until_signal()


if __name__ == "__main__":
    uvloop.run(main())
