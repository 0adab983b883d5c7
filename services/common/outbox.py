"""Transactional outbox: an effect on another service is recorded in the same transaction as the change
that causes it, then delivered by a relay until the receiver gives a definitive answer.

- ``enqueue`` inserts a row inside the caller's transaction (commit both or neither).
- ``OutboxRelay`` claims due rows with a lease (``FOR UPDATE SKIP LOCKED``, so replicas never deliver
  the same row at the same time), delivers them outside any transaction, and marks them delivered only
  after the handler returned. A process that dies mid-delivery leaves the lease to expire and the row is
  delivered again: receivers must dedupe on the row's ``key`` (the ledger's idempotency key, the
  charging-session id for incentives), which makes delivery effectively exactly once.
- The trace context of the enqueuing request is stored with the row, so the delivery span joins its trace.
- Retries are bounded when the relay is given ``max_attempts``: a row refused for good
  (``PermanentDeliveryError``) or still failing after that many attempts goes to the dead-letter list
  (``failed_at`` set) — after the topic's ``on_dead_letter`` hook, if any, has undone its effects (a hook that
  fails leaves the row to be retried). ``dead_letters`` lists them and ``replay_dead_letters`` puts them back
  in the queue (``make outbox``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import sqlalchemy as sa
from google.protobuf import timestamp_pb2
from nerava.outbox.v1 import outbox_pb2
from opentelemetry import propagate, trace
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import audit
from services.common.interceptors import BY_AN_ADMIN, Access
from services.common.telemetry import OUTBOX_DELIVERED, OUTBOX_LAG

log = logging.getLogger(__name__)
LAG_EVERY_S = 1.0
tracer = trace.get_tracer(__name__)


def outbox_table(metadata: sa.MetaData) -> sa.Table:
    """The outbox table of one service schema; add it to the service's metadata and migrations."""
    return sa.Table(
        "outbox",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("trace_context", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.Column("failed_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("topic", "key", name="outbox_topic_key_unique"),
        sa.Index("outbox_due", "available_at", postgresql_where=sa.text("delivered_at IS NULL AND failed_at IS NULL")),
    )


async def enqueue(
    connection: AsyncConnection, table: sa.Table, topic: str, key: str, payload: Mapping[str, Any]
) -> None:
    """Records an effect to deliver, in the caller's open transaction. The same (topic, key) twice is one row."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    stmt = (
        sa.dialects.postgresql.insert(table)
        .values(topic=topic, key=key, payload=dict(payload), trace_context=carrier)
        .on_conflict_do_nothing(constraint="outbox_topic_key_unique")
    )
    await connection.execute(stmt)


class PermanentDeliveryError(Exception):
    """The receiver refused the effect for good (e.g. invalid); retrying cannot help. The row is parked."""


@dataclasses.dataclass(frozen=True)
class OutboxMessage:
    id: int
    topic: str
    key: str
    payload: Mapping[str, Any]
    attempts: int
    trace_context: Mapping[str, str] = dataclasses.field(default_factory=dict)


Handler = Callable[[OutboxMessage], Awaitable[None]]
# Called once a row is given up, before it is parked: undo what the row's effect would have needed.
DeadLetterHook = Callable[[OutboxMessage, BaseException], Awaitable[None]]


class OutboxRelay:
    """Delivers due outbox rows with ``handlers[topic]``; retries with exponential backoff."""

    def __init__(
        self,
        engine: AsyncEngine,
        table: sa.Table,
        handlers: Mapping[str, Handler],
        service: str,
        *,
        batch_size: int = 50,
        lease_s: float = 30.0,
        idle_poll_s: float = 0.5,
        max_backoff_s: float = 60.0,
        max_attempts: int | None = None,
        on_dead_letter: Mapping[str, DeadLetterHook] | None = None,
    ) -> None:
        self._table = table
        self._handlers = dict(handlers)
        self._max_attempts = max_attempts
        self._on_dead_letter = dict(on_dead_letter or {})
        self._service = service
        self._batch = batch_size
        self._lease = datetime.timedelta(seconds=lease_s)
        self._idle = idle_poll_s
        self._max_backoff = max_backoff_s
        self._wake = asyncio.Event()
        # Claim and settle are single statements: without a transaction around them each is one round trip.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._lag_recorded_at = 0.0

    def wake(self) -> None:
        """Deliver now rather than at the next poll (call after committing an enqueue)."""
        self._wake.set()

    async def _claim(self) -> list[OutboxMessage]:
        t = self._table
        due = (
            sa.select(t.c.id)
            .where(t.c.delivered_at.is_(None), t.c.failed_at.is_(None), t.c.available_at <= sa.func.now())
            .order_by(t.c.available_at)
            .limit(self._batch)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        claim = (
            sa.update(t)
            .where(t.c.id.in_(due))
            .values(available_at=sa.func.now() + self._lease, attempts=t.c.attempts + 1)
            .returning(t.c.id, t.c.topic, t.c.key, t.c.payload, t.c.trace_context, t.c.attempts)
        )
        async with self._autocommit.connect() as conn:
            rows = (await conn.execute(claim)).all()
        return [OutboxMessage(row.id, row.topic, row.key, row.payload, row.attempts, row.trace_context) for row in rows]

    async def _settle(self, message: OutboxMessage, error: BaseException | None, permanent: bool) -> None:
        t = self._table
        if error is None:
            values: dict[str, Any] = {"delivered_at": sa.func.now(), "last_error": None}
        elif permanent:
            values = {"failed_at": sa.func.now(), "last_error": repr(error)[:2000]}
        else:
            backoff = min(self._max_backoff, 0.1 * 2 ** min(message.attempts, 20))
            values = {
                "available_at": sa.func.now() + datetime.timedelta(seconds=backoff),
                "last_error": repr(error)[:2000],
            }
        async with self._autocommit.connect() as conn:
            await conn.execute(sa.update(t).where(t.c.id == message.id).values(**values))

    async def _deliver(self, message: OutboxMessage) -> None:
        handler = self._handlers.get(message.topic)
        parent = propagate.extract(dict(message.trace_context))
        with tracer.start_as_current_span(f"outbox deliver {message.topic}", context=parent) as span:
            span.set_attribute("outbox.key", message.key)
            span.set_attribute("outbox.attempt", message.attempts)
            if handler is None:
                error: BaseException = PermanentDeliveryError(f"no handler for topic {message.topic}")
                await self._settle(message, error, permanent=True)
                OUTBOX_DELIVERED.labels(self._service, message.topic, "failed").inc()
                return
            try:
                await handler(message)
            except PermanentDeliveryError as exc:
                await self._give_up(message, exc)
            except Exception as exc:  # any other failure is transient until proven otherwise
                if self._max_attempts is not None and message.attempts >= self._max_attempts:
                    await self._give_up(message, exc)
                    return
                log.warning(
                    "outbox delivery failed, will retry",
                    extra={"topic": message.topic, "key": message.key, "error": repr(exc)},
                )
                await self._settle(message, exc, permanent=False)
                OUTBOX_DELIVERED.labels(self._service, message.topic, "retry").inc()
            else:
                await self._settle(message, None, permanent=False)
                OUTBOX_DELIVERED.labels(self._service, message.topic, "delivered").inc()

    async def _give_up(self, message: OutboxMessage, error: BaseException) -> None:
        hook = self._on_dead_letter.get(message.topic)
        if hook is not None:
            try:
                await hook(message, error)
            except Exception as exc:
                log.exception("outbox dead-letter hook failed, will retry", extra={"topic": message.topic})
                await self._settle(message, exc, permanent=False)
                OUTBOX_DELIVERED.labels(self._service, message.topic, "retry").inc()
                return
        log.error("outbox row parked", extra={"topic": message.topic, "key": message.key, "error": repr(error)})
        await self._settle(message, error, permanent=True)
        OUTBOX_DELIVERED.labels(self._service, message.topic, "failed").inc()

    async def run_once(self) -> int:
        """Claims and delivers one batch; returns how many rows were attempted."""
        messages = await self._claim()
        await asyncio.gather(*(self._deliver(m) for m in messages))
        await self._record_lag()
        return len(messages)

    async def _record_lag(self) -> None:
        # A gauge scraped every few seconds: measuring it once a second is plenty, not once per batch.
        now = asyncio.get_running_loop().time()
        if now - self._lag_recorded_at < LAG_EVERY_S:
            return
        self._lag_recorded_at = now
        t = self._table
        oldest = sa.select(sa.func.min(t.c.created_at)).where(t.c.delivered_at.is_(None), t.c.failed_at.is_(None))
        async with self._autocommit.connect() as conn:
            created = (await conn.execute(oldest)).scalar()
        lag = 0.0 if created is None else (datetime.datetime.now(datetime.UTC) - created).total_seconds()
        OUTBOX_LAG.labels(self._service).set(max(lag, 0.0))

    async def run(self, stop: asyncio.Event) -> None:
        """Delivers until ``stop`` is set. Database errors are logged and retried after a pause."""
        while not stop.is_set():
            try:
                attempted = await self.run_once()
            except Exception:
                log.exception("outbox relay iteration failed")
                attempted = 0
            if attempted:
                continue
            self._wake.clear()
            waiters = [asyncio.create_task(self._wake.wait()), asyncio.create_task(stop.wait())]
            await asyncio.wait(waiters, timeout=self._idle, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    id: int
    topic: str
    key: str
    attempts: int
    last_error: str
    failed_at: datetime.datetime


# Who may see and replay a service's dead letters (ListDeadLetters / ReplayDeadLetters of each service).
DEAD_LETTER_ACCESS = {
    "ListDeadLetters": Access.role("admin", "admin_readonly").not_owned(BY_AN_ADMIN),
    "ReplayDeadLetters": Access.role("admin").not_owned(BY_AN_ADMIN),
}


def dead_letter_message(row: DeadLetter) -> outbox_pb2.DeadLetter:
    failed_at = timestamp_pb2.Timestamp()
    failed_at.FromDatetime(row.failed_at)
    return outbox_pb2.DeadLetter(
        id=row.id, topic=row.topic, key=row.key, attempts=row.attempts, last_error=row.last_error, failed_at=failed_at
    )


async def dead_letters(engine: AsyncEngine, table: sa.Table, limit: int = 100) -> list[DeadLetter]:
    """The parked rows, newest first."""
    t = table
    query = (
        sa.select(t.c.id, t.c.topic, t.c.key, t.c.attempts, t.c.last_error, t.c.failed_at)
        .where(t.c.failed_at.is_not(None))
        .order_by(t.c.failed_at.desc(), t.c.id.desc())
        .limit(limit)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [DeadLetter(r.id, r.topic, r.key, r.attempts, r.last_error or "", r.failed_at) for r in rows]


async def replay_dead_letters(
    engine: AsyncEngine, table: sa.Table, ids: list[int] | None = None, reason: str = ""
) -> int:
    """Puts parked rows (these, or all) back in the queue with a fresh attempt count; returns how many. The
    receiver's idempotency makes a replay of something already applied harmless. Audited with the replay."""
    t = table
    query = sa.update(t).where(t.c.failed_at.is_not(None), t.c.delivered_at.is_(None))
    if ids is not None:
        query = query.where(t.c.id.in_(ids))
    async with engine.begin() as conn:
        result = await conn.execute(
            query.values(failed_at=None, attempts=0, available_at=sa.func.now()).returning(t.c.id)
        )
        replayed = sorted(result.scalars().all())
        if replayed:
            await audit.record(conn, "outbox.replay", "outbox", reason, ids=",".join(map(str, replayed)))
    return len(replayed)
