"""The sweep of expired single-use states (emailed claim links, OAuth states): a use past `expires_at` is already
refused, so the rows only have to be deleted for the tables not to grow forever. The loop is here once; each
service's query deletes one bounded batch of its own table beside the table (its `store.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from services.common.telemetry import EXPIRED_STATES_DELETED

if TYPE_CHECKING:  # the stores import this module for `expired_batch`: they need not load the gRPC server
    from services.common.server import Worker

log = logging.getLogger(__name__)

# A state stays this long past its expiry, so a link opened just after it still finds its row and is answered
# "expired" rather than "unknown".
EXPIRED_STATE_GRACE = datetime.timedelta(hours=1)
# Rows per DELETE: a backlog is deleted in several short statements, never under one long lock.
SWEEP_BATCH = 1000

# Deletes at most `limit` rows that expired before the given time and answers how many it deleted.
DeleteExpired = Callable[[datetime.datetime, int], Awaitable[int]]


def expired_batch(key: sa.Column[Any], expires_at: sa.Column[Any], before: datetime.datetime, limit: int) -> sa.Delete:
    """The DELETE of at most `limit` rows of `key`'s table that expired before `before`, skipping the rows another
    replica's sweep holds (FOR UPDATE SKIP LOCKED), so that sweeps at once delete each row once and never wait.
    Without an index on the expiry the pick is a scan of the table, short as these tables are once swept."""
    due = sa.select(key).where(expires_at < before).limit(limit).with_for_update(skip_locked=True)
    return sa.delete(key.table).where(key.in_(due.scalar_subquery()))


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def sweep_once(
    delete_expired: DeleteExpired,
    *,
    now: datetime.datetime,
    grace: datetime.timedelta = EXPIRED_STATE_GRACE,
    batch: int = SWEEP_BATCH,
    stop: asyncio.Event | None = None,
) -> int:
    """Deletes every row expired before `now - grace`, a batch at a time while a batch was full; answers the count."""
    before = now - grace
    deleted = 0
    while stop is None or not stop.is_set():
        count = await delete_expired(before, batch)
        deleted += count
        if count < batch:
            break
    return deleted


async def sweep_expired_states(
    service: str,
    table: str,
    delete_expired: DeleteExpired,
    stop: asyncio.Event,
    *,
    every_s: float,
    clock: Callable[[], datetime.datetime] = utc_now,
) -> None:
    """Sweeps `table` at start and every `every_s` until `stop`. Safe on every replica at once: each batch skips the
    rows another replica holds (FOR UPDATE SKIP LOCKED). A failure is logged and tried again at the next turn."""
    while not stop.is_set():
        try:
            deleted = await sweep_once(delete_expired, now=clock(), stop=stop)
            if deleted:
                EXPIRED_STATES_DELETED.labels(service, table).inc(deleted)
                log.info("%s: %d expired %s deleted", service, deleted, table)
        except Exception:
            log.exception("%s: sweeping expired %s failed; will try again", service, table)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every_s)


def expired_state_sweeper(service: str, table: str, delete_expired: DeleteExpired, every_s: float) -> Worker:
    """The worker (for `ServiceServer`'s list) that sweeps `table` every `every_s`."""

    async def sweeping(stop: asyncio.Event) -> None:
        await sweep_expired_states(service, table, delete_expired, stop, every_s=every_s)

    return sweeping
