"""PollChargingState with a scripted car at the local fake Tesla Fleet API: the whole lifecycle through Envoy
REST (not charging → charging at a charger → updates → unplugged → ended, with its quality score and the grant of
a matching campaign), the 30-second window shared through Redis, and the vehicle-side answers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
import redis.asyncio as redis
import sqlalchemy as sa
from nerava.incentives.v1 import incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2_grpc
from nerava.merchants.v1 import merchants_pb2, merchants_pb2_grpc
from nerava.sessions.v1 import sessions_pb2 as pb
from nerava.sessions.v1 import sessions_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from fakes.fleet import FakeFleet
from fakes.twilio_verify import FakeTwilioVerify
from services.accounts.seed import ensure_phone_user
from services.common.config import Env
from services.common.db import create_engine
from services.sessions import store
from services.sessions.__main__ import build_server as build_sessions
from services.sessions.config import SessionsSettings
from tests.incentives.helpers import Incentives
from tests.sessions.helpers import driver_with_tesla, next_window, north_of
from tests.support.eventually import eventually
from tests.support.mesh import Mesh
from tests.support.people import NewPerson, Person
from tests.support.rpc import phone_login, random_phone


@pytest.fixture
async def cache(redis_url: str) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_the_whole_lifecycle_through_envoy(
    mesh: Mesh,
    twilio: FakeTwilioVerify,
    fleet: FakeFleet,
    engine: AsyncEngine,
    cache: redis.Redis,
    rest: httpx.AsyncClient,
    charger: tuple[str, float, float],
) -> None:
    charger_id, lat, lng = charger
    driver, car = await driver_with_tesla(mesh, twilio, fleet, engine)
    sponsor_phone = random_phone()
    accounts = create_engine(mesh.env["DATABASE_URL"], "accounts")
    try:
        await ensure_phone_user(accounts, sponsor_phone, ["sponsor"])
    finally:
        await accounts.dispose()
    sponsor_login = await phone_login(mesh.channels["accounts"], twilio, sponsor_phone)
    sponsor = Person(user_id=sponsor_login.user.public_id, token=sponsor_login.access_token)
    incentives = Incentives(
        incentives_pb2_grpc.IncentivesServiceStub(mesh.channels["incentives"]),
        ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"]),
    )
    incentives.charger = charger_id
    await incentives.active(sponsor, cost_per_session_cents=225)
    auth = {"Authorization": f"Bearer {driver.token}"}

    idle = (await rest.post("/v1/charging-sessions/poll", json={}, headers=auth)).json()
    assert idle.get("session_active", False) is False and idle["recommended_interval_s"] == 300

    car.move(*north_of(lat, lng, 499))
    car.plug_in(*north_of(lat, lng, 499), power_kw=11.0)
    await next_window(cache, driver)
    opened = (await rest.post("/v1/charging-sessions/poll", json={}, headers=auth)).json()
    assert opened["session_active"] is True, opened
    calls = fleet.calls(car.id)
    again = (await rest.post("/v1/charging-sessions/poll", json={}, headers=auth)).json()
    assert again["cached"] is True and fleet.calls(car.id) == calls  # inside the window: no vehicle call

    # The car has been charging for 40 minutes (the service's clock is the wall clock; the test does not wait).
    fleet.advance(minutes=40)
    s = store.charging_sessions
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(s)
            .where(s.c.id == uuid.UUID(opened["session_id"]))
            .values(session_start=s.c.session_start - datetime.timedelta(minutes=40))
        )
    await next_window(cache, driver)
    charging = (await rest.post("/v1/charging-sessions/poll", json={}, headers=auth)).json()
    assert charging["session_id"] == opened["session_id"] and charging["kwh_delivered"] > 0

    car.unplug()
    await next_window(cache, driver)
    ended = (await rest.post("/v1/charging-sessions/poll", json={}, headers=auth)).json()
    assert ended["session_ended"] is True and ended["session_id"] == opened["session_id"]

    async def granted() -> dict[str, Any]:
        active = (await rest.get("/v1/charging-sessions/active", headers=auth)).json()
        assert "incentive" in active.get("last_ended_session", {}), active
        last: dict[str, Any] = active["last_ended_session"]
        return last

    last = await eventually(granted)
    assert last["charger_id"] == charger_id and last["ended_reason"] == "END_REASON_UNPLUGGED"
    assert last["quality_score"] > 30 and last["incentive"]["amount_cents"] == 225


async def test_twenty_concurrent_polls_read_the_car_once_and_open_one_session(
    mesh: Mesh,
    twilio: FakeTwilioVerify,
    fleet: FakeFleet,
    engine: AsyncEngine,
    sessions: sessions_pb2_grpc.SessionsServiceAsyncStub,
    charger: tuple[str, float, float],
) -> None:
    _, lat, lng = charger
    driver, car = await driver_with_tesla(mesh, twilio, fleet, engine)
    car.plug_in(lat, lng, power_kw=50.0)
    before = fleet.calls(car.id)
    answers = await asyncio.gather(
        *(sessions.PollChargingState(pb.PollChargingStateRequest(), metadata=driver.auth) for _ in range(20))
    )
    assert fleet.calls(car.id) - before == 1
    assert len({a.session_id for a in answers if a.session_id}) == 1
    s = store.charging_sessions
    async with engine.connect() as conn:
        count = (await conn.execute(sa.select(sa.func.count()).where(s.c.driver_id == driver.user_id))).scalar_one()
    assert count == 1


async def test_a_car_501_m_from_the_charger_charges_without_a_charger_and_an_asleep_car_is_not_woken(
    mesh: Mesh,
    twilio: FakeTwilioVerify,
    fleet: FakeFleet,
    engine: AsyncEngine,
    cache: redis.Redis,
    sessions: sessions_pb2_grpc.SessionsServiceAsyncStub,
    charger: tuple[str, float, float],
) -> None:
    _, lat, lng = charger
    driver, car = await driver_with_tesla(mesh, twilio, fleet, engine)
    car.sleep()
    asleep = await sessions.PollChargingState(pb.PollChargingStateRequest(), metadata=driver.auth)
    assert asleep.vehicle_asleep and not asleep.session_active and fleet.calls(car.id, "wake_up") == 0
    car.wake()
    car.plug_in(*north_of(lat, lng, 501), power_kw=50.0)
    await next_window(cache, driver)
    far = await sessions.PollChargingState(pb.PollChargingStateRequest(), metadata=driver.auth)
    assert far.session_active
    s = store.charging_sessions
    async with engine.connect() as conn:
        charger_id = (await conn.execute(sa.select(s.c.charger_id).where(s.c.driver_id == driver.user_id))).scalar_one()
    assert charger_id == ""


async def test_without_a_tesla_the_poll_says_so(
    mesh: Mesh, twilio: FakeTwilioVerify, sessions: sessions_pb2_grpc.SessionsServiceAsyncStub
) -> None:
    login = await phone_login(mesh.channels["accounts"], twilio, random_phone())
    answer = await sessions.PollChargingState(
        pb.PollChargingStateRequest(), metadata=(("authorization", f"Bearer {login.access_token}"),)
    )
    assert answer.error == pb.POLL_ERROR_NO_VEHICLE_CONNECTION and not answer.session_active


async def test_two_replicas_share_the_window(
    mesh: Mesh,
    twilio: FakeTwilioVerify,
    fleet: FakeFleet,
    engine: AsyncEngine,
    charger: tuple[str, float, float],
) -> None:
    """A second sessions process on the same database and Redis: a poll there inside the window reads nothing."""
    _, lat, lng = charger
    driver, car = await driver_with_tesla(mesh, twilio, fleet, engine)
    car.plug_in(lat, lng, power_kw=50.0)
    env = {**mesh.env, "SESSIONS_PORT": "0"}
    async with contextlib.AsyncExitStack() as stack:
        replica = await build_sessions(SessionsSettings.from_env(Env(env)), stack)
        port = await replica.start()
        stack.push_async_callback(replica.stop)
        other = sessions_pb2_grpc.SessionsServiceStub(
            await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{port}"))
        )
        before = fleet.calls(car.id)
        first = await sessions_pb2_grpc.SessionsServiceStub(mesh.channels["sessions"]).PollChargingState(
            pb.PollChargingStateRequest(), metadata=driver.auth
        )
        second = await other.PollChargingState(pb.PollChargingStateRequest(), metadata=driver.auth)
    assert fleet.calls(car.id) - before == 1
    assert second.cached and second.session_id == first.session_id


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"lat": 91, "lng": 0}, "lat"),
        ({"lat": 0, "lng": 181}, "lng"),
        ({"lat": "NaN", "lng": 0}, "lat"),
        ({"lat": 1}, ""),
    ],
)
async def test_bad_positions_are_refused_naming_the_field(
    mesh: Mesh, twilio: FakeTwilioVerify, rest: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    login = await phone_login(mesh.channels["accounts"], twilio, random_phone())
    refused = await rest.post(
        "/v1/charging-sessions/poll", json=body, headers={"Authorization": f"Bearer {login.access_token}"}
    )
    assert refused.status_code == 400, refused.text
    violations = [
        v
        for d in refused.json()["details"]
        if "fieldViolations" in d or "field_violations" in d
        for v in d.get("fieldViolations", d.get("field_violations", []))
    ]
    assert {v["field"] for v in violations} == {field}


async def test_ev_codes_for_a_charging_driver_one_active_per_merchant(
    mesh: Mesh,
    twilio: FakeTwilioVerify,
    fleet: FakeFleet,
    engine: AsyncEngine,
    cache: redis.Redis,
    rest: httpx.AsyncClient,
    charger: tuple[str, float, float],
) -> None:
    _, lat, lng = charger
    driver, car = await driver_with_tesla(mesh, twilio, fleet, engine)
    auth = {"Authorization": f"Bearer {driver.token}"}
    ask = {"merchant_place_id": "ChIJ-test-cafe", "merchant_name": "Test Cafe"}
    idle = (await rest.post("/v1/auth/tesla/verify-charging", json=ask, headers=auth)).json()
    assert idle.get("is_charging", False) is False and idle.get("ev_code", "") == ""
    car.plug_in(lat, lng, power_kw=50.0)
    await next_window(cache, driver)
    first = (await rest.post("/v1/auth/tesla/verify-charging", json=ask, headers=auth)).json()
    assert first["is_charging"] is True and re.fullmatch(r"EV-[A-HJ-NP-Z2-9]{4}", first["ev_code"])
    # The poll's window: the next calls within 30 s answer from the first read, the car is read once.
    reads = fleet.calls(car.id, "vehicle_data")
    again = (await rest.post("/v1/auth/tesla/verify-charging", json=ask, headers=auth)).json()
    assert again["ev_code"] == first["ev_code"]  # still valid: the same code
    other = (
        await rest.post(
            "/v1/auth/tesla/verify-charging",
            json={"merchant_place_id": "ChIJ-other", "merchant_name": "Other"},
            headers=auth,
        )
    ).json()
    assert other["ev_code"] != first["ev_code"]
    assert fleet.calls(car.id, "vehicle_data") == reads
    listed = (await rest.get("/v1/auth/tesla/codes", headers=auth)).json()
    assert isinstance(listed, list) and {c["code"] for c in listed} == {first["ev_code"], other["ev_code"]}
    assert {c["status"] for c in listed} == {"active"}


async def test_an_ev_code_for_a_known_merchant_is_issued_only_within_500_m_of_it(
    mesh: Mesh,
    twilio: FakeTwilioVerify,
    fleet: FakeFleet,
    engine: AsyncEngine,
    rest: httpx.AsyncClient,
    charger: tuple[str, float, float],
    person: NewPerson,
) -> None:
    _, lat, lng = charger
    admin = await person("admin")
    place = f"ChIJ{uuid.uuid4().hex[:16]}"
    merchants = merchants_pb2_grpc.MerchantsServiceStub(mesh.channels["merchants"])
    await merchants.CreateMerchant(
        merchants_pb2.CreateMerchantRequest(
            request_id=str(uuid.uuid4()),
            merchant=merchants_pb2.Merchant(name="Near Cafe", lat=lat, lng=lng, place_id=place),
        ),
        metadata=admin.auth,
    )
    driver, car = await driver_with_tesla(mesh, twilio, fleet, engine)
    car.plug_in(lat, lng, power_kw=50.0)
    far_lat, far_lng = north_of(lat, lng, 501)
    ask = {"merchant_place_id": place, "merchant_name": "Near Cafe"}
    far = await rest.post(
        "/v1/auth/tesla/verify-charging", json={**ask, "lat": far_lat, "lng": far_lng}, headers=driver.headers
    )
    assert far.status_code == 400 and far.json()["details"][0]["reason"] == "NOT_NEAR_MERCHANT", far.text
    near_lat, near_lng = north_of(lat, lng, 499)
    near = await rest.post(
        "/v1/auth/tesla/verify-charging", json={**ask, "lat": near_lat, "lng": near_lng}, headers=driver.headers
    )
    assert near.status_code == 200 and near.json()["is_charging"] is True, near.text
