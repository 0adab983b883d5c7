"""The charging-session state machine over the database: every vehicle reading (poll, Fleet Telemetry, Smartcar)
and every other way a session ends (by hand, stale cleanup) goes through here, so the rules hold whatever the
path or the replica.

Concurrency: each change takes a transaction-level advisory lock on (driver, vehicle) first, so two readings of
the same car are applied one after the other; the database backs it up (one active session per driver and vehicle,
whatever happens): `charging_sessions_one_active`, the primary key of charging_sessions_active, which triggers keep
in the same transaction (the table is partitioned by month, so a unique index could not say it).

Layout: charging_sessions is partitioned by month of session_start (migration 0004). A row is changed by (id,
session_start), as read under the vehicle's lock in the same transaction, which prunes the statement to the row's
partition (a lookup by id alone probes each partition's primary-key index). Sessions older than the retention are
in charging_sessions_archive (services/sessions/retention.py).

Hand-off: ending a session writes an outbox row in the same transaction, keyed by session id and end sequence;
the relay delivers it to incentives.EvaluateSession, which is idempotent on that key — exactly once.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg
import sqlalchemy as sa
from google.protobuf import json_format
from nerava.incentives.v1 import incentives_pb2
from nerava.sessions.v1 import sessions_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.geo import great_circle_m
from services.common.outbox import OutboxRelay, enqueue
from services.common.timestamps import timestamp
from services.sessions import chargers, domain, store

SESSION_ENDED_TOPIC = "session.ended"
Row = sa.RowMapping | Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Applied:
    """What a reading did: the action, and the session after it (for END, the ended session)."""

    action: domain.Action
    session: Row | None


def _trail(
    row_trail: list[dict[str, Any]],
    lat: float | None,
    lng: float | None,
    at: datetime.datetime,
) -> list[dict[str, Any]]:
    """The trail with the car's point added, the newest 120 kept (the phone's points: record_device_location)."""
    if lat is None or lng is None:
        return row_trail
    point: dict[str, Any] = {"lat": lat, "lng": lng, "ts": at.isoformat()}
    return [*row_trail, point][-domain.TRAIL_MAX_POINTS :]


async def _plausibility(conn: AsyncConnection, row: Row) -> domain.Plausibility:
    """What the plausibility penalties need: the highest power seen, and the matched charger's rating and how far
    the car's own positions (not the phone's) strayed from it."""
    charger = await chargers.get_charger(conn, row["charger_id"]) if row["charger_id"] else None
    if charger is None:
        return domain.Plausibility(max_power_kw=row["max_power_kw"])
    positions = [(p["lat"], p["lng"]) for p in row["location_trail"] if not p.get("device")]
    if row["lat"] is not None and row["lng"] is not None:
        positions.append((row["lat"], row["lng"]))
    farthest = max((great_circle_m(lat, lng, charger.lat, charger.lng) for lat, lng in positions), default=None)
    return domain.Plausibility(
        max_power_kw=row["max_power_kw"], charger_rating_kw=charger.power_kw, farthest_from_charger_m=farthest
    )


# The session of a still-charging car updated (what `_update` does for a placed session) and its next watcher read
# scheduled, in one statement; $1 driver, $2 vehicle, $3 next watch, $4 reading time, $5 kWh, $6 battery %, $7 kW,
# $8 connector, $9 the trail point (a one-element JSON array) or NULL, $10 the trail's length cap. Only the columns
# the poll's answer needs are returned.
_UPDATE_CHARGING = """
WITH scheduled AS (
    UPDATE charging_sessions_active SET watch_at = $3
    WHERE driver_id = $1 AND vehicle_id = $2
    RETURNING session_id, session_start
)
UPDATE charging_sessions AS session SET
    last_telemetry_at = $4,
    updated_at = now(),
    kwh_delivered = coalesce($5::float8, session.kwh_delivered),
    battery_end_pct = coalesce($6::int2, session.battery_end_pct),
    power_kw = coalesce($7::float8, session.power_kw),
    max_power_kw = greatest(session.max_power_kw, $7::float8),
    connector_type = CASE WHEN session.connector_type = '' THEN $8::text ELSE session.connector_type END,
    location_trail = CASE
        WHEN $9::jsonb IS NULL THEN session.location_trail
        WHEN jsonb_array_length(session.location_trail) >= $10::int4 THEN (session.location_trail - 0) || $9::jsonb
        ELSE session.location_trail || $9::jsonb
    END
FROM scheduled
WHERE session.id = scheduled.session_id AND session.session_start = scheduled.session_start
    AND session.session_end IS NULL AND session.lat IS NOT NULL
RETURNING session.id, session.driver_id, session.session_start, session.kwh_delivered
"""

# The driver's open session for the poll's answer from the database; $1 driver.
_ACTIVE_SESSION = """
SELECT id, session_start, kwh_delivered FROM charging_sessions WHERE driver_id = $1 AND session_end IS NULL LIMIT 1
"""

# The phone's position appended to the trail of each of the driver's open sessions (the newest $3 points kept); $1
# driver, $2 the point (a one-element JSON array). last_telemetry_at stays: a phone position is not vehicle data.
_RECORD_DEVICE_LOCATION = """
UPDATE charging_sessions SET location_trail = CASE
        WHEN jsonb_array_length(location_trail) >= $3::int4 THEN (location_trail - 0) || $2::jsonb
        ELSE location_trail || $2::jsonb
    END
WHERE driver_id = $1 AND session_end IS NULL
"""


def _this(row: Row) -> tuple[sa.ColumnElement[bool], sa.ColumnElement[bool]]:
    """The row's own key: its partition key with its id, so the statement touches (and locks) one partition."""
    return store.charging_sessions.c.id == row["id"], store.charging_sessions.c.session_start == row["session_start"]


async def _completed_sessions(conn: AsyncConnection, driver_id: str) -> int:
    """The driver's ended sessions, the archived ones included (incentives' session-count rules count them all)."""
    archive = store.charging_sessions_archive
    live = sa.select(sa.func.count()).where(
        store.charging_sessions.c.driver_id == driver_id, store.charging_sessions.c.session_end.is_not(None)
    )
    archived = sa.select(sa.func.count()).where(archive.c.driver_id == driver_id, archive.c.session_end.is_not(None))
    count: int = (await conn.execute(sa.select(live.scalar_subquery() + archived.scalar_subquery()))).scalar_one()
    return count


async def _lock_vehicle(conn: AsyncConnection, driver_id: str, vehicle_id: str) -> None:
    key = sa.func.hashtextextended(f"vehicle:{driver_id}:{vehicle_id}", 0)
    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
    # Then the vehicle's charging_sessions_active row, before any session row: `_UPDATE_CHARGING` (which takes no
    # advisory lock) locks the active row first and the session second, and a locked path that went the other way
    # (the session's UPDATE, then the watch schedule or an end's trigger on the active row) could deadlock with it.
    active = store.charging_sessions_active
    await conn.execute(
        sa.select(active.c.session_id)
        .where(active.c.driver_id == driver_id, active.c.vehicle_id == vehicle_id)
        .with_for_update()
    )


class SessionTracker:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        stale_after: datetime.timedelta = domain.STALE_AFTER,
        watch_interval: datetime.timedelta = domain.WATCH_INTERVAL,
        pool: asyncpg.Pool | None = None,
        relay: OutboxRelay | None = None,
    ) -> None:
        self._engine = engine
        self._pool = pool
        self._clock = clock
        self._stale_after = stale_after
        self._watch_interval = watch_interval
        # Woken when an ended session's outbox row is committed, so incentives hears of it at once.
        self._relay = relay

    # --- readings ------------------------------------------------------------------------------------------

    async def apply(
        self, driver_id: str, vehicle_id: str, source: int, reading: domain.Telemetry, *, pushed: bool = False
    ) -> Applied:
        """Opens, reopens, updates or ends the vehicle's session for one reading: read from the vehicle API (an
        end is UNPLUGGED) or `pushed` by the provider (TELEMETRY_DISCONNECTED)."""
        if reading.charging:
            # The common case — still charging, session open — is one statement (the hot path of every read).
            updated = await self._update_charging(driver_id, vehicle_id, reading)
            if updated is not None:
                return Applied(domain.Action.UPDATE, updated)
        async with self._engine.begin() as conn:
            await _lock_vehicle(conn, driver_id, vehicle_id)
            active = (
                (
                    await conn.execute(
                        sa.select(store.charging_sessions).where(
                            store.charging_sessions.c.driver_id == driver_id,
                            store.charging_sessions.c.vehicle_id == vehicle_id,
                            store.charging_sessions.c.session_end.is_(None),
                        )
                    )
                )
                .mappings()
                .first()
            )
            recent = None
            if reading.charging and active is None:
                recent = (
                    (
                        await conn.execute(
                            sa.select(store.charging_sessions)
                            .where(
                                store.charging_sessions.c.driver_id == driver_id,
                                store.charging_sessions.c.vehicle_id == vehicle_id,
                                store.charging_sessions.c.session_end.is_not(None),
                            )
                            .order_by(store.charging_sessions.c.session_end.desc())
                            .limit(1)
                        )
                    )
                    .mappings()
                    .first()
                )
            action = domain.next_action(
                charging=reading.charging,
                has_active=active is not None,
                recent_end=None
                if recent is None
                else domain.RecentEnd(str(recent["id"]), recent["session_end"], _reason_name(recent["ended_reason"])),
                now=reading.at,
            )
            if action is domain.Action.OPEN:
                session = await self._open(conn, driver_id, vehicle_id, source, reading)
                await self._schedule_watch(conn, driver_id, vehicle_id, reading.at)
            elif action is domain.Action.REOPEN:
                assert recent is not None
                session = await self._update(conn, recent, reading, reopen=True)
                await self._schedule_watch(conn, driver_id, vehicle_id, reading.at)
            elif action is domain.Action.UPDATE:
                assert active is not None
                session = await self._update(conn, active, reading, reopen=False)
                await self._schedule_watch(conn, driver_id, vehicle_id, reading.at)
            elif action is domain.Action.END:
                assert active is not None
                reason = pb.END_REASON_TELEMETRY_DISCONNECTED if pushed else pb.END_REASON_UNPLUGGED
                session = await self._end(conn, active, reason, reading.at, reading)
            else:
                session = None
        if action is domain.Action.END:
            self._wake_relay()
        return Applied(action, session)

    async def _update_charging(self, driver_id: str, vehicle_id: str, reading: domain.Telemetry) -> Row | None:
        """A charging reading of a car whose session is open (and already placed): the session updated and its
        next watcher read scheduled in one statement, one round trip, without the vehicle's advisory lock — the
        row lock orders it against an end of the same session (the end wins: `session_end IS NULL` no longer
        holds, and the reading takes the locked path). None when that is not the case (no open session, or its
        position and charger still to backfill): the caller takes the locked path.

        Raw asyncpg on purpose (ARCHITECTURE §10, measured by bench-watch): this runs for nearly every vehicle read,
        and through SQLAlchemy its BEGIN, compile and result processing cost more than the statement itself."""
        point = None
        if reading.lat is not None and reading.lng is not None:
            point = json.dumps([{"lat": reading.lat, "lng": reading.lng, "ts": reading.at.isoformat()}])
        arguments = (
            driver_id,
            vehicle_id,
            reading.at + self._watch_interval,
            reading.at,
            reading.kwh_added,
            reading.battery_pct,
            reading.power_kw,
            reading.connector,
            point,
            domain.TRAIL_MAX_POINTS,
        )
        record = await self._fetchrow(_UPDATE_CHARGING, *arguments)
        return None if record is None else dict(record)

    async def _fetchrow(self, statement: str, *arguments: Any) -> asyncpg.Record | None:
        """One statement of the read path on asyncpg directly (its own pool; else a connection of the engine's),
        prepared once per connection by asyncpg's statement cache."""
        if self._pool is not None:
            async with self._pool.acquire() as connection:
                return await connection.fetchrow(statement, *arguments)
        async with self._engine.connect() as conn:
            raw = await conn.get_raw_connection()
            record: asyncpg.Record | None = await raw.driver_connection.fetchrow(statement, *arguments)  # type: ignore[union-attr]
            return record

    async def active_session(self, driver_id: str) -> Row | None:
        """The driver's open session (any vehicle), with what the poll's answer from the database needs: id,
        session_start, kwh_delivered. Raw asyncpg for the same reason as `_update_charging`: the poll asks it
        whenever it answers from the database (a read in flight elsewhere, a sleeping car, a provider error)."""
        record = await self._fetchrow(_ACTIVE_SESSION, driver_id)
        return None if record is None else dict(record)

    async def update_if_active(self, driver_id: str, vehicle_id: str, reading: domain.Telemetry) -> Applied:
        """A reading that does not say whether the car charges (a telemetry record without its charge state) only
        updates a session already open."""
        async with self._engine.begin() as conn:
            await _lock_vehicle(conn, driver_id, vehicle_id)
            active = (
                (
                    await conn.execute(
                        sa.select(store.charging_sessions).where(
                            store.charging_sessions.c.driver_id == driver_id,
                            store.charging_sessions.c.vehicle_id == vehicle_id,
                            store.charging_sessions.c.session_end.is_(None),
                        )
                    )
                )
                .mappings()
                .first()
            )
            if active is None:
                return Applied(domain.Action.NOTHING, None)
            updated = await self._update(conn, active, reading, reopen=False)
            await self._schedule_watch(conn, driver_id, vehicle_id, reading.at)
            return Applied(domain.Action.UPDATE, updated)

    async def _schedule_watch(
        self, conn: AsyncConnection, driver_id: str, vehicle_id: str, at: datetime.datetime
    ) -> None:
        """Vehicle data just arrived: the watcher reads this session next one interval after it."""
        await store.schedule_watch(conn, driver_id, vehicle_id, at + self._watch_interval)

    async def _open(
        self, conn: AsyncConnection, driver_id: str, vehicle_id: str, source: int, reading: domain.Telemetry
    ) -> Row:
        charger = None
        if reading.lat is not None and reading.lng is not None:
            charger = await chargers.nearest_charger(conn, reading.lat, reading.lng, domain.CHARGER_MATCH_RADIUS_M)
        values = {
            "id": uuid.uuid4(),
            "driver_id": driver_id,
            "vehicle_id": vehicle_id,
            "source": source,
            "session_start": reading.at,
            "charger_id": charger.id if charger else "",
            "charger_name": charger.name if charger else "",
            "charger_network": charger.network_name if charger else "",
            "zone_id": charger.zone_id if charger else "",
            "connector_type": reading.connector,
            "power_kw": reading.power_kw,
            "max_power_kw": reading.power_kw,
            "kwh_delivered": reading.kwh_added,
            "verified": reading.verified,
            "lat": reading.lat,
            "lng": reading.lng,
            "battery_start_pct": reading.battery_pct,
            "battery_end_pct": reading.battery_pct,
            "location_trail": _trail([], reading.lat, reading.lng, reading.at),
            "last_telemetry_at": reading.at,
        }
        row: sa.RowMapping = (
            (await conn.execute(sa.insert(store.charging_sessions).values(**values).returning(store.charging_sessions)))
            .mappings()
            .one()
        )
        return row

    async def _update(self, conn: AsyncConnection, row: Row, reading: domain.Telemetry, *, reopen: bool) -> Row:
        values: dict[str, Any] = {
            "last_telemetry_at": reading.at,
            "updated_at": sa.func.now(),
            "location_trail": _trail(list(row["location_trail"]), reading.lat, reading.lng, reading.at),
        }
        if reading.kwh_added is not None:
            values["kwh_delivered"] = reading.kwh_added
        if reading.battery_pct is not None:
            values["battery_end_pct"] = reading.battery_pct
        if reading.power_kw is not None:
            values["power_kw"] = reading.power_kw
            values["max_power_kw"] = max(reading.power_kw, row["max_power_kw"] or 0.0)
        if reading.connector and not row["connector_type"]:
            values["connector_type"] = reading.connector
        if row["lat"] is None and reading.lat is not None and reading.lng is not None:
            values.update(lat=reading.lat, lng=reading.lng)
            if not row["charger_id"]:
                charger = await chargers.nearest_charger(conn, reading.lat, reading.lng, domain.CHARGER_MATCH_RADIUS_M)
                if charger is not None:
                    values.update(
                        charger_id=charger.id,
                        charger_name=charger.name,
                        charger_network=charger.network_name,
                        zone_id=charger.zone_id,
                    )
        if reopen:
            values.update(session_end=None, duration_minutes=None, ended_reason=None, quality_score=None)
        statement = (
            sa.update(store.charging_sessions).where(*_this(row)).values(**values).returning(store.charging_sessions)
        )
        updated: sa.RowMapping = (await conn.execute(statement)).mappings().one()
        return updated

    # --- ending --------------------------------------------------------------------------------------------

    async def _end(
        self,
        conn: AsyncConnection,
        row: Row,
        reason: int,
        end: datetime.datetime,
        reading: domain.Telemetry | None = None,
    ) -> Row:
        """Ends an active session at `end` and hands it to incentives (outbox, same transaction)."""
        kwh = reading.kwh_added if reading is not None and reading.kwh_added is not None else row["kwh_delivered"]
        battery_end = (
            reading.battery_pct if reading is not None and reading.battery_pct is not None else row["battery_end_pct"]
        )
        end = max(end, row["session_start"])
        minutes = domain.duration_minutes(row["session_start"], end)
        seen = await _plausibility(conn, row)
        ended: sa.RowMapping = (
            (
                await conn.execute(
                    sa.update(store.charging_sessions)
                    .where(*_this(row), store.charging_sessions.c.session_end.is_(None))
                    .values(
                        session_end=end,
                        duration_minutes=minutes,
                        ended_reason=reason,
                        kwh_delivered=kwh,
                        battery_end_pct=battery_end,
                        quality_score=domain.quality_score(
                            minutes,
                            kwh or 0.0,
                            verified=row["verified"],
                            battery_start=row["battery_start_pct"],
                            battery_end=battery_end,
                            seen=seen,
                        ),
                        end_sequence=store.charging_sessions.c.end_sequence + 1,
                        updated_at=sa.func.now(),
                    )
                    .returning(store.charging_sessions)
                )
            )
            .mappings()
            .one()
        )
        completed = await _completed_sessions(conn, ended["driver_id"])
        snapshot = ended_snapshot(ended, completed)
        await enqueue(
            conn,
            store.outbox,
            SESSION_ENDED_TOPIC,
            f"{ended['id']}:{ended['end_sequence']}",
            json_format.MessageToDict(snapshot, preserving_proto_field_name=True),
        )
        return ended

    async def end_by_hand(self, session_id: uuid.UUID, driver_id: str) -> tuple[Row, bool] | None:
        """Ends the driver's session (MANUAL): (session, already_ended), or None when it is not theirs."""
        async with self._engine.begin() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(store.charging_sessions).where(
                            store.charging_sessions.c.id == session_id, store.charging_sessions.c.driver_id == driver_id
                        )
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            await _lock_vehicle(conn, row["driver_id"], row["vehicle_id"])
            row = (
                (
                    await conn.execute(
                        sa.select(store.charging_sessions).where(store.charging_sessions.c.id == session_id)
                    )
                )
                .mappings()
                .one()
            )
            if row["session_end"] is not None:
                return row, True
            ended = await self._end(conn, row, pb.END_REASON_MANUAL, self._clock())
        self._wake_relay()
        return ended, False

    async def end_stale(self, limit: int = 100) -> int:
        """Ends the active sessions without vehicle data for the stale limit (15 min by default; stale_cleanup), at
        their last telemetry — not at the cleanup's time, which would inflate their duration. Returns how many."""
        cutoff = self._clock() - self._stale_after
        async with self._engine.connect() as conn:
            due = (
                await conn.execute(
                    sa.select(
                        store.charging_sessions.c.id,
                        store.charging_sessions.c.driver_id,
                        store.charging_sessions.c.vehicle_id,
                    )
                    .where(
                        store.charging_sessions.c.session_end.is_(None),
                        store.charging_sessions.c.last_telemetry_at <= cutoff,
                    )
                    .order_by(store.charging_sessions.c.last_telemetry_at)
                    .limit(limit)
                )
            ).all()
        ended = 0
        for session_id, driver_id, vehicle_id in due:
            async with self._engine.begin() as conn:
                await _lock_vehicle(conn, driver_id, vehicle_id)
                row = (
                    (
                        await conn.execute(
                            sa.select(store.charging_sessions).where(store.charging_sessions.c.id == session_id)
                        )
                    )
                    .mappings()
                    .one()
                )
                # Re-checked under the lock: a reading may have arrived meanwhile.
                if row["session_end"] is None and row["last_telemetry_at"] <= cutoff:
                    await self._end(conn, row, pb.END_REASON_STALE_CLEANUP, row["last_telemetry_at"])
                    ended += 1
        if ended:
            self._wake_relay()
        return ended

    async def active_session_id(self, driver_id: str) -> str | None:
        """The id of one of the driver's active sessions, or None."""
        async with self._engine.connect() as conn:
            found = (
                await conn.execute(
                    sa.select(store.charging_sessions.c.id)
                    .where(
                        store.charging_sessions.c.driver_id == driver_id,
                        store.charging_sessions.c.session_end.is_(None),
                    )
                    .limit(1)
                )
            ).scalar()
        return None if found is None else str(found)

    async def record_device_location(self, driver_id: str, lat: float, lng: float) -> None:
        """A phone position joins the trail of the driver's active sessions. It is not vehicle data: it does not
        keep a silent session alive (last_telemetry_at stays)."""
        point = {"lat": lat, "lng": lng, "ts": self._clock().isoformat(), "device": True}
        # One statement on asyncpg (the poll's first read of a window sends the phone's position): the point is
        # appended in PostgreSQL, so a reading applied meanwhile keeps its own point.
        await self._fetchrow(_RECORD_DEVICE_LOCATION, driver_id, json.dumps([point]), domain.TRAIL_MAX_POINTS)

    def _wake_relay(self) -> None:
        if self._relay is not None:
            self._relay.wake()


def _reason_name(reason: int | None) -> str:
    names: dict[int, str] = {
        pb.END_REASON_UNPLUGGED: "unplugged",
        pb.END_REASON_MANUAL: "manual",
        pb.END_REASON_STALE_CLEANUP: "stale_cleanup",
        pb.END_REASON_TELEMETRY_DISCONNECTED: "telemetry_disconnected",
    }
    return names.get(reason or 0, "")


def ended_snapshot(row: Row, completed_sessions: int) -> incentives_pb2.EndedSession:
    """What incentives evaluates: the ended session as it was when it ended."""
    snapshot = incentives_pb2.EndedSession(
        session_id=str(row["id"]),
        end_sequence=row["end_sequence"],
        driver_id=row["driver_id"],
        charger_id=row["charger_id"],
        charger_network=row["charger_network"],
        zone_id=row["zone_id"],
        session_start=timestamp(row["session_start"]),
        session_end=timestamp(row["session_end"]),
        duration_minutes=row["duration_minutes"],
        kwh_delivered=row["kwh_delivered"] or 0.0,
        connector_type=row["connector_type"],
        quality_score=row["quality_score"],
        driver_completed_sessions=max(1, completed_sessions),
    )
    if row["lat"] is not None and row["lng"] is not None:
        snapshot.lat, snapshot.lng = row["lat"], row["lng"]
    if row["max_power_kw"] is not None:
        snapshot.max_power_kw = row["max_power_kw"]
    return snapshot
