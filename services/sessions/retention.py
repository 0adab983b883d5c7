"""The monthly partitions of charging_sessions (migration 0004): kept created ahead of time, and past the retention
archived, then detached and dropped.

Archive: the rows go to `charging_sessions_archive`, a plain table of the same schema with the same columns (and
`archived_at`). It needs no shared directory (the pods' root file systems are read-only), each copy is checked by
count in the transaction that drops the partition, and it stays queryable with SQL, so it can be verified,
restored (the migration's downgrade does) or exported to cold storage by whoever owns that. A driver's
completed-session count (incentives' rules) still counts archived sessions.

An expired partition goes in two transactions:
1. DETACH it (after checking that none of its sessions is active). This takes the parent's ACCESS EXCLUSIVE lock
   for a moment while holding no other lock a query could be waiting for: a transaction that blocked the
   partition's writers during a copy and then asked for the parent's lock could deadlock with a statement that
   holds the parent and waits for the partition. Once detached, nothing writes to it (the service only ever names
   charging_sessions).
2. Copy it into the archive, check the count, DROP it — all or nothing.
A process that dies between the two leaves a detached table `charging_sessions_pYYYYMM`: every round first
archives such leftovers, so nothing is lost and nothing is archived twice (the archive's primary key would refuse
it anyway). Between the two transactions (a moment, unless the process dies) those sessions are in neither table.

Safe on every replica at once: each transaction first takes a transaction-level advisory lock (the one the
partition functions take too) or leaves its step to the replica holding it, and re-reads the catalog under it.
Table locks are waited for at most `lock_timeout_s` (the service's queries queue behind a waiting DETACH, so not
for long); a step that times out is retried next round.

A partition that still holds an active session is kept (and logged): its session would otherwise vanish, and the
active-session marker's foreign key would refuse the DETACH anyway.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import re
from collections.abc import Callable, Coroutine
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.sessions import store

log = logging.getLogger(__name__)

ARCHIVE = store.charging_sessions_archive
# The key of pg_advisory_xact_lock shared with the SQL functions charging_sessions_create_month/ensure_partitions.
_TRY_LOCK = sa.text(
    "SELECT pg_try_advisory_xact_lock(hashtextextended(current_schema() || '.charging_sessions:partitions', 0))"
)
_BOUNDS = re.compile(r"FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclasses.dataclass(frozen=True)
class Partition:
    name: str
    start: datetime.datetime | None  # None for the default partition
    end: datetime.datetime | None

    @property
    def is_default(self) -> bool:
        return self.start is None


@dataclasses.dataclass
class MaintenanceReport:
    created: int = 0  # partitions created ahead
    archived: dict[str, int] = dataclasses.field(default_factory=dict)  # dropped partition → rows archived
    archived_from_default: int = 0  # old rows of the default partition archived
    kept_active: list[str] = dataclasses.field(default_factory=list)  # expired, but a session in it is active
    busy: list[str] = dataclasses.field(default_factory=list)  # steps left for the next round (see run)


def month_start(at: datetime.datetime, months: int = 0) -> datetime.datetime:
    """The first instant (UTC) of the month `months` after (or before, if negative) the month of `at`."""
    at = at.astimezone(datetime.UTC)
    index = at.year * 12 + at.month - 1 + months
    return datetime.datetime(index // 12, index % 12 + 1, 1, tzinfo=datetime.UTC)


def retention_boundary(now: datetime.datetime, retention_months: int) -> datetime.datetime:
    """Sessions that started before this instant are in months wholly older than `retention_months`: a partition
    whose end is at or before it goes."""
    return month_start(now, -retention_months)


def _utc(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).astimezone(datetime.UTC)


class SessionPartitions:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        retention_months: int,
        months_ahead: int,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        lock_timeout_s: float = 2.0,
    ) -> None:
        self._engine = engine
        self._retention_months = retention_months
        self._months_ahead = months_ahead
        self._clock = clock
        self._lock_timeout_ms = max(1, int(lock_timeout_s * 1000))

    async def run(self) -> MaintenanceReport:
        """One round: partitions ahead, then the retention (unless it is 0: keep everything). A step that waits
        longer than the lock timeout for a table is left for the next round (listed in `busy`)."""
        report = MaintenanceReport()
        now = self._clock()
        await self._unless_busy("ensure", report, self._ensure_ahead(now, report))
        if self._retention_months > 0:
            boundary = retention_boundary(now, self._retention_months)
            async with self._engine.begin() as conn:
                leftovers = await _detached(conn)
            for name in leftovers:  # detached by a round that died before archiving them
                await self._unless_busy(name, report, self._archive_detached(name, report))
            for partition in await self.partitions():
                if partition.is_default:
                    await self._unless_busy(
                        partition.name, report, self._archive_old_default_rows(partition.name, boundary, report)
                    )
                elif partition.end is not None and partition.end <= boundary:
                    await self._unless_busy(partition.name, report, self._detach_then_archive(partition, report))
        return report

    async def partitions(self) -> list[Partition]:
        """The partitions of charging_sessions, the monthly ones by start, then the default one."""
        async with self._engine.begin() as conn:
            return await _partitions(conn)

    # --- steps ---------------------------------------------------------------------------------------------

    async def _ensure_ahead(self, now: datetime.datetime, report: MaintenanceReport) -> None:
        async with self._engine.begin() as conn:
            if not await self._lock(conn):
                report.busy.append("ensure")
                return
            created = await conn.execute(
                sa.select(sa.func.charging_sessions_ensure_partitions(now, self._months_ahead, type_=sa.Integer))
            )
            report.created += int(created.scalar_one())

    async def _detach_then_archive(self, partition: Partition, report: MaintenanceReport) -> None:
        table = _like_sessions(partition.name)
        async with self._engine.begin() as conn:
            if not await self._lock(conn):
                report.busy.append(partition.name)
                return
            if partition.name not in {p.name for p in await _partitions(conn)}:
                return  # detached meanwhile by another replica (which archives it)
            active = (
                await conn.execute(sa.select(sa.func.count()).select_from(table).where(table.c.session_end.is_(None)))
            ).scalar_one()
            if active:
                log.warning(
                    "partition %s is past the retention but %d of its sessions are still active; kept",
                    partition.name,
                    active,
                )
                report.kept_active.append(partition.name)
                return
            await conn.execute(sa.text(f"ALTER TABLE charging_sessions DETACH PARTITION {_quote(partition.name)}"))
        await self._archive_detached(partition.name, report)

    async def _archive_detached(self, name: str, report: MaintenanceReport) -> None:
        """Copies a detached partition into the archive and drops it, in one transaction."""
        table = _like_sessions(name)
        async with self._engine.begin() as conn:
            if not await self._lock(conn):
                report.busy.append(name)
                return
            if name not in await _detached(conn):
                return  # archived meanwhile by another replica
            rows = (await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one()
            names = [c.name for c in store.charging_sessions.c]
            copied = await conn.execute(sa.insert(ARCHIVE).from_select(names, sa.select(*table.c)))
            if copied.rowcount != rows:
                raise RuntimeError(f"archiving {name}: {copied.rowcount} rows copied of {rows}")
            await conn.execute(sa.text(f"DROP TABLE {_quote(name)}"))
        report.archived[name] = rows
        log.info("partition %s: %d sessions archived, partition dropped", name, rows)

    async def _archive_old_default_rows(
        self, name: str, boundary: datetime.datetime, report: MaintenanceReport
    ) -> None:
        """Sessions stamped outside every monthly partition and older than the retention: archived and deleted in
        one statement (only ended ones: an active session stays wherever it is)."""
        table = _like_sessions(name)
        async with self._engine.begin() as conn:
            if not await self._lock(conn):
                report.busy.append(name)
                return
            moved = (
                sa.delete(table)
                .where(table.c.session_start < boundary, table.c.session_end.is_not(None))
                .returning(*table.c)
                .cte("moved")
            )
            names = [c.name for c in store.charging_sessions.c]
            copied = await conn.execute(sa.insert(ARCHIVE).from_select(names, sa.select(*moved.c)))
        if copied.rowcount:
            report.archived_from_default += copied.rowcount
            log.info("default partition: %d sessions archived", copied.rowcount)

    @staticmethod
    async def _unless_busy(step: str, report: MaintenanceReport, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except sa.exc.DBAPIError as error:
            # lock_not_available (the lock timeout), or foreign_key_violation: a session of a partition being
            # detached became active again after the check (the marker's foreign key refused the DETACH).
            if _sqlstate(error) not in ("55P03", "23503"):
                raise
            report.busy.append(step)
            log.info("session partitions: %s could not be done (%s); next round", step, _sqlstate(error))

    async def _lock(self, conn: AsyncConnection) -> bool:
        """The partitions' lock for this transaction, or False when another replica holds it. Table locks are then
        waited for at most lock_timeout."""
        if not (await conn.execute(_TRY_LOCK)).scalar_one():
            return False
        await conn.execute(sa.select(sa.func.set_config("lock_timeout", f"{self._lock_timeout_ms}ms", True)))
        return True


async def _partitions(conn: AsyncConnection) -> list[Partition]:
    # Bounds are printed in the session's time zone: UTC, for this transaction. They are constants: printed without
    # a relation (pg_get_expr with the partition's oid would wait for a lock on it, e.g. behind an archiving).
    await conn.execute(sa.select(sa.func.set_config("TimeZone", "UTC", True)))
    rows = await conn.execute(
        sa.text(
            "SELECT child.relname, pg_get_expr(child.relpartbound, 0) FROM pg_inherits AS inheritance "
            "JOIN pg_class AS child ON child.oid = inheritance.inhrelid "
            "WHERE inheritance.inhparent = 'charging_sessions'::regclass"
        )
    )
    monthly: list[Partition] = []
    default: list[Partition] = []
    for name, bound in rows.all():
        if bound == "DEFAULT":
            default.append(Partition(name, None, None))
        elif match := _BOUNDS.fullmatch(bound):
            monthly.append(Partition(name, _utc(match[1]), _utc(match[2])))
    return sorted(monthly, key=lambda p: p.start or datetime.datetime.min) + default


async def _detached(conn: AsyncConnection) -> list[str]:
    """Monthly partitions detached but not yet archived: tables of the schema named like one, in no partition tree."""
    rows = await conn.execute(
        sa.text(
            "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r' "
            "AND NOT relispartition AND relname ~ '^charging_sessions_p[0-9]{6}$' ORDER BY relname"
        )
    )
    return list(rows.scalars())


def _like_sessions(name: str) -> sa.TableClause:
    """A partition (or the default one) as a table of its own, with the sessions' columns."""
    return sa.table(name, *(sa.column(c.name, c.type) for c in store.charging_sessions.c))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sqlstate(error: sa.exc.DBAPIError) -> str | None:
    state = getattr(error.orig, "sqlstate", None)
    return state if isinstance(state, str) else None
