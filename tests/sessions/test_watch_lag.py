"""The watcher's lag gauge (what NeravaSessionWatchLagging/Stalled read): how long the most overdue active session
has waited past its interval. Measured on a copy of the active-sessions table in a schema of the test's own, so
no other test's sessions (nor the mesh's watcher) move the figure."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator

import prometheus_client
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import create_engine
from services.sessions.watching import SessionWatcher

NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)


@pytest.fixture
async def isolated(database_url: str) -> AsyncIterator[AsyncEngine]:
    schema = f"watch_lag_{uuid.uuid4().hex[:10]}"
    admin = create_engine(database_url, "sessions")
    async with admin.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        await conn.execute(
            sa.text(
                f'CREATE TABLE "{schema}".charging_sessions_active '
                "(LIKE sessions.charging_sessions_active INCLUDING DEFAULTS)"
            )
        )
    engine = create_engine(database_url, schema)
    try:
        yield engine
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def _active(engine: AsyncEngine, watch_at: datetime.datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO charging_sessions_active (driver_id, vehicle_id, session_id, session_start, watch_at)"
                " VALUES (:driver, 'v1', :session, :at, :at)"
            ),
            {"driver": uuid.uuid4().hex, "session": uuid.uuid4(), "at": watch_at},
        )


async def test_the_lag_is_how_long_the_oldest_due_session_has_waited(isolated: AsyncEngine) -> None:
    watcher = SessionWatcher(isolated, poller=None, clock=lambda: NOW)  # type: ignore[arg-type]
    assert await watcher.measure_lag() == 0.0  # nothing active
    await _active(isolated, NOW + datetime.timedelta(seconds=30))  # due later (or leased): not late
    assert await watcher.measure_lag() == 0.0
    await _active(isolated, NOW - datetime.timedelta(seconds=45))
    await _active(isolated, NOW - datetime.timedelta(seconds=200))
    assert await watcher.measure_lag() == 200.0
    assert prometheus_client.REGISTRY.get_sample_value("nerava_session_watch_lag_seconds") == 200.0  # /metrics
