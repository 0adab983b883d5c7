"""Seeing a transaction wait for a lock, so a test of a race waits for that moment instead of sleeping."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine


async def lock_waits(engine: AsyncEngine, statement_like: str) -> int:
    """How many sessions of this database wait for a lock in a statement matching `statement_like` (ILIKE)."""
    async with engine.connect() as probe:
        waiting: int = (
            await probe.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query ILIKE :statement"
                ),
                {"statement": statement_like},
            )
        ).scalar_one()
    return waiting
