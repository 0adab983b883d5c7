"""The hand-off of ended sessions to incentives: exactly once, also when the relay dies after incentives answered
and before it marked the row. A sessions stack of its own (database, tracker, relay) runs in the test so that
its relay is the test's to kill; incentives is the mesh's, over real gRPC."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from google.protobuf import json_format
from nerava.incentives.v1 import incentives_pb2, incentives_pb2_grpc
from nerava.sessions.v1 import sessions_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.auth import ServiceTokens
from services.common.clients import open_channel
from services.common.config import Secret
from services.common.db import create_engine
from services.common.outbox import OutboxMessage, OutboxRelay
from services.sessions import store
from services.sessions.domain import Telemetry
from services.sessions.tracking import SESSION_ENDED_TOPIC, SessionTracker
from services.sessions.workers import EvaluationHandOff
from tests.support.database import fresh_database
from tests.support.eventually import eventually
from tests.support.mesh import Mesh
from tests.support.rpc import TEST_SERVICE_SECRET

T0 = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)


@pytest.fixture
async def engine(database_server_url: str) -> AsyncIterator[AsyncEngine]:
    async with fresh_database(database_server_url) as url:
        engine = create_engine(url, "sessions")
        yield engine
        await engine.dispose()


async def evaluations_of(database_url: str, session_id: str) -> int:
    engine = create_engine(database_url, "incentives")
    try:
        async with engine.connect() as conn:
            return int(
                (
                    await conn.execute(
                        sa.text("SELECT count(*) FROM evaluations WHERE session_id = :id"),
                        {"id": uuid.UUID(session_id)},
                    )
                ).scalar_one()
            )
    finally:
        await engine.dispose()


async def test_a_relay_killed_after_incentives_answered_evaluates_the_session_once(
    engine: AsyncEngine, mesh: Mesh, database_url: str
) -> None:
    tracker = SessionTracker(engine)
    driver = str(uuid.uuid4())
    opened = await tracker.apply(driver, "v1", pb.SESSION_SOURCE_TESLA_API, Telemetry(at=T0, charging=True))
    await tracker.apply(
        driver, "v1", pb.SESSION_SOURCE_TESLA_API, Telemetry(at=T0 + datetime.timedelta(minutes=25), charging=False)
    )
    assert opened.session is not None
    session_id = str(opened.session["id"])
    channel = open_channel(mesh.address("incentives"), ServiceTokens(Secret(TEST_SERVICE_SECRET), "sessions"))
    hand_off = EvaluationHandOff(incentives_pb2_grpc.IncentivesServiceStub(channel))

    async def dies_after_the_answer(message: OutboxMessage) -> None:
        await hand_off(message)
        raise asyncio.CancelledError  # the process is gone before it marks the row

    crashed = OutboxRelay(engine, store.outbox, {SESSION_ENDED_TOPIC: dies_after_the_answer}, "sessions", lease_s=0.3)
    with pytest.raises(asyncio.CancelledError):
        await crashed.run_once()
    assert await evaluations_of(database_url, session_id) == 1
    restarted = OutboxRelay(engine, store.outbox, {SESSION_ENDED_TOPIC: hand_off}, "sessions")

    async def redelivered() -> None:  # once the dead relay's lease runs out
        assert await restarted.run_once() == 1

    await eventually(redelivered, within=5)
    assert await evaluations_of(database_url, session_id) == 1
    t = store.outbox
    async with engine.connect() as conn:
        delivered, payload = (
            await conn.execute(sa.select(t.c.delivered_at, t.c.payload).where(t.c.topic == SESSION_ENDED_TOPIC))
        ).one()
    assert delivered is not None
    # The same snapshot again is the stored answer.
    replay = await incentives_pb2_grpc.IncentivesServiceStub(channel).EvaluateSession(
        incentives_pb2.EvaluateSessionRequest(session=json_format.ParseDict(payload, incentives_pb2.EndedSession()))
    )
    assert replay.replayed
    await channel.close(None)
