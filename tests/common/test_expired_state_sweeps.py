"""The sweep of expired single-use states (services/common/sweeps.py) over its three tables, on real PostgreSQL:
what it deletes and keeps, a backlog of several batches, two replicas sweeping at once; and the loop's turns."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import prometheus_client
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.accounts import store as accounts_store
from services.common.db import create_engine
from services.common.sweeps import EXPIRED_STATE_GRACE, sweep_expired_states, sweep_once
from services.merchants import store as merchants_store
from services.sessions import store as sessions_store

DeleteWith = Callable[[AsyncEngine, datetime.datetime, int], Awaitable[int]]


@dataclasses.dataclass(frozen=True)
class SweptTable:
    schema: str
    table: sa.Table
    key: str
    row: Callable[[str, datetime.datetime], dict[str, Any]]
    delete: DeleteWith


TABLES = [
    SweptTable(
        "accounts",
        accounts_store.merchant_claim_links,
        "token_hash",
        lambda key, expires_at: {
            "token_hash": key.encode(),
            "merchant_id": "m-sweep",
            "email": "owner@example.com",
            "expires_at": expires_at,
        },
        accounts_store.delete_expired_claim_links,
    ),
    SweptTable(
        "sessions",
        sessions_store.oauth_states,
        "state",
        lambda key, expires_at: {
            "state": key,
            "driver_id": "d-sweep",
            "provider": "tesla",
            "code_verifier": b"verifier",
            "expires_at": expires_at,
        },
        sessions_store.delete_expired_oauth_states,
    ),
    SweptTable(
        "merchants",
        merchants_store.square_oauth_states,
        "state",
        lambda key, expires_at: {"state": key, "user_id": "u-sweep", "expires_at": expires_at},
        merchants_store.delete_expired_square_oauth_states,
    ),
]


@pytest.fixture(params=TABLES, ids=[swept.table.name for swept in TABLES])
def swept(request: pytest.FixtureRequest) -> SweptTable:
    table: SweptTable = request.param
    return table


@pytest.fixture
async def engine(database_url: str, swept: SweptTable) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, swept.schema)
    yield engine
    await engine.dispose()


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def insert(engine: AsyncEngine, swept: SweptTable, count: int, expires_at: datetime.datetime) -> set[str]:
    keys = {f"sweep-{secrets.token_hex(12)}" for _ in range(count)}
    async with engine.begin() as conn:
        await conn.execute(sa.insert(swept.table), [swept.row(key, expires_at) for key in keys])
    return keys


async def remaining(engine: AsyncEngine, swept: SweptTable, keys: set[str]) -> set[str]:
    column = swept.table.c[swept.key]
    stored = [key.encode() for key in keys] if swept.key == "token_hash" else list(keys)
    async with engine.connect() as conn:
        found = (await conn.execute(sa.select(column).where(column.in_(stored)))).scalars()
        return {value.decode() if isinstance(value, bytes) else value for value in found}


def deleting(engine: AsyncEngine, swept: SweptTable) -> Callable[[datetime.datetime, int], Awaitable[int]]:
    async def delete(before: datetime.datetime, limit: int) -> int:
        return await swept.delete(engine, before, limit)

    return delete


async def test_deletes_states_expired_past_the_grace_and_keeps_the_others(
    engine: AsyncEngine, swept: SweptTable
) -> None:
    long_ago = await insert(engine, swept, 3, now() - datetime.timedelta(days=2))
    just_past_grace = await insert(engine, swept, 1, now() - EXPIRED_STATE_GRACE - datetime.timedelta(minutes=1))
    five_minutes_ago = await insert(engine, swept, 1, now() - datetime.timedelta(minutes=5))
    live = await insert(engine, swept, 1, now() + datetime.timedelta(minutes=10))

    deleted = await sweep_once(deleting(engine, swept), now=now())

    assert deleted >= 4  # earlier tests' expired rows may go too
    everything = long_ago | just_past_grace | five_minutes_ago | live
    assert await remaining(engine, swept, everything) == five_minutes_ago | live


async def test_a_backlog_of_several_batches_is_swept_in_one_turn(engine: AsyncEngine, swept: SweptTable) -> None:
    backlog = await insert(engine, swept, 2300, now() - datetime.timedelta(days=1))
    batches: list[int] = []
    delete = deleting(engine, swept)

    async def counted(before: datetime.datetime, limit: int) -> int:
        batches.append(await delete(before, limit))
        return batches[-1]

    await sweep_once(counted, now=now(), batch=1000)

    assert await remaining(engine, swept, backlog) == set()
    assert batches[:2] == [1000, 1000]
    assert batches[-1] < 1000


async def test_two_sweeps_at_once_delete_each_row_once(engine: AsyncEngine, swept: SweptTable) -> None:
    delete = deleting(engine, swept)
    await sweep_once(delete, now=now())  # what earlier tests left expired, so that the count below is ours
    expired = await insert(engine, swept, 1200, now() - datetime.timedelta(days=1))

    counts = await asyncio.gather(sweep_once(delete, now=now(), batch=50), sweep_once(delete, now=now(), batch=50))

    assert sum(counts) == len(expired)
    assert await remaining(engine, swept, expired) == set()


async def test_the_loop_sweeps_counts_and_survives_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    stop = asyncio.Event()
    calls: list[datetime.datetime] = []
    fixed_now = datetime.datetime(2026, 12, 7, 12, tzinfo=datetime.UTC)

    async def delete(before: datetime.datetime, limit: int) -> int:
        calls.append(before)
        if len(calls) == 1:
            raise ConnectionError("database away")
        if len(calls) == 3:
            stop.set()
        return 2

    before_count = deleted_count()
    with caplog.at_level(logging.INFO, logger="services.common.sweeps"):
        await asyncio.wait_for(
            sweep_expired_states("tests", "states", delete, stop, every_s=0.01, clock=lambda: fixed_now), 5
        )

    assert calls == [fixed_now - EXPIRED_STATE_GRACE] * 3
    assert deleted_count() - before_count == 4
    assert "sweeping expired states failed" in caplog.text
    assert caplog.text.count("tests: 2 expired states deleted") == 2


def deleted_count() -> float:
    labels = {"service": "tests", "table": "states"}
    return prometheus_client.REGISTRY.get_sample_value("nerava_expired_states_deleted_total", labels) or 0.0
