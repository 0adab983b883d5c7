"""Fixtures shared by the sessions tests: the sessions schema of the mesh's database, a stub of the running
service, and a charger of each test's own (the database is shared by every test of the run)."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from nerava.sessions.v1 import sessions_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import create_engine
from services.sessions import store
from tests.support.mesh import Mesh


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, "sessions")
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(mesh: Mesh) -> sessions_pb2_grpc.SessionsServiceAsyncStub:
    return sessions_pb2_grpc.SessionsServiceStub(mesh.channels["sessions"])


@pytest.fixture
async def charger(engine: AsyncEngine) -> tuple[str, float, float]:
    """(id, lat, lng) of an EVgo charger in zone "test-zone", somewhere no other test puts one."""
    lat, lng = random.uniform(-60, -40), random.uniform(100, 140)
    charger_id = f"test-{uuid.uuid4().hex[:10]}"
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(store.chargers).values(
                id=charger_id,
                source="manual",
                external_id=charger_id,
                name="Test charger",
                lat=lat,
                lng=lng,
                network_name="EVgo",
                zone_id="test-zone",
            )
        )
    return charger_id, lat, lng
