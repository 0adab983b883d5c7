"""The charging-session state machine against real PostgreSQL: open (charger matched by great-circle distance),
update, end with the hand-off row, reopen, one active session under concurrency, stale cleanup."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from nerava.incentives.v1 import incentives_pb2
from nerava.sessions.v1 import sessions_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from services.sessions import store
from services.sessions.domain import TRAIL_MAX_POINTS, Action, Telemetry
from services.sessions.tracking import SESSION_ENDED_TOPIC, SessionTracker
from tests.sessions.helpers import north_of

UTC = datetime.UTC
T0 = datetime.datetime(2026, 6, 10, 15, 0, tzinfo=UTC)
TESLA = pb.SESSION_SOURCE_TESLA_API


def reading(at: datetime.datetime, *, charging: bool = True, **fields: object) -> Telemetry:
    return Telemetry(at=at, charging=charging, **fields)  # type: ignore[arg-type]


async def outbox_rows(engine: AsyncEngine, session_id: str) -> list[tuple[str, dict[str, Any]]]:
    t = store.outbox
    async with engine.connect() as conn:
        return [
            (row.key, row.payload)
            for row in (
                await conn.execute(
                    sa.select(t.c.key, t.c.payload).where(
                        t.c.topic == SESSION_ENDED_TOPIC, t.c.key.like(f"{session_id}:%")
                    )
                )
            ).all()
        ]


@pytest.mark.parametrize(("metres", "matched"), [(499, True), (501, False)])
async def test_the_charger_is_matched_within_500_m_great_circle(
    engine: AsyncEngine, charger: tuple[str, float, float], metres: int, matched: bool
) -> None:
    charger_id, lat, lng = charger
    at_lat, at_lng = north_of(lat, lng, metres)
    applied = await SessionTracker(engine).apply(str(uuid.uuid4()), "v1", TESLA, reading(T0, lat=at_lat, lng=at_lng))
    assert applied.action is Action.OPEN and applied.session is not None
    assert (applied.session["charger_id"] == charger_id) is matched
    assert (applied.session["charger_network"] == "EVgo") is matched


async def test_updates_keep_the_highest_power_and_ending_hands_the_session_to_incentives(
    engine: AsyncEngine, charger: tuple[str, float, float]
) -> None:
    _, lat, lng = charger
    tracker, driver = SessionTracker(engine), str(uuid.uuid4())
    opened = await tracker.apply(driver, "v1", TESLA, reading(T0, lat=lat, lng=lng, power_kw=150.0, battery_pct=40))
    await tracker.apply(
        driver, "v1", TESLA, reading(T0 + datetime.timedelta(minutes=10), power_kw=90.0, kwh_added=20.0)
    )
    end = T0 + datetime.timedelta(minutes=32, seconds=30)
    ended = await tracker.apply(driver, "v1", TESLA, reading(end, charging=False, kwh_added=31.5, battery_pct=72))
    assert ended.action is Action.END and ended.session is not None
    row = ended.session
    assert (row["max_power_kw"], row["power_kw"]) == (150.0, 90.0)
    assert (row["duration_minutes"], row["end_sequence"], row["ended_reason"]) == (32, 1, pb.END_REASON_UNPLUGGED)
    assert row["quality_score"] == 100  # 50 + 20 (15-240 min) + 15 (kWh > 1) + 10 verified + 5 battery rose
    assert opened.session is not None and row["id"] == opened.session["id"]
    [(key, payload)] = await outbox_rows(engine, str(row["id"]))
    assert key == f"{row['id']}:1"
    snapshot = incentives_pb2.EndedSession(
        **{k: v for k, v in payload.items() if k not in ("session_start", "session_end")}
    )
    assert snapshot.driver_id == driver and snapshot.duration_minutes == 32 and snapshot.max_power_kw == 150.0
    assert snapshot.driver_completed_sessions >= 1
    # Not charging and nothing open: nothing to do.
    assert (await tracker.apply(driver, "v1", TESLA, reading(end, charging=False))).action is Action.NOTHING


async def test_twenty_concurrent_readings_open_one_session(
    engine: AsyncEngine, charger: tuple[str, float, float]
) -> None:
    _, lat, lng = charger
    tracker, driver = SessionTracker(engine), str(uuid.uuid4())
    results = await asyncio.gather(
        *(tracker.apply(driver, "v1", TESLA, reading(T0, lat=lat, lng=lng)) for _ in range(20))
    )
    assert sorted(r.action.value for r in results).count("open") == 1
    assert len({r.session["id"] for r in results if r.session is not None}) == 1


async def test_a_second_genuine_session_in_the_same_hour_is_a_new_session(
    engine: AsyncEngine, charger: tuple[str, float, float]
) -> None:
    _, lat, lng = charger
    tracker, driver = SessionTracker(engine), str(uuid.uuid4())
    first = await tracker.apply(driver, "v1", TESLA, reading(T0, lat=lat, lng=lng))
    await tracker.apply(driver, "v1", TESLA, reading(T0 + datetime.timedelta(minutes=20), charging=False))
    second = await tracker.apply(driver, "v1", TESLA, reading(T0 + datetime.timedelta(minutes=25), lat=lat, lng=lng))
    assert second.action is Action.OPEN  # ended by unplugging: not reopened
    assert first.session is not None and second.session is not None and first.session["id"] != second.session["id"]


async def test_stale_cleanup_ends_at_the_last_telemetry_and_phone_pings_do_not_keep_a_session_alive(
    engine: AsyncEngine, charger: tuple[str, float, float]
) -> None:
    _, lat, lng = charger
    driver = str(uuid.uuid4())
    now = T0 + datetime.timedelta(minutes=40)
    tracker = SessionTracker(engine, clock=lambda: now)
    opened = await tracker.apply(driver, "v1", TESLA, reading(T0, lat=lat, lng=lng))
    assert opened.session is not None
    await tracker.apply(driver, "v1", TESLA, reading(T0 + datetime.timedelta(minutes=20), kwh_added=12.0))
    await tracker.record_device_location(driver, lat, lng)  # a phone ping at 40 min: not vehicle data
    assert await tracker.end_stale() >= 1
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    sa.select(store.charging_sessions).where(store.charging_sessions.c.id == opened.session["id"])
                )
            )
            .mappings()
            .one()
        )  # type: ignore[index]
    assert row["session_end"] == T0 + datetime.timedelta(minutes=20)
    assert (row["duration_minutes"], row["ended_reason"]) == (20, pb.END_REASON_STALE_CLEANUP)
    assert len(row["location_trail"]) == 2  # the vehicle's start point and the phone's ping
    # The car charges again 10 minutes after the stale end: the same session reopens, and its next end is #2.
    reopened = await tracker.apply(driver, "v1", TESLA, reading(T0 + datetime.timedelta(minutes=30), lat=lat, lng=lng))
    assert reopened.action is Action.REOPEN and reopened.session is not None
    assert reopened.session["id"] == row["id"] and reopened.session["session_end"] is None
    again = await tracker.apply(driver, "v1", TESLA, reading(T0 + datetime.timedelta(minutes=45), charging=False))
    assert again.session is not None and again.session["end_sequence"] == 2
    assert sorted(key for key, _ in await outbox_rows(engine, str(row["id"]))) == [f"{row['id']}:1", f"{row['id']}:2"]


async def test_ending_by_hand_is_idempotent_and_only_for_the_owner(
    engine: AsyncEngine, charger: tuple[str, float, float]
) -> None:
    _, lat, lng = charger
    tracker, driver = SessionTracker(engine, clock=lambda: T0 + datetime.timedelta(minutes=18)), str(uuid.uuid4())
    opened = await tracker.apply(driver, "v1", TESLA, reading(T0, lat=lat, lng=lng))
    assert opened.session is not None
    assert await tracker.end_by_hand(opened.session["id"], str(uuid.uuid4())) is None
    first = await tracker.end_by_hand(opened.session["id"], driver)
    assert first is not None and first[1] is False and first[0]["ended_reason"] == pb.END_REASON_MANUAL
    second = await tracker.end_by_hand(opened.session["id"], driver)
    assert second is not None and second[1] is True
    assert len(await outbox_rows(engine, str(opened.session["id"]))) == 1


async def test_phone_positions_join_the_open_sessions_trail_marked_as_the_phones_and_capped(
    engine: AsyncEngine, charger: tuple[str, float, float]
) -> None:
    _, lat, lng = charger
    driver = str(uuid.uuid4())
    tracker = SessionTracker(engine, clock=lambda: T0 + datetime.timedelta(minutes=5))
    assert await tracker.active_session(driver) is None
    opened = await tracker.apply(driver, "v1", TESLA, reading(T0, lat=lat, lng=lng, kwh_added=1.5))
    assert opened.session is not None
    active = await tracker.active_session(driver)
    assert active is not None
    assert (active["id"], active["session_start"], active["kwh_delivered"]) == (opened.session["id"], T0, 1.5)
    for _ in range(TRAIL_MAX_POINTS):
        await tracker.record_device_location(driver, lat + 0.001, lng)
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    sa.select(store.charging_sessions).where(store.charging_sessions.c.id == opened.session["id"])
                )
            )
            .mappings()
            .one()
        )
    trail = row["location_trail"]
    # The car's own start point fell off the front: the newest TRAIL_MAX_POINTS are kept, all of them the phone's.
    assert len(trail) == TRAIL_MAX_POINTS
    assert all(point["device"] is True and point["lat"] == lat + 0.001 for point in trail)
    assert trail[-1]["ts"] == (T0 + datetime.timedelta(minutes=5)).isoformat()
    assert row["last_telemetry_at"] == T0  # a phone position is not vehicle data
