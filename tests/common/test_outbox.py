"""The transactional outbox and its relay against real PostgreSQL."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import create_engine
from services.common.outbox import OutboxMessage, OutboxRelay, PermanentDeliveryError, enqueue, outbox_table
from tests.support.eventually import eventually

SCHEMA = "outbox_test"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, SCHEMA)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        await conn.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


metadata = sa.MetaData()
table = outbox_table(metadata)


class Receiver:
    """A downstream service that records every delivery and can be told to fail."""

    def __init__(self) -> None:
        self.deliveries: collections.Counter[str] = collections.Counter()
        self.fail_times = 0
        self.permanent = False

    async def __call__(self, message: OutboxMessage) -> None:
        if self.permanent:
            raise PermanentDeliveryError("refused")
        if self.fail_times:
            self.fail_times -= 1
            raise ConnectionError("receiver down")
        self.deliveries[message.key] += 1


async def test_rolled_back_effects_are_never_delivered(engine: AsyncEngine) -> None:
    receiver = Receiver()
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await enqueue(conn, table, "grant.created", "g-1", {"amount": 5})
            raise RuntimeError("the business change failed")
    async with engine.begin() as conn:
        await enqueue(conn, table, "grant.created", "g-2", {"amount": 5})
    relay = OutboxRelay(engine, table, {"grant.created": receiver}, "test")
    assert await relay.run_once() == 1
    assert receiver.deliveries == {"g-2": 1}
    assert await relay.run_once() == 0


async def test_same_topic_and_key_is_one_effect(engine: AsyncEngine) -> None:
    receiver = Receiver()
    for _ in range(3):
        async with engine.begin() as conn:
            await enqueue(conn, table, "grant.created", "g-1", {"amount": 5})
    relay = OutboxRelay(engine, table, {"grant.created": receiver}, "test")
    await relay.run_once()
    assert receiver.deliveries == {"g-1": 1}


async def test_transient_failures_are_retried_until_delivered(engine: AsyncEngine) -> None:
    receiver = Receiver()
    receiver.fail_times = 2
    async with engine.begin() as conn:
        await enqueue(conn, table, "grant.created", "g-1", {})
    relay = OutboxRelay(engine, table, {"grant.created": receiver}, "test", max_backoff_s=0.0)
    for _ in range(3):
        await relay.run_once()
    assert receiver.deliveries == {"g-1": 1}
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(table.c.attempts, table.c.delivered_at))).one()
    assert row.attempts == 3
    assert row.delivered_at is not None


async def test_permanent_refusals_are_parked_not_retried(engine: AsyncEngine) -> None:
    receiver = Receiver()
    receiver.permanent = True
    async with engine.begin() as conn:
        await enqueue(conn, table, "grant.created", "g-1", {})
        await enqueue(conn, table, "unknown.topic", "x", {})
    relay = OutboxRelay(engine, table, {"grant.created": receiver}, "test")
    assert await relay.run_once() == 2
    assert await relay.run_once() == 0
    async with engine.connect() as conn:
        parked = (await conn.execute(sa.select(sa.func.count()).where(table.c.failed_at.is_not(None)))).scalar()
    assert parked == 2


async def test_a_relay_that_dies_mid_delivery_is_taken_over_after_its_lease(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await enqueue(conn, table, "grant.created", "g-1", {})

    async def dies(message: OutboxMessage) -> None:
        raise asyncio.CancelledError  # the process is gone between "sent" and "marked delivered"

    crashed = OutboxRelay(engine, table, {"grant.created": dies}, "test", lease_s=0.3)
    with pytest.raises(asyncio.CancelledError):
        await crashed.run_once()
    receiver = Receiver()
    survivor = OutboxRelay(engine, table, {"grant.created": receiver}, "test")
    assert await survivor.run_once() == 0  # still leased by the dead relay

    async def claims_once_the_lease_runs_out() -> None:
        assert await survivor.run_once() == 1

    await eventually(claims_once_the_lease_runs_out)
    assert receiver.deliveries == {"g-1": 1}


async def test_concurrent_relays_deliver_each_row_once(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for n in range(200):
            await enqueue(conn, table, "grant.created", f"g-{n}", {})
    receiver = Receiver()
    relays = [OutboxRelay(engine, table, {"grant.created": receiver}, "test", batch_size=7) for _ in range(4)]

    async def drain(relay: OutboxRelay) -> None:
        while await relay.run_once():
            pass

    await asyncio.gather(*(drain(r) for r in relays))
    assert len(receiver.deliveries) == 200
    assert set(receiver.deliveries.values()) == {1}


async def test_delivery_joins_the_trace_of_the_request_that_enqueued(
    engine: AsyncEngine, span_exporter: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request") as request_span:
        async with engine.begin() as conn:
            await enqueue(conn, table, "grant.created", "traced", {})
    relay = OutboxRelay(engine, table, {"grant.created": Receiver()}, "test")
    await relay.run_once()
    delivery = [
        s
        for s in span_exporter.get_finished_spans()
        if s.name == "outbox deliver grant.created" and s.attributes and s.attributes.get("outbox.key") == "traced"
    ]
    assert len(delivery) == 1
    assert delivery[0].context is not None
    assert delivery[0].context.trace_id == request_span.get_span_context().trace_id


class CountedRelay(OutboxRelay):
    """A relay that counts its passes, so a test can wait for one instead of sleeping."""

    idle_passes = 0

    async def run_once(self) -> int:
        attempted = await super().run_once()
        if not attempted:
            self.idle_passes += 1  # run() goes idle right after, with no await in between
        return attempted


async def test_run_loop_delivers_promptly_when_woken_and_stops(engine: AsyncEngine) -> None:
    receiver = Receiver()
    relay = CountedRelay(engine, table, {"grant.created": receiver}, "test", idle_poll_s=30)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))

    def idle() -> None:  # a pass found nothing: the relay is idle for 30 s unless woken
        assert relay.idle_passes == 1

    await eventually(idle, within=2.5)
    async with engine.begin() as conn:
        await enqueue(conn, table, "grant.created", "g-1", {})
    relay.wake()

    def delivered() -> None:
        assert receiver.deliveries == {"g-1": 1}

    await eventually(delivered, within=2.5)  # far below idle_poll_s: only the wake-up can deliver it
    stop.set()
    await asyncio.wait_for(task, timeout=5)
