"""The session watcher: every active session is read from its vehicle on a schedule, whether or not the app polls,
so a charge is followed to its end (unplugged) even when the app sleeps in the background for hours.

Schedule: `charging_sessions_active.watch_at` (migration 0005). Every reading applied to a session (an app poll,
this watcher, a push) moves it to the reading's time + the interval (120 s by default): the watcher only reads the
sessions nobody else brought fresh data for. The interval is kept well inside the stale limit (config), so a car
that answers is never ended stale; a car that sleeps or is offline is never woken here, and the stale cleanup ends
its session at its last telemetry once the limit passes.

Sharing: the read goes through `Poller.watch`, i.e. the poll's per-driver window in Redis (an app poll and a
watcher read never both reach the vehicle API within it), the provider's 429 back-off, the readers of either
provider, and the one state machine (an end → incentives exactly once, through the outbox). Drivers in Fleet
Telemetry mode are not read at all.

Replicas: each claims due rows with `FOR UPDATE SKIP LOCKED` and leases them (`watch_at` := the lease's end) in
one statement, so no session is claimed by two replicas; a replica that dies mid-lease leaves rows that fall
due again when the lease ends, and another replica reads them then.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import random
from collections import Counter
from collections.abc import Callable

import prometheus_client
from sqlalchemy.ext.asyncio import AsyncEngine

from services.sessions import domain, store
from services.sessions.polling import Poller, ReadOutcome, WatchRead

log = logging.getLogger(__name__)

DEFAULT_LEASE = datetime.timedelta(seconds=60)  # longer than a read that does not wake the car (10 s timeout)
DEFAULT_BATCH = 200
DEFAULT_CONCURRENCY = 32

# What the watcher alerts read (deploy/k8s/components/monitoring): a session is due one interval after its last
# reading, so how long the most overdue one has waited past that is how far the watchers are behind.
WATCH_LAG = prometheus_client.Gauge(
    "nerava_session_watch_lag_seconds",
    "How long the most overdue active session has waited past its interval for a read (0: none overdue).",
)
WATCH_READS = prometheus_client.Counter(
    "nerava_session_watch_reads_total", "Watcher reads of active sessions, by outcome.", ["outcome"]
)


@dataclasses.dataclass
class WatchRound:
    """What one round did: how many sessions it claimed, and what their reads came to."""

    claimed: int = 0
    outcomes: Counter[ReadOutcome] = dataclasses.field(default_factory=Counter)


class SessionWatcher:
    def __init__(
        self,
        engine: AsyncEngine,
        poller: Poller,
        *,
        interval: datetime.timedelta = domain.WATCH_INTERVAL,
        lease: datetime.timedelta = DEFAULT_LEASE,
        batch: int = DEFAULT_BATCH,
        concurrency: int = DEFAULT_CONCURRENCY,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._engine = engine
        self._poller = poller
        self._interval = interval
        self._lease = lease
        self._batch = batch
        self._concurrency = asyncio.Semaphore(concurrency)
        self._clock = clock

    async def claim(self) -> list[store.WatchClaim]:
        """Leases the sessions due now (at most one batch)."""
        now = self._clock()
        async with self._engine.begin() as conn:
            return await store.claim_due_watches(conn, now, now + self._lease, self._batch)

    async def watch_round(self) -> WatchRound:
        """Claims the due sessions and reads each (concurrently, bounded), then schedules its next read."""
        await self.measure_lag()
        claims = await self.claim()
        done = WatchRound(claimed=len(claims))
        outcomes = await asyncio.gather(*(self._watch_one(claim) for claim in claims))
        done.outcomes.update(outcomes)
        for outcome, count in done.outcomes.items():
            WATCH_READS.labels(outcome.value).inc(count)
        return done

    async def measure_lag(self) -> float:
        """Sets (and returns) WATCH_LAG: how long the oldest due session has been due. Leased rows are not due
        (their watch_at is the lease's end). One index lookup (charging_sessions_active_watch_at) per round."""
        now = self._clock()
        async with self._engine.connect() as conn:
            oldest = await store.oldest_due_watch(conn, now)
        lag = 0.0 if oldest is None else (now - oldest).total_seconds()
        WATCH_LAG.set(lag)
        return lag

    async def _watch_one(self, claim: store.WatchClaim) -> ReadOutcome:
        async with self._concurrency:
            try:
                read = await self._poller.watch(claim.driver_id)
            except Exception:
                log.exception("session watcher: reading the car failed", extra={"session_id": str(claim.session_id)})
                read = WatchRead(ReadOutcome.FAILED)
            if read.outcome is not ReadOutcome.READ:
                # A read that went through rescheduled the session itself (one interval after it); its lease
                # token is left behind, harmless: a claim looks only at watch_at.
                async with self._engine.begin() as conn:
                    await store.release_watch(conn, claim, self._next_read(read))
            return read.outcome

    def _next_read(self, read: WatchRead) -> datetime.datetime:
        """When to come back when no reading rescheduled the session (a read that went through did)."""
        now = self._clock()
        if read.outcome is ReadOutcome.WINDOW_TAKEN:
            # Someone read the car a moment ago; its reading normally reschedules the session, this is the backstop.
            return now + min(self._interval, datetime.timedelta(seconds=30))
        if read.outcome is ReadOutcome.RATE_LIMITED:
            return now + max(self._interval, datetime.timedelta(seconds=read.retry_after_s))
        # A little earlier than the interval, at random: sessions opened together do not stay in lock step.
        return now + self._interval * (1 - random.uniform(0, 0.1))

    async def run(self, stop: asyncio.Event, idle_s: float = 1.0) -> None:
        """Rounds until `stop`: back to back while sessions are due (a pause after a round that found some would
        cap the reads per second at a batch per pause), then one every `idle_s` once none is due."""
        while not stop.is_set():
            try:
                done = await self.watch_round()
            except Exception:
                log.exception("session watcher round failed; will try again")
                done = WatchRound()
            if done.claimed == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=idle_s)
