"""Background work of the incentives process (besides the outbox relay and the index refresh)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import sqlalchemy as sa
from nerava.incentives.v1 import incentives_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from services.incentives import store
from services.incentives.funding import refund_ended
from services.incentives.index import CampaignIndex
from services.incentives.peers import CampaignBudgets

log = logging.getLogger(__name__)
_ENDABLE = (pb.CAMPAIGN_STATUS_ACTIVE, pb.CAMPAIGN_STATUS_PAUSED, pb.CAMPAIGN_STATUS_EXHAUSTED)


async def end_due_campaigns(engine: AsyncEngine) -> int:
    """Marks ended every active, paused or exhausted campaign whose end date has passed; returns how many.
    Evaluation already ignores them (the grant's UPDATE checks the dates); this makes the status say so."""
    campaigns = store.campaigns
    async with engine.begin() as conn:
        result = await conn.execute(
            sa.update(campaigns)
            .where(
                campaigns.c.status.in_(_ENDABLE),
                campaigns.c.end_date.is_not(None),
                campaigns.c.end_date < sa.func.now(),
            )
            .values(status=pb.CAMPAIGN_STATUS_ENDED)
        )
    return int(result.rowcount or 0)


async def end_campaigns(
    engine: AsyncEngine,
    index: CampaignIndex,
    budgets: CampaignBudgets,
    stop: asyncio.Event,
    every_s: float,
) -> None:
    """Runs end_due_campaigns, then refunds what closed campaigns have left (funding.refund_ended), every `every_s`
    until `stop`. Safe on every replica: the UPDATE is idempotent, the refunds are keyed."""
    while not stop.is_set():
        try:
            if await end_due_campaigns(engine):
                index.changed()
            await refund_ended(engine, budgets)
        except Exception:
            log.exception("ending campaigns failed; will try again")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every_s)
