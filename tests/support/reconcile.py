"""The cross-service reconciliation as tests run it: against the test database and the fake Stripe, over what a
test (or a test module) created, waiting a bounded time for effects in flight to land."""

from __future__ import annotations

import asyncio
import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from fakes.stripe import FakeStripe
from services.ledger.adapters.stripe_payouts import StripePayouts
from services.reconcile.checks import Report, reconcile


async def reconciled(
    engine: AsyncEngine, stripe_fake: FakeStripe, since: datetime.datetime, *, attempts: int = 100
) -> Report:
    """The report once it holds (outbox deliveries may still be landing), else the last one after `attempts`
    tries 0.1 s apart."""
    async with StripePayouts(
        api_key=stripe_fake.api_key, base_url=stripe_fake.base_url, max_network_retries=0
    ) as stripe:
        for _ in range(attempts):
            report = await reconcile(engine, stripe, now=datetime.datetime.now(datetime.UTC), since=since)
            if report.holds:
                return report
            await asyncio.sleep(0.1)
    return report
