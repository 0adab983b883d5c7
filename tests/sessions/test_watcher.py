"""The session watcher follows every charge to its end whatever the app does: long charges nobody polls, a car
that sleeps after unplugging, one that goes offline mid-charge, two replicas sharing the work (one killed with
its leases), and drivers in Fleet Telemetry mode, who are never read.

The watcher, the poll and the state machine run here in-process with an injected clock — the simulation clock of
a fake fleet of the test's own, started a day ahead of the wall clock — against the mesh's PostgreSQL and Redis;
the mesh's sessions process (wall clock) delivers the ends to incentives through the outbox and serves the reads.
Being a day ahead keeps the two apart: the mesh's own watcher and stale cleanup never find these sessions due.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as redis
import sqlalchemy as sa
from nerava.incentives.v1 import incentives_pb2, incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2_grpc
from nerava.sessions.v1 import sessions_pb2 as pb
from nerava.sessions.v1 import sessions_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from fakes.fleet import FakeFleet, FakeVehicle
from fakes.twilio_verify import FakeTwilioVerify
from services.accounts.seed import ensure_phone_user
from services.common.config import Env
from services.common.db import create_engine
from services.sessions import store
from services.sessions.adapters.tesla import TeslaFleetClient
from services.sessions.config import SessionsSettings
from services.sessions.connections import VehicleReaders
from services.sessions.linking import TeslaLinking
from services.sessions.polling import Poller, ReadOutcome
from services.sessions.tokens import TokenCipher
from services.sessions.tracking import SessionTracker
from services.sessions.watching import SessionWatcher
from tests.conftest import TELEMETRY_SECRET
from tests.incentives.helpers import Incentives
from tests.sessions.helpers import driver_with_tesla
from tests.support.eventually import eventually
from tests.support.mesh import Mesh
from tests.support.people import Person
from tests.support.rpc import as_service, phone_login, random_phone

S = store.charging_sessions
INTERVAL = datetime.timedelta(minutes=2)
STALE = datetime.timedelta(minutes=15)


@dataclasses.dataclass
class Replica:
    """One sessions process's watcher, poll and state machine, on the simulation clock."""

    engine: AsyncEngine
    tracker: SessionTracker
    poller: Poller
    watcher: SessionWatcher


@dataclasses.dataclass
class World:
    fleet: FakeFleet
    tesla: TeslaFleetClient
    cache: redis.Redis
    replicas: list[Replica]  # the ones running
    started: list[Replica]  # every one made

    @property
    def main(self) -> Replica:
        return self.replicas[0]

    async def minute(self) -> None:
        """One simulated minute passes; every replica runs a watcher round, then the stale cleanup."""
        self.fleet.advance(minutes=1)
        await asyncio.gather(*(replica.watcher.watch_round() for replica in self.replicas))
        await self.main.tracker.end_stale()

    async def follow(self, minutes: int) -> None:
        for _ in range(minutes):
            await self.minute()


@pytest.fixture
async def world(database_url: str, redis_url: str) -> AsyncIterator[World]:
    start = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    cipher = TokenCipher.from_config(SessionsSettings.from_env(Env.development()).vehicle_token_keys.value)
    async with FakeFleet(start=start) as fleet:

        def clock() -> datetime.datetime:
            return fleet.now

        tesla = TeslaFleetClient(
            client_id=fleet.tesla_client_id,
            client_secret=fleet.tesla_client_secret,
            redirect_uri="http://127.0.0.1:8080/v1/auth/tesla/callback",
            api_base_url=fleet.base_url,
            authorize_base_url=fleet.base_url,
            token_base_url=fleet.base_url,
            clock=clock,
        )
        cache = redis.Redis.from_url(redis_url)
        replicas = []
        for _ in range(2):
            engine = create_engine(database_url, "sessions")
            tracker = SessionTracker(engine, clock=clock, stale_after=STALE, watch_interval=INTERVAL)
            readers = VehicleReaders(engine, cipher, tesla=tesla)
            poller = Poller(cache, tracker=tracker, readers=readers, incentives=None, clock=clock)
            replicas.append(
                Replica(
                    engine,
                    tracker,
                    poller,
                    SessionWatcher(engine, poller, interval=INTERVAL, concurrency=4, clock=clock),
                )
            )
        world = World(fleet, tesla, cache, replicas[:1], replicas)
        try:
            yield world
        finally:
            await tesla.aclose()
            await cache.aclose()
            for replica in replicas:
                await replica.engine.dispose()


async def sessions_of(engine: AsyncEngine, driver_id: str) -> list[sa.RowMapping]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(S).where(S.c.driver_id == driver_id).order_by(S.c.session_start))
        return list(rows.mappings().all())


async def campaign_at(mesh: Mesh, twilio: FakeTwilioVerify, charger_id: str) -> Incentives:
    """A funded campaign paying 225 ¢ for a session of 15 minutes or more at the charger."""
    phone = random_phone()
    accounts = create_engine(mesh.env["DATABASE_URL"], "accounts")
    try:
        await ensure_phone_user(accounts, phone, ["sponsor"])
    finally:
        await accounts.dispose()
    login = await phone_login(mesh.channels["accounts"], twilio, phone)
    incentives = Incentives(
        incentives_pb2_grpc.IncentivesServiceStub(mesh.channels["incentives"]),
        ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"]),
    )
    incentives.charger = charger_id
    await incentives.active(Person(user_id=login.user.public_id, token=login.access_token), cost_per_session_cents=225)
    return incentives


async def outbox_keys(engine: AsyncEngine, session_id: uuid.UUID) -> list[str]:
    o = store.outbox
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(o.c.key).where(o.c.key.like(f"{session_id}:%")))
        return [row.key for row in rows]


async def test_a_two_hour_charge_the_app_polls_once_is_followed_to_its_end_and_earns(
    mesh: Mesh,
    twilio: FakeTwilioVerify,
    world: World,
    engine: AsyncEngine,
    sessions: sessions_pb2_grpc.SessionsServiceAsyncStub,
    charger: tuple[str, float, float],
) -> None:
    charger_id, lat, lng = charger
    incentives = await campaign_at(mesh, twilio, charger_id)
    driver, car = await driver_with_tesla(mesh, twilio, world.fleet, engine)
    car.set_battery(20)
    car.plug_in(lat, lng, power_kw=7.0, connector="J1772")
    started = world.fleet.now
    first = await world.main.poller.poll(driver.user_id, None, None)
    assert first.session_active and first.recommended_interval_s > 15 * 60  # the app is told to sleep long

    await world.follow(120)  # the app never polls again
    [active] = await sessions_of(engine, driver.user_id)
    assert active["session_end"] is None  # never ended stale while the car answers
    car.unplug()
    unplugged = world.fleet.now
    await world.follow(int(INTERVAL.total_seconds() // 60))

    [ended] = await sessions_of(engine, driver.user_id)
    assert ended["ended_reason"] == pb.END_REASON_UNPLUGGED
    truth = (unplugged - started).total_seconds() / 60
    assert truth <= ended["duration_minutes"] <= truth + INTERVAL.total_seconds() / 60
    assert ended["kwh_delivered"] > 10 and ended["battery_end_pct"] > ended["battery_start_pct"]
    # Read about once per interval, never woken.
    assert 60 <= world.fleet.calls(car.id, "vehicle_data") <= 63 and world.fleet.calls(car.id, "wake_up") == 0
    assert await outbox_keys(engine, ended["id"]) == [f"{ended['id']}:1"]  # handed to incentives once

    async def granted() -> None:
        grants = await incentives.stub.BatchGetSessionGrants(
            incentives_pb2.BatchGetSessionGrantsRequest(session_ids=[str(ended["id"])]), metadata=as_service("sessions")
        )
        assert grants.grants, "no grant for the ended session yet"

    await eventually(granted)
    active_reply = await sessions.GetActiveSession(pb.GetActiveSessionRequest(), metadata=driver.auth)
    assert not active_reply.active and active_reply.last_ended_session.id == str(ended["id"])
    assert active_reply.last_ended_session.incentive.amount_cents == 225


async def test_a_dc_charge_the_app_polls_every_90_minutes_ends_when_unplugged(
    mesh: Mesh, twilio: FakeTwilioVerify, world: World, engine: AsyncEngine, charger: tuple[str, float, float]
) -> None:
    _, lat, lng = charger
    driver, car = await driver_with_tesla(mesh, twilio, world.fleet, engine)
    car.set_battery(30)
    car.plug_in(lat, lng, power_kw=50.0, connector="CCS1")
    started = world.fleet.now
    assert (await world.main.poller.poll(driver.user_id, None, None)).session_active
    await world.follow(25)
    car.unplug()
    await world.follow(65)
    later = await world.main.poller.poll(driver.user_id, None, None)  # the app's next poll, 90 minutes on
    assert not later.session_active

    [ended] = await sessions_of(engine, driver.user_id)
    assert ended["ended_reason"] == pb.END_REASON_UNPLUGGED
    assert 25 <= ended["duration_minutes"] <= 27
    assert ended["session_end"] - started <= datetime.timedelta(minutes=27)
    assert ended["quality_score"] >= 80


async def charging_for(
    world: World,
    mesh: Mesh,
    twilio: FakeTwilioVerify,
    engine: AsyncEngine,
    charger: tuple[str, float, float],
    *,
    minutes: int,
) -> tuple[Person, FakeVehicle]:
    """A driver whose car has charged at the charger for `minutes`, the session opened by one poll."""
    _, lat, lng = charger
    driver, car = await driver_with_tesla(mesh, twilio, world.fleet, engine)
    car.plug_in(lat, lng, power_kw=11.0)
    assert (await world.main.poller.poll(driver.user_id, None, None)).session_active
    await world.follow(minutes)
    return driver, car


async def last_telemetry(engine: AsyncEngine, driver: Person) -> datetime.datetime:
    [session] = await sessions_of(engine, driver.user_id)
    moment: datetime.datetime = session["last_telemetry_at"]
    return moment


async def test_a_car_that_sleeps_right_after_unplugging_is_not_woken_and_ends_at_its_last_telemetry(
    mesh: Mesh, twilio: FakeTwilioVerify, world: World, engine: AsyncEngine, charger: tuple[str, float, float]
) -> None:
    driver, car = await charging_for(world, mesh, twilio, engine, charger, minutes=20)
    car.unplug().sleep()
    last = await last_telemetry(engine, driver)
    await world.follow(int(STALE.total_seconds() // 60) + 3)

    [ended] = await sessions_of(engine, driver.user_id)
    assert ended["ended_reason"] == pb.END_REASON_STALE_CLEANUP and ended["session_end"] == last
    assert world.fleet.calls(car.id, "wake_up") == 0
    assert len(await outbox_keys(engine, ended["id"])) == 1


async def test_a_car_that_goes_offline_mid_charge_is_ended_at_its_last_telemetry_after_the_stale_limit(
    mesh: Mesh, twilio: FakeTwilioVerify, world: World, engine: AsyncEngine, charger: tuple[str, float, float]
) -> None:
    driver, car = await charging_for(world, mesh, twilio, engine, charger, minutes=10)
    car.go_offline()
    last = await last_telemetry(engine, driver)
    while world.fleet.now + datetime.timedelta(minutes=1) < last + STALE:
        await world.minute()
        [session] = await sessions_of(engine, driver.user_id)
        assert session["session_end"] is None  # never before the stale limit
    await world.follow(2)
    [ended] = await sessions_of(engine, driver.user_id)
    assert ended["ended_reason"] == pb.END_REASON_STALE_CLEANUP
    assert ended["session_end"] == last and ended["duration_minutes"] == (last - ended["session_start"]).seconds // 60
    assert world.fleet.calls(car.id, "wake_up") == 0


async def test_two_replicas_read_each_session_once_per_interval_and_a_killed_ones_leases_are_taken_over(
    mesh: Mesh, twilio: FakeTwilioVerify, world: World, engine: AsyncEngine, charger: tuple[str, float, float]
) -> None:
    _, lat, lng = charger
    world.replicas = world.started  # two replicas
    cars: list[tuple[Person, FakeVehicle]] = []
    for _ in range(6):
        driver, car = await driver_with_tesla(mesh, twilio, world.fleet, engine)
        car.set_battery(10)
        car.plug_in(lat, lng, power_kw=7.0)
        assert (await world.main.poller.poll(driver.user_id, None, None)).session_active
        cars.append((driver, car))
    await world.follow(20)
    # 1 read at the opening poll, then one per 2-minute interval by one replica or the other, never both.
    assert [world.fleet.calls(car.id, "vehicle_data") for _, car in cars] == [11] * 6

    # Replica A claims the due sessions and dies before reading them (its leases are never released).
    world.fleet.advance(minutes=2)
    claimed = await world.replicas[0].watcher.claim()
    ours = {session.id for driver, _ in cars for session in [(await sessions_of(engine, driver.user_id))[0]]}
    assert ours <= {claim.session_id for claim in claimed}
    world.replicas = world.replicas[1:]  # only B is left
    await world.follow(1)  # the lease (60 s) has run out: B reads them, late by a minute, none skipped
    assert [world.fleet.calls(car.id, "vehicle_data") for _, car in cars] == [12] * 6
    await world.follow(4)
    assert [world.fleet.calls(car.id, "vehicle_data") for _, car in cars] == [14] * 6
    for driver, _ in cars:
        [session] = await sessions_of(engine, driver.user_id)
        assert session["session_end"] is None and session["last_telemetry_at"] >= world.fleet.now - INTERVAL


async def test_a_driver_in_telemetry_mode_is_never_read(
    mesh: Mesh,
    twilio: FakeTwilioVerify,
    world: World,
    engine: AsyncEngine,
    rest: httpx.AsyncClient,
    charger: tuple[str, float, float],
) -> None:
    _, lat, lng = charger
    driver, car = await driver_with_tesla(mesh, twilio, world.fleet, engine)
    cipher = TokenCipher.from_config(SessionsSettings.from_env(Env.development()).vehicle_token_keys.value)
    linking = TeslaLinking(engine, world.tesla, cipher, world.main.tracker, driver_app_url="http://app.test")
    configured = await linking.configure_telemetry(driver.user_id)
    assert configured.telemetry_enabled and configured.vin == car.vin and car.telemetry_streaming
    # The fake's telemetry server forwards the car's records, signed, to the mesh (through Envoy).
    world.fleet.telemetry_url = f"{rest.base_url}/v1/webhooks/tesla/telemetry"
    world.fleet.telemetry_secret = TELEMETRY_SECRET
    world.fleet.reset_calls()
    car.plug_in(lat, lng, power_kw=11.0)

    def forwarded() -> None:
        assert world.fleet.telemetry_deliveries, "the fake has forwarded no telemetry yet"

    await eventually(forwarded)
    [delivered] = world.fleet.telemetry_deliveries
    assert delivered.status_code == 200 and delivered.json()["action"] == "INGEST_ACTION_CREATED", delivered.text
    answer = await world.main.poller.poll(driver.user_id, None, None)
    assert answer.telemetry_mode and answer.session_active
    # The session is due for the watcher all along (its pushes are stamped with the wall clock, a day behind the
    # watcher's: the stale cleanup of that clock is not run here).
    skipped = 0
    for _ in range(10):
        world.fleet.advance(minutes=1)
        skipped += (await world.main.watcher.watch_round()).outcomes[ReadOutcome.TELEMETRY]
    assert skipped >= 5  # claimed every interval, and let be
    assert world.fleet.calls(car.id) == 0
    [session] = await sessions_of(engine, driver.user_id)
    assert session["source"] == pb.SESSION_SOURCE_TESLA_TELEMETRY and session["session_end"] is None
