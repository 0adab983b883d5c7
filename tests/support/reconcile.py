"""The cross-service reconciliation as tests run it: against the test database and the fake Stripe, over what a
test (or a test module) created, waiting a bounded time for effects in flight to land."""

from __future__ import annotations

import contextlib
import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from fakes.stripe import FakeStripe
from services.ledger.adapters.stripe_payouts import StripePayouts
from services.reconcile.checks import Report, reconcile
from tests.support.eventually import eventually


async def reconciled(
    engine: AsyncEngine, stripe_fake: FakeStripe, since: datetime.datetime, *, within: float = 10.0
) -> Report:
    """The report once it holds (outbox deliveries may still be landing), else the last one after `within`
    seconds (0: the first one, for a test that expects drift)."""
    reports: list[Report] = []
    async with StripePayouts(
        api_key=stripe_fake.api_key, base_url=stripe_fake.base_url, max_network_retries=0
    ) as stripe:

        async def holding() -> Report:
            report = await reconcile(engine, stripe, now=datetime.datetime.now(datetime.UTC), since=since)
            reports.append(report)
            assert report.holds, report
            return report

        with contextlib.suppress(AssertionError):
            return await eventually(holding, within=within, interval=0.1)
    return reports[-1]
