"""The UNKNOWN-payout gauges (what NeravaPayoutsStuckUnknown reads), measured on a copy of the payouts table in a
schema of the test's own, so no other test's payouts (nor the mesh's reconciliation) move the figures."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator

import prometheus_client
import pytest
import sqlalchemy as sa
from nerava.ledger.v1 import ledger_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import create_engine
from services.ledger.payouts import Payouts

NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)


@pytest.fixture
async def isolated(database_url: str) -> AsyncIterator[AsyncEngine]:
    schema = f"unknown_payouts_{uuid.uuid4().hex[:10]}"
    admin = create_engine(database_url, "ledger")
    async with admin.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        await conn.execute(sa.text(f'CREATE TABLE "{schema}".payouts (LIKE ledger.payouts INCLUDING DEFAULTS)'))
    engine = create_engine(database_url, schema)
    try:
        yield engine
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def _payout(engine: AsyncEngine, status: int, updated_at: datetime.datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO payouts (id, driver_id, request_id, amount_cents, status, stripe_account_id,"
                " reservation_transfer_id, updated_at) VALUES (:id, 'd', :id, 2000, :status, 'acct', :id, :at)"
            ),
            {"id": uuid.uuid4(), "status": status, "at": updated_at},
        )


async def test_the_gauges_count_unknown_payouts_and_age_the_oldest(isolated: AsyncEngine) -> None:
    payouts = Payouts(isolated, stripe=None, clock=lambda: NOW)  # type: ignore[arg-type]
    assert await payouts.measure_unknown() == 0
    assert prometheus_client.REGISTRY.get_sample_value("nerava_payouts_unknown_oldest_seconds") == 0.0
    await _payout(isolated, pb.PAYOUT_STATUS_PAID, NOW - datetime.timedelta(hours=5))  # settled: not counted
    await _payout(isolated, pb.PAYOUT_STATUS_UNKNOWN, NOW - datetime.timedelta(minutes=3))
    await _payout(isolated, pb.PAYOUT_STATUS_UNKNOWN, NOW - datetime.timedelta(minutes=40))
    assert await payouts.measure_unknown() == 2
    assert prometheus_client.REGISTRY.get_sample_value("nerava_payouts_unknown") == 2.0
    assert prometheus_client.REGISTRY.get_sample_value("nerava_payouts_unknown_oldest_seconds") == 2400.0
