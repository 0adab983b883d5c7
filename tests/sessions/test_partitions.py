"""charging_sessions partitioned by month (migration 0004) and its maintenance (services/sessions/retention.py):
the layout, where a session lands, one active session per driver and vehicle still enforced by the database
across partitions and under concurrency, partitions ahead, the retention (archive, then detach and drop; twice
and on two replicas at once), and the migration's downgrade and upgrade on a schema of the test's own."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from nerava.sessions.v1 import sessions_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import migrations
from services.common.db import create_engine
from services.sessions import store
from services.sessions.domain import Action, Telemetry
from services.sessions.retention import SessionPartitions, month_start
from services.sessions.tracking import SESSION_ENDED_TOPIC, SessionTracker
from tests.support.eventually import eventually
from tests.support.locks import lock_waits

UTC = datetime.UTC
TESLA = pb.SESSION_SOURCE_TESLA_API
S = store.charging_sessions
ARCHIVE = store.charging_sessions_archive
ACTIVE = store.charging_sessions_active
NOW = datetime.datetime.now(UTC)


def partition_name(at: datetime.datetime) -> str:
    return f"charging_sessions_p{at.astimezone(UTC):%Y%m}"


def reading(at: datetime.datetime, *, charging: bool = True, **fields: object) -> Telemetry:
    return Telemetry(at=at, charging=charging, **fields)  # type: ignore[arg-type]


def session_values(
    driver: str, start: datetime.datetime, *, minutes: int | None = None, vehicle: str = "v1"
) -> dict[str, Any]:
    """A row for charging_sessions: ended after `minutes`, or active without."""
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "driver_id": driver,
        "vehicle_id": vehicle,
        "source": TESLA,
        "session_start": start,
        "last_telemetry_at": start,
        "session_end": None,
        "duration_minutes": None,
        "ended_reason": None,
    }
    if minutes is not None:
        end = start + datetime.timedelta(minutes=minutes)
        values |= {"session_end": end, "duration_minutes": minutes, "ended_reason": pb.END_REASON_UNPLUGGED}
    return values


def _migrate(database_url: str, schema: str, action: str, revision: str) -> None:
    config = migrations.alembic_config("sessions", database_url)
    config.attributes["schema"] = schema
    getattr(command, action)(config, revision)


async def migrate(database_url: str, schema: str, action: str, revision: str) -> None:
    await asyncio.to_thread(_migrate, database_url, schema, action, revision)


@contextlib.asynccontextmanager
async def own_schema(database_url: str, revision: str = "head") -> AsyncIterator[tuple[str, AsyncEngine]]:
    """A sessions schema of the test's own, migrated to `revision`, and an engine on it; dropped afterwards. For
    what would disturb the other tests (dropping partitions, a clock months away, migrating down)."""
    schema = f"sessions_{uuid.uuid4().hex[:10]}"
    await migrate(database_url, schema, "upgrade", revision)
    engine = create_engine(database_url, schema)
    try:
        yield schema, engine
    finally:
        async with engine.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        await engine.dispose()


@pytest.fixture
async def scratch(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with own_schema(database_url) as (_, engine):
        yield engine


async def partitions_of(conn: AsyncConnection) -> dict[str, str]:
    """name → bound expression of every partition of charging_sessions."""
    await conn.execute(sa.text("SET LOCAL TimeZone = 'UTC'"))
    rows = await conn.execute(
        sa.text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, 0) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'charging_sessions'::regclass"
        )
    )
    return {name: bound for name, bound in rows.all()}


async def partition_of(engine: AsyncEngine, session_id: uuid.UUID) -> str:
    async with engine.connect() as conn:
        name: str = (
            await conn.execute(
                sa.select(sa.text("tableoid::regclass::text")).select_from(S).where(S.c.id == session_id)
            )
        ).scalar_one()
    return name


async def insert_sessions(engine: AsyncEngine, rows: list[dict[str, Any]]) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.insert(S), rows)


async def table_exists(engine: AsyncEngine, name: str) -> bool:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.to_regclass(name)))).scalar() is not None


# --- layout --------------------------------------------------------------------------------------------------


async def test_charging_sessions_is_partitioned_by_month_of_its_start_with_partitions_ahead(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        strategy, key = (
            await conn.execute(
                sa.text(
                    "SELECT p.partstrat::text, a.attname FROM pg_partitioned_table p "
                    "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] "
                    "WHERE p.partrelid = 'charging_sessions'::regclass"
                )
            )
        ).one()
        partitions = await partitions_of(conn)
    assert (strategy, key) == ("r", "session_start")
    assert partitions["charging_sessions_default"] == "DEFAULT"
    # The month before, this month and the three after (the migration and the service's worker make them).
    for months in range(-1, 4):
        start, end = month_start(NOW, months), month_start(NOW, months + 1)
        assert partitions[partition_name(start)] == (
            f"FOR VALUES FROM ('{start:%Y-%m-%d} 00:00:00+00') TO ('{end:%Y-%m-%d} 00:00:00+00')"
        )


async def test_a_session_lands_in_the_partition_of_its_month_and_one_without_partition_in_the_default(
    scratch: AsyncEngine,
) -> None:
    tracker, driver = SessionTracker(scratch), str(uuid.uuid4())
    now = await tracker.apply(driver, "v1", TESLA, reading(NOW))
    far = await tracker.apply(driver, "v2", TESLA, reading(datetime.datetime(2040, 5, 6, 7, 8, tzinfo=UTC)))
    assert now.session is not None and far.session is not None
    assert await partition_of(scratch, now.session["id"]) == partition_name(NOW)
    assert await partition_of(scratch, far.session["id"]) == "charging_sessions_default"
    # Its month's partition made later (by the worker, a clock that far ahead): the session moves in, still active
    # and still the only one of its vehicle.
    async with scratch.begin() as conn:
        made = (await conn.execute(sa.text("SELECT charging_sessions_create_month('2040-05-20')"))).scalar_one()
    assert made == "charging_sessions_p204005"
    assert await partition_of(scratch, far.session["id"]) == "charging_sessions_p204005"
    with pytest.raises(sa.exc.IntegrityError, match="charging_sessions_one_active"):
        await insert_sessions(
            scratch, [session_values(driver, datetime.datetime(2040, 5, 1, tzinfo=UTC), vehicle="v2")]
        )
    updated = await tracker.apply(driver, "v2", TESLA, reading(datetime.datetime(2040, 5, 6, 7, 20, tzinfo=UTC)))
    assert updated.action is Action.UPDATE and updated.session is not None
    assert updated.session["id"] == far.session["id"]


async def test_lookups_by_id_and_the_services_own_updates(engine: AsyncEngine) -> None:
    """A session found by id alone (GetChargingSession, EndChargingSession) uses each partition's primary-key
    index; an update by (id, session_start) reaches one partition."""
    row = session_values(str(uuid.uuid4()), NOW - datetime.timedelta(minutes=30), minutes=20)
    await insert_sessions(engine, [row])
    async with engine.begin() as conn:
        await conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        by_id = "\n".join(
            (
                await conn.execute(
                    sa.text("EXPLAIN (COSTS OFF) SELECT * FROM charging_sessions WHERE id = :id"), {"id": row["id"]}
                )
            )
            .scalars()
            .all()
        )
        update = "\n".join(
            (
                await conn.execute(
                    sa.text(
                        "EXPLAIN (COSTS OFF) UPDATE charging_sessions SET updated_at = now() "
                        "WHERE id = :id AND session_start = :s"
                    ),
                    {"id": row["id"], "s": row["session_start"]},
                )
            )
            .scalars()
            .all()
        )
        found = (await conn.execute(sa.select(S.c.driver_id).where(S.c.id == row["id"]))).scalar_one()
        partitions = await partitions_of(conn)
    assert found == row["driver_id"]
    # One primary-key probe per partition, no scan.
    assert "Seq Scan" not in by_id and by_id.count("_pkey on charging_sessions_") == len(partitions)
    # The partition of its month, and only that one.
    assert update.count("Index Scan") == 1 and f"{partition_name(row['session_start'])}_pkey" in update


# --- one active session per driver and vehicle ---------------------------------------------------------------


async def test_two_concurrent_opens_of_one_vehicle_in_two_partitions_leave_one(engine: AsyncEngine) -> None:
    """Straight to the database, past the tracker's advisory lock: two transactions each open a session of the
    same driver and vehicle, in different months (different partitions, which a per-partition unique index would
    let through). The second waits for the first and fails; exactly one session is active."""
    driver = str(uuid.uuid4())
    this_month = session_values(driver, NOW)
    last_month = session_values(driver, month_start(NOW, -1) + datetime.timedelta(days=3))

    inserted = asyncio.Event()

    async def open_session(values: dict[str, Any], hold: asyncio.Event | None) -> None:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(S).values(**values))
            if hold is not None:
                inserted.set()
                await hold.wait()

    async def waiting_for_a_lock() -> None:
        assert await lock_waits(engine, "INSERT INTO%charging_sessions%"), "the second open is not waiting yet"

    release = asyncio.Event()
    first = asyncio.create_task(open_session(this_month, release))
    await asyncio.wait_for(inserted.wait(), timeout=15)  # the first has its session and its marker, not committed
    second = asyncio.create_task(open_session(last_month, None))
    await eventually(waiting_for_a_lock)
    assert not second.done()  # waiting for the first's marker
    release.set()
    await first
    with pytest.raises(sa.exc.IntegrityError, match="charging_sessions_one_active"):
        await second
    async with engine.connect() as conn:
        active = (await conn.execute(sa.select(S.c.id).where(S.c.driver_id == driver, S.c.session_end.is_(None)))).all()
        marker = (await conn.execute(sa.select(ACTIVE.c.session_id).where(ACTIVE.c.driver_id == driver))).all()
    assert [r.id for r in active] == [this_month["id"]] and [m.session_id for m in marker] == [this_month["id"]]

    # The same race, both at once without ordering: one wins, whichever.
    other = str(uuid.uuid4())
    results = await asyncio.gather(
        *(open_session(session_values(other, month_start(NOW, m)), None) for m in (-1, 0, 1, 2)),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, sa.exc.IntegrityError) for r in results if r is not None)


async def test_ending_frees_the_vehicle_and_reopening_takes_it_again(engine: AsyncEngine) -> None:
    tracker, driver = SessionTracker(engine, clock=lambda: NOW), str(uuid.uuid4())
    opened = await tracker.apply(driver, "v1", TESLA, reading(NOW - datetime.timedelta(minutes=20)))
    assert opened.session is not None
    ended = await tracker.end_by_hand(opened.session["id"], driver)  # manual: reopens within 30 min
    assert ended is not None and ended[0]["session_end"] is not None
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(ACTIVE).where(ACTIVE.c.driver_id == driver))).first() is None
    reopened = await tracker.apply(driver, "v1", TESLA, reading(NOW + datetime.timedelta(minutes=5)))
    assert reopened.action is Action.REOPEN
    with pytest.raises(sa.exc.IntegrityError, match="charging_sessions_one_active"):
        await insert_sessions(engine, [session_values(driver, NOW)])
    # Another vehicle of the same driver is another slot.
    await insert_sessions(engine, [session_values(driver, NOW, vehicle="v2")])
    async with engine.begin() as conn:  # a deleted active session frees its vehicle too
        await conn.execute(sa.delete(S).where(S.c.driver_id == driver, S.c.vehicle_id == "v2"))
        markers = (await conn.execute(sa.select(ACTIVE.c.vehicle_id).where(ACTIVE.c.driver_id == driver))).scalars()
        assert list(markers) == ["v1"]


# --- maintenance: partitions ahead, retention ----------------------------------------------------------------


async def test_the_worker_keeps_partitions_ahead(scratch: AsyncEngine) -> None:
    later = month_start(NOW, 10) + datetime.timedelta(days=12)
    partitions = SessionPartitions(scratch, retention_months=24, months_ahead=2, clock=lambda: later)
    report = await partitions.run()
    names = {p.name for p in await partitions.partitions()}
    assert {partition_name(month_start(later, m)) for m in range(-1, 3)} <= names
    assert report.created == 4  # months 9 to 12 from now: the migration made up to 3
    assert (await partitions.run()).created == 0


async def test_retention_archives_an_old_partition_then_drops_it_and_a_second_run_does_nothing(
    scratch: AsyncEngine,
) -> None:
    old = month_start(NOW, -30)  # wholly older than 24 months
    kept = month_start(NOW, -23)  # not yet
    async with scratch.begin() as conn:
        for month in (old, kept):
            await conn.execute(sa.text("SELECT charging_sessions_create_month(:t)"), {"t": month})
    driver = str(uuid.uuid4())
    tracker = SessionTracker(scratch)
    for day in range(3):  # three sessions through the state machine, with trails
        start = old + datetime.timedelta(days=day, hours=9)
        await tracker.apply(driver, "v1", TESLA, reading(start, lat=1.0, lng=2.0, power_kw=50.0))
        await tracker.apply(
            driver, "v1", TESLA, reading(start + datetime.timedelta(minutes=40), charging=False, kwh_added=20.0)
        )
    await insert_sessions(scratch, [session_values(driver, kept + datetime.timedelta(days=1), minutes=30)])
    # Out of every monthly partition, in the default one: its old ended rows are archived too, the active one kept.
    ancient = datetime.datetime(2001, 2, 3, tzinfo=UTC)
    await insert_sessions(
        scratch,
        [session_values(driver, ancient, minutes=10, vehicle="v9"), session_values(driver, ancient, vehicle="v8")],
    )
    async with scratch.connect() as conn:
        before = [
            dict(r)
            for r in (
                await conn.execute(sa.select(S).where(S.c.session_start < old + datetime.timedelta(days=31)))
            ).mappings()
        ]
    assert len(before) == 5

    partitions = SessionPartitions(scratch, retention_months=24, months_ahead=3)
    report = await partitions.run()
    assert report.archived == {partition_name(old): 3} and report.archived_from_default == 1
    assert not await table_exists(scratch, partition_name(old))
    names = {p.name for p in await partitions.partitions()}
    assert partition_name(old) not in names and partition_name(kept) in names
    async with scratch.connect() as conn:
        archived = {r["id"]: dict(r) for r in (await conn.execute(sa.select(ARCHIVE))).mappings()}
        live = (await conn.execute(sa.select(S.c.session_start).where(S.c.driver_id == driver))).scalars().all()
    # Every archived row as it was, column for column.
    for row in before:
        if row["session_end"] is not None:
            assert {k: v for k, v in archived.pop(row["id"]).items() if k != "archived_at"} == row
    assert archived == {}
    assert sorted(live) == [ancient, kept + datetime.timedelta(days=1)]  # the active ancient one, the kept month

    again = await partitions.run()
    assert (again.archived, again.archived_from_default, again.created) == ({}, 0, 0)
    async with scratch.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(ARCHIVE))).scalar_one() == 4

    # Incentives' "driver's completed sessions" still counts the archived ones.
    end_at = NOW + datetime.timedelta(minutes=30)
    await tracker.apply(driver, "v1", TESLA, reading(NOW))
    ended = await tracker.apply(driver, "v1", TESLA, reading(end_at, charging=False))
    assert ended.session is not None
    async with scratch.connect() as conn:
        payload = (
            await conn.execute(
                sa.select(store.outbox.c.payload).where(
                    store.outbox.c.topic == SESSION_ENDED_TOPIC, store.outbox.c.key == f"{ended.session['id']}:1"
                )
            )
        ).scalar_one()
    assert payload["driver_completed_sessions"] == 3 + 1 + 1 + 1  # archived (3 + 1 default), kept month, this one


async def test_two_replicas_applying_the_retention_at_once_archive_each_row_once(scratch: AsyncEngine) -> None:
    months = [month_start(NOW, -m) for m in (26, 27, 28)]
    async with scratch.begin() as conn:
        for month in months:
            await conn.execute(sa.text("SELECT charging_sessions_create_month(:t)"), {"t": month})
    rows = [
        session_values(str(uuid.uuid4()), month + datetime.timedelta(days=d), minutes=15)
        for month in months
        for d in range(5)
    ]
    await insert_sessions(scratch, rows)
    replicas = [SessionPartitions(scratch, retention_months=24, months_ahead=3) for _ in range(3)]
    reports = await asyncio.gather(*(r.run() for r in replicas))
    archived: dict[str, int] = {}
    for report in reports:
        assert not set(archived) & set(report.archived)  # no partition archived twice
        archived |= report.archived
    # Whatever one replica skipped because another held the lock, the next round does.
    archived |= (await replicas[0].run()).archived
    assert archived == {partition_name(m): 5 for m in months}
    async with scratch.connect() as conn:
        ids = (await conn.execute(sa.select(ARCHIVE.c.id))).scalars().all()
    assert sorted(ids) == sorted(r["id"] for r in rows)
    for month in months:
        assert not await table_exists(scratch, partition_name(month))


async def test_an_old_partition_with_an_active_session_is_kept(scratch: AsyncEngine) -> None:
    old = month_start(NOW, -40)
    async with scratch.begin() as conn:
        await conn.execute(sa.text("SELECT charging_sessions_create_month(:t)"), {"t": old})
    await insert_sessions(
        scratch, [session_values(str(uuid.uuid4()), old), session_values(str(uuid.uuid4()), old, minutes=5)]
    )
    partitions = SessionPartitions(scratch, retention_months=24, months_ahead=3)
    report = await partitions.run()
    assert report.kept_active == [partition_name(old)] and report.archived == {}
    assert await table_exists(scratch, partition_name(old))
    async with scratch.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(ARCHIVE))).scalar_one() == 0
    # And the database would refuse it anyway: the active session's marker references it.
    with pytest.raises(sa.exc.IntegrityError, match="charging_sessions_active"):
        async with scratch.begin() as conn:
            await conn.execute(sa.text(f"ALTER TABLE charging_sessions DETACH PARTITION {partition_name(old)}"))
    # A retention of 0 months keeps everything.
    assert (await SessionPartitions(scratch, retention_months=0, months_ahead=3).run()).kept_active == []


async def test_a_partition_locked_past_the_lock_timeout_is_left_for_the_next_round(scratch: AsyncEngine) -> None:
    old = month_start(NOW, -30)
    async with scratch.begin() as conn:
        await conn.execute(sa.text("SELECT charging_sessions_create_month(:t)"), {"t": old})
    await insert_sessions(scratch, [session_values(str(uuid.uuid4()), old, minutes=5)])
    partitions = SessionPartitions(scratch, retention_months=24, months_ahead=3, lock_timeout_s=0.2)
    async with scratch.connect() as holder:
        await holder.begin()
        await holder.execute(sa.text(f"LOCK TABLE {partition_name(old)} IN ACCESS EXCLUSIVE MODE"))
        busy = await partitions.run()
        await holder.rollback()
    assert busy.busy == [partition_name(old)] and busy.archived == {}
    assert (await partitions.run()).archived == {partition_name(old): 1}


async def test_a_partition_detached_by_a_round_that_died_is_archived_by_the_next(scratch: AsyncEngine) -> None:
    old = month_start(NOW, -25)
    async with scratch.begin() as conn:
        await conn.execute(sa.text("SELECT charging_sessions_create_month(:t)"), {"t": old})
    rows = [session_values(str(uuid.uuid4()), old + datetime.timedelta(days=d), minutes=9) for d in range(4)]
    await insert_sessions(scratch, rows)
    async with scratch.begin() as conn:  # the first of the two transactions, and then the process died
        await conn.execute(sa.text(f"ALTER TABLE charging_sessions DETACH PARTITION {partition_name(old)}"))
    report = await SessionPartitions(scratch, retention_months=24, months_ahead=3).run()
    assert report.archived == {partition_name(old): 4}
    assert not await table_exists(scratch, partition_name(old))
    async with scratch.connect() as conn:
        ids = (await conn.execute(sa.select(ARCHIVE.c.id))).scalars().all()
    assert sorted(ids) == sorted(r["id"] for r in rows)


# --- the migration ------------------------------------------------------------------------------------------


async def test_the_migration_moves_existing_sessions_and_goes_down_and_up_again(database_url: str) -> None:
    async with own_schema(database_url, revision="0003") as (schema, engine):
        driver = str(uuid.uuid4())
        rows = [
            session_values(driver, datetime.datetime(2024, 1, 15, tzinfo=UTC), minutes=30),
            session_values(driver, datetime.datetime(2024, 3, 2, tzinfo=UTC), minutes=45),
            session_values(driver, NOW - datetime.timedelta(minutes=5)),  # active
            session_values(driver, NOW - datetime.timedelta(minutes=5), vehicle="v2"),  # active, another vehicle
        ]
        async with engine.begin() as conn:  # revision 0003's table: no partitions
            await conn.execute(
                sa.text(
                    "INSERT INTO charging_sessions (id, driver_id, vehicle_id, source, session_start, session_end, "
                    "duration_minutes, ended_reason, last_telemetry_at) VALUES (:id, :driver_id, :vehicle_id, :source, "
                    ":session_start, :session_end, :duration_minutes, :ended_reason, :last_telemetry_at)"
                ),
                [{"session_end": None, "duration_minutes": None, "ended_reason": None} | r for r in rows],
            )

        await migrate(database_url, schema, "upgrade", "head")
        await engine.dispose()  # the table under the cached statements changed
        assert await partition_of(engine, rows[0]["id"]) == "charging_sessions_p202401"
        assert await partition_of(engine, rows[1]["id"]) == "charging_sessions_p202403"
        assert await partition_of(engine, rows[2]["id"]) == partition_name(NOW)
        async with engine.connect() as conn:
            markers = (await conn.execute(sa.select(ACTIVE.c.session_id).where(ACTIVE.c.driver_id == driver))).scalars()
            assert sorted(markers) == sorted([rows[2]["id"], rows[3]["id"]])
        with pytest.raises(sa.exc.IntegrityError, match="charging_sessions_one_active"):
            await insert_sessions(engine, [session_values(driver, datetime.datetime(2024, 3, 5, tzinfo=UTC))])
        report = await SessionPartitions(engine, retention_months=24, months_ahead=3).run()
        assert report.archived == {"charging_sessions_p202401": 1, "charging_sessions_p202403": 1}

        await migrate(database_url, schema, "downgrade", "0003")
        await engine.dispose()
        async with engine.connect() as conn:
            back = (await conn.execute(sa.text("SELECT id FROM charging_sessions"))).scalars().all()
            kind = (
                await conn.execute(
                    sa.text("SELECT relkind::text FROM pg_class WHERE oid = 'charging_sessions'::regclass")
                )
            ).scalar()
            gone = (await conn.execute(sa.select(sa.func.to_regclass("charging_sessions_archive")))).scalar()
        assert sorted(back) == sorted(r["id"] for r in rows)  # the archived ones came back too
        assert (kind, gone) == ("r", None)
        with pytest.raises(sa.exc.IntegrityError, match="charging_sessions_one_active"):  # 0003's unique index
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text(
                        "INSERT INTO charging_sessions (id, driver_id, vehicle_id, source, session_start, "
                        "last_telemetry_at) VALUES (:id, :d, 'v1', 1, now(), now())"
                    ),
                    {"id": uuid.uuid4(), "d": driver},
                )

        await migrate(database_url, schema, "upgrade", "head")
        await engine.dispose()
        assert await partition_of(engine, rows[0]["id"]) == "charging_sessions_p202401"
        tracker = SessionTracker(engine)
        updated = await tracker.apply(driver, "v1", TESLA, reading(NOW))
        assert (
            updated.action is Action.UPDATE and updated.session is not None and updated.session["id"] == rows[2]["id"]
        )
