"""Tables of the sessions schema (created by migrations/versions). The outbox is here from the start because
every cross-service effect of this service goes through it; the chargers catalog is the second table."""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.outbox import outbox_table
from services.common.sweeps import expired_batch

metadata = sa.MetaData()
outbox = outbox_table(metadata)


class Point(sa.types.UserDefinedType[Any]):
    """PostgreSQL's geometric `point` (x = longitude, y = latitude here). Only ever written by the database."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "POINT"


chargers = sa.Table(
    "chargers",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("external_id", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("lat", sa.Float(53), nullable=False),
    sa.Column("lng", sa.Float(53), nullable=False),
    sa.Column("network_name", sa.Text, nullable=False, server_default=""),
    sa.Column("power_kw", sa.Float(53)),
    sa.Column("num_evse", sa.Integer),
    sa.Column("connector_types", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("pricing_per_kwh_cents", sa.Integer),
    sa.Column("address", sa.Text, nullable=False, server_default=""),
    sa.Column("city", sa.Text, nullable=False, server_default=""),
    sa.Column("state", sa.Text, nullable=False, server_default=""),
    sa.Column("zone_id", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.Text, nullable=False, server_default="unknown"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("geo_point", Point, sa.Computed("point(lng, lat)", persisted=True), nullable=False),
    sa.Column(
        "search",
        pg.TSVECTOR,
        sa.Computed(
            "to_tsvector('simple'::regconfig, name || ' ' || network_name || ' ' || address || ' ' || city)",
            persisted=True,
        ),
        nullable=False,
    ),
    sa.UniqueConstraint("source", "external_id", name="chargers_source_external_id_unique"),
)

vehicle_connections = sa.Table(
    "vehicle_connections",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("driver_id", sa.Text, nullable=False),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("account_id", sa.Text, nullable=False, server_default=""),
    sa.Column("vehicle_id", sa.Text),
    sa.Column("vin", sa.Text),
    sa.Column("vehicles", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("access_token", sa.LargeBinary, nullable=False),
    sa.Column("refresh_token", sa.LargeBinary, nullable=False),
    sa.Column("access_expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("telemetry_enabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

oauth_states = sa.Table(
    "oauth_states",
    metadata,
    sa.Column("state", sa.Text, primary_key=True),
    sa.Column("driver_id", sa.Text, nullable=False),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("code_verifier", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True)),
)


async def delete_expired_oauth_states(engine: AsyncEngine, before: datetime.datetime, limit: int) -> int:
    """Deletes up to `limit` consent and sign-in states that expired before `before`; answers how many.
    The sweep's batch (services/common/sweeps.py)."""
    batch = expired_batch(oauth_states.c.state, oauth_states.c.expires_at, before, limit)
    async with engine.begin() as conn:
        return (await conn.execute(batch)).rowcount


def _session_columns() -> list[sa.Column[Any]]:
    """The columns of a charging session (the live table and its archive)."""
    return [
        sa.Column("id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("driver_id", sa.Text, nullable=False),
        sa.Column("vehicle_id", sa.Text, nullable=False),
        sa.Column("source", sa.SmallInteger, nullable=False),
        sa.Column("session_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("session_end", sa.DateTime(timezone=True)),
        sa.Column("duration_minutes", sa.Integer),
        sa.Column("charger_id", sa.Text, nullable=False, server_default=""),
        sa.Column("charger_name", sa.Text, nullable=False, server_default=""),
        sa.Column("charger_network", sa.Text, nullable=False, server_default=""),
        sa.Column("zone_id", sa.Text, nullable=False, server_default=""),
        sa.Column("connector_type", sa.Text, nullable=False, server_default=""),
        sa.Column("power_kw", sa.Float(53)),
        sa.Column("max_power_kw", sa.Float(53)),
        sa.Column("kwh_delivered", sa.Float(53)),
        sa.Column("verified", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("lat", sa.Float(53)),
        sa.Column("lng", sa.Float(53)),
        sa.Column("battery_start_pct", sa.SmallInteger),
        sa.Column("battery_end_pct", sa.SmallInteger),
        sa.Column("quality_score", sa.SmallInteger),
        sa.Column("ended_reason", sa.SmallInteger),
        sa.Column("location_trail", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("last_telemetry_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_sequence", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    ]


# Partitioned by month of session_start (migration 0004): the primary key has to contain the partition key, so it
# is (id, session_start); ids stay unique (random UUIDs made here, session_start never changes). Every update the
# service makes names session_start too, which prunes it to one partition. One active session per driver and
# vehicle is the primary key of charging_sessions_active, kept by triggers in the same transaction.
charging_sessions = sa.Table(
    "charging_sessions",
    metadata,
    *_session_columns(),
    sa.PrimaryKeyConstraint("id", "session_start", name="charging_sessions_pkey"),
    postgresql_partition_by="RANGE (session_start)",
)

# (driver_id, vehicle_id) → its active session. Written only by the triggers of charging_sessions.
charging_sessions_active = sa.Table(
    "charging_sessions_active",
    metadata,
    sa.Column("driver_id", sa.Text, nullable=False),
    sa.Column("vehicle_id", sa.Text, nullable=False),
    sa.Column("session_id", pg.UUID(as_uuid=True), nullable=False, unique=True),
    sa.Column("session_start", sa.DateTime(timezone=True), nullable=False),
    # The session watcher's schedule and lease (migration 0005, services/sessions/watching.py).
    sa.Column("watch_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("watch_lease", pg.UUID(as_uuid=True)),
    sa.PrimaryKeyConstraint("driver_id", "vehicle_id", name="charging_sessions_one_active"),
    sa.ForeignKeyConstraint(
        ["session_id", "session_start"],
        ["charging_sessions.id", "charging_sessions.session_start"],
        name="charging_sessions_active_session_fkey",
        onupdate="CASCADE",
        ondelete="CASCADE",
    ),
    sa.Index("charging_sessions_active_watch_at", "watch_at"),
)

# The sessions of the partitions the retention job dropped (services/sessions/retention.py).
charging_sessions_archive = sa.Table(
    "charging_sessions_archive",
    metadata,
    *_session_columns(),
    sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.PrimaryKeyConstraint("id", name="charging_sessions_archive_pkey"),
)

ev_codes = sa.Table(
    "ev_codes",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("code", sa.Text, nullable=False, unique=True),
    sa.Column("driver_id", sa.Text, nullable=False),
    sa.Column("merchant_place_id", sa.Text, nullable=False, server_default=""),
    sa.Column("merchant_name", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("vehicle_id", sa.Text, nullable=False, server_default=""),
    sa.Column("battery_level", sa.SmallInteger),
    sa.Column("charge_rate_kw", sa.Float(53)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("redeemed_at", sa.DateTime(timezone=True)),
)


# --- a driver's charging sessions, as the app reads them (GetActiveSession, ListChargingSessions, …) -------------


async def active_or_last_ended(
    engine: AsyncEngine, driver_id: str, ended_since: datetime.datetime
) -> tuple[sa.RowMapping | None, sa.RowMapping | None]:
    """(the driver's active session, None), else (None, the session that ended last if it ended since
    `ended_since`): the app's toast for a session that just ended."""
    sessions = charging_sessions
    async with engine.connect() as conn:
        active = (
            (
                await conn.execute(
                    sa.select(sessions)
                    .where(sessions.c.driver_id == driver_id, sessions.c.session_end.is_(None))
                    .order_by(sessions.c.session_start.desc())
                    .limit(1)
                )
            )
            .mappings()
            .first()
        )
        if active is not None:
            return active, None
        recent = (
            (
                await conn.execute(
                    sa.select(sessions)
                    .where(sessions.c.driver_id == driver_id, sessions.c.session_end >= ended_since)
                    .order_by(sessions.c.session_end.desc())
                    .limit(1)
                )
            )
            .mappings()
            .first()
        )
    return None, recent


async def driver_sessions(engine: AsyncEngine, driver_id: str, *, offset: int, limit: int) -> list[sa.RowMapping]:
    """A page of the driver's sessions, latest started first."""
    sessions = charging_sessions
    async with engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    sa.select(sessions)
                    .where(sessions.c.driver_id == driver_id)
                    .order_by(sessions.c.session_start.desc(), sessions.c.id)
                    .offset(offset)
                    .limit(limit)
                )
            )
            .mappings()
            .all()
        )


async def session_by_id(engine: AsyncEngine, session_id: uuid.UUID) -> sa.RowMapping | None:
    """Any driver's session with this id (the caller checks whose it is)."""
    async with engine.connect() as conn:
        return (
            (await conn.execute(sa.select(charging_sessions).where(charging_sessions.c.id == session_id)))
            .mappings()
            .first()
        )


# --- the session watcher's schedule (services/sessions/watching.py) ---------------------------------------------


@dataclasses.dataclass(frozen=True)
class WatchClaim:
    """An active session one replica has leased for a read."""

    driver_id: str
    vehicle_id: str
    session_id: uuid.UUID
    lease: uuid.UUID
    lease_until: datetime.datetime


async def schedule_watch(conn: AsyncConnection, driver_id: str, vehicle_id: str, at: datetime.datetime) -> None:
    """The vehicle's active session is next due for a watcher read at `at`."""
    await conn.execute(
        sa.update(charging_sessions_active)
        .where(charging_sessions_active.c.driver_id == driver_id, charging_sessions_active.c.vehicle_id == vehicle_id)
        .values(watch_at=at)
    )


async def oldest_due_watch(conn: AsyncConnection, now: datetime.datetime) -> datetime.datetime | None:
    """When the session due longest ago fell due (None when none is due): one index lookup
    (charging_sessions_active_watch_at)."""
    due_at = charging_sessions_active.c.watch_at
    oldest: datetime.datetime | None = (
        await conn.execute(sa.select(sa.func.min(due_at)).where(due_at <= now))
    ).scalar()
    return oldest


async def claim_due_watches(
    conn: AsyncConnection, now: datetime.datetime, lease_until: datetime.datetime, limit: int
) -> list[WatchClaim]:
    """Leases up to `limit` sessions due at `now`, oldest due first, until `lease_until`: one statement, rows
    another replica is claiming right now skipped (FOR UPDATE SKIP LOCKED), so no session is leased twice; a
    lease that is never released falls due again at its end."""
    lease = uuid.uuid4()
    due = (
        sa.select(charging_sessions_active.c.driver_id, charging_sessions_active.c.vehicle_id)
        .where(charging_sessions_active.c.watch_at <= now)
        .order_by(charging_sessions_active.c.watch_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    claimed = (
        await conn.execute(
            sa.update(charging_sessions_active)
            .where(
                charging_sessions_active.c.driver_id == due.c.driver_id,
                charging_sessions_active.c.vehicle_id == due.c.vehicle_id,
            )
            .values(watch_at=lease_until, watch_lease=lease)
            .returning(
                charging_sessions_active.c.driver_id,
                charging_sessions_active.c.vehicle_id,
                charging_sessions_active.c.session_id,
            )
        )
    ).all()
    return [WatchClaim(row.driver_id, row.vehicle_id, row.session_id, lease, lease_until) for row in claimed]


async def release_watch(conn: AsyncConnection, claim: WatchClaim, next_at: datetime.datetime) -> None:
    """The leased read is done: next due at `next_at`, unless a reading applied meanwhile rescheduled it (poll,
    push, or this very read). A row leased again since (this lease ran out) is left to its new holder."""
    await conn.execute(
        sa.update(charging_sessions_active)
        .where(
            charging_sessions_active.c.driver_id == claim.driver_id,
            charging_sessions_active.c.vehicle_id == claim.vehicle_id,
            charging_sessions_active.c.watch_lease == claim.lease,
        )
        .values(
            watch_at=sa.case(
                (charging_sessions_active.c.watch_at == claim.lease_until, next_at),
                else_=charging_sessions_active.c.watch_at,
            ),
            watch_lease=None,
        )
    )
