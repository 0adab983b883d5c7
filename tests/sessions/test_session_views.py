"""The driver's sessions over gRPC: active, last ended, list with the incentive each earned, one session, ending by
hand — and only the driver's own. Sessions are made by the real state machine on the mesh's database; the mesh's
sessions relay hands them to the real incentives, whose grant then shows on the session."""

from __future__ import annotations

import datetime

import grpc
import pytest
from nerava.incentives.v1 import incentives_pb2 as ipb
from nerava.incentives.v1 import incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2_grpc
from nerava.sessions.v1 import sessions_pb2 as pb
from nerava.sessions.v1 import sessions_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from fakes.twilio_verify import FakeTwilioVerify
from services.accounts.seed import ensure_phone_user
from services.common.db import create_engine
from services.sessions.domain import Telemetry
from services.sessions.tracking import SessionTracker
from tests.incentives.helpers import Incentives
from tests.support.eventually import eventually
from tests.support.mesh import Mesh
from tests.support.people import Person
from tests.support.rpc import error_reason, phone_login, random_phone

NOW = datetime.datetime.now(datetime.UTC)
TESLA = pb.SESSION_SOURCE_TESLA_API


async def sign_in(mesh: Mesh, twilio: FakeTwilioVerify, database_url: str, *roles: str) -> Person:
    phone = random_phone()
    if roles:
        accounts = create_engine(database_url, "accounts")
        try:
            await ensure_phone_user(accounts, phone, list(roles))
        finally:
            await accounts.dispose()
    login = await phone_login(mesh.channels["accounts"], twilio, phone)
    return Person(user_id=login.user.public_id, token=login.access_token)


async def test_the_active_session_then_the_one_that_just_ended_with_its_grant(
    mesh: Mesh,
    twilio: FakeTwilioVerify,
    database_url: str,
    engine: AsyncEngine,
    sessions: sessions_pb2_grpc.SessionsServiceAsyncStub,
    charger: tuple[str, float, float],
) -> None:
    charger_id, lat, lng = charger
    driver = await sign_in(mesh, twilio, database_url)
    sponsor = await sign_in(mesh, twilio, database_url, "sponsor")
    incentives = Incentives(
        incentives_pb2_grpc.IncentivesServiceStub(mesh.channels["incentives"]),
        ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"]),
    )
    incentives.charger = charger_id
    await incentives.active(sponsor, cost_per_session_cents=175)
    tracker = SessionTracker(engine)
    # The session ends now, not when the module was collected: GetActiveSession shows one that ended < 5 min ago.
    now = datetime.datetime.now(datetime.UTC)
    start = now - datetime.timedelta(minutes=40)
    await tracker.apply(
        driver.user_id, "car-1", TESLA, Telemetry(at=start, charging=True, lat=lat, lng=lng, power_kw=120.0)
    )

    active = await sessions.GetActiveSession(pb.GetActiveSessionRequest(), metadata=driver.auth)
    assert active.active and active.session.charger_id == charger_id and active.session.duration_minutes >= 39
    assert not active.session.HasField("ended_reason") and not active.session.HasField("incentive")

    await tracker.apply(driver.user_id, "car-1", TESLA, Telemetry(at=now, charging=False, kwh_added=30.0))

    # The mesh's sessions relay hands the ended session to incentives, whose grant then shows on the session.
    async def granted() -> pb.GetActiveSessionResponse:
        reply = await sessions.GetActiveSession(pb.GetActiveSessionRequest(), metadata=driver.auth)
        assert reply.last_ended_session.HasField("incentive"), reply
        return reply

    ended = await eventually(granted)
    assert not ended.active and not ended.HasField("session")
    last = ended.last_ended_session
    assert (last.ended_reason, last.duration_minutes) == (pb.END_REASON_UNPLUGGED, 40)
    assert (last.incentive.amount_cents, last.incentive.reward_kind) == (175, ipb.REWARD_KIND_CASH)

    listed = await sessions.ListChargingSessions(pb.ListChargingSessionsRequest(), metadata=driver.auth)
    assert [s.id for s in listed.sessions] == [last.id] and listed.sessions[0].incentive.amount_cents == 175
    one = await sessions.GetChargingSession(pb.GetChargingSessionRequest(session_id=last.id), metadata=driver.auth)
    assert one.session.quality_score == last.quality_score > 30


async def test_a_driver_cannot_read_or_end_another_drivers_session(
    mesh: Mesh,
    twilio: FakeTwilioVerify,
    database_url: str,
    engine: AsyncEngine,
    sessions: sessions_pb2_grpc.SessionsServiceAsyncStub,
    charger: tuple[str, float, float],
) -> None:
    _, lat, lng = charger
    owner = await sign_in(mesh, twilio, database_url)
    other = await sign_in(mesh, twilio, database_url)
    opened = await SessionTracker(engine).apply(
        owner.user_id,
        "car-1",
        TESLA,
        Telemetry(at=NOW - datetime.timedelta(minutes=5), charging=True, lat=lat, lng=lng),
    )
    assert opened.session is not None
    session_id = str(opened.session["id"])
    for call in (
        sessions.GetChargingSession(pb.GetChargingSessionRequest(session_id=session_id), metadata=other.auth),
        sessions.EndChargingSession(pb.EndChargingSessionRequest(session_id=session_id), metadata=other.auth),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        assert error_reason(refused.value) == "SESSION_NOT_FOUND"
    assert (await sessions.ListChargingSessions(pb.ListChargingSessionsRequest(), metadata=other.auth)).sessions == []
    ended = await sessions.EndChargingSession(pb.EndChargingSessionRequest(session_id=session_id), metadata=owner.auth)
    assert (ended.ended, ended.already_ended, ended.session.ended_reason) == (True, False, pb.END_REASON_MANUAL)
    again = await sessions.EndChargingSession(pb.EndChargingSessionRequest(session_id=session_id), metadata=owner.auth)
    assert again.already_ended
