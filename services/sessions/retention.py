"""The monthly partitions of charging_sessions (migration 0004): kept created ahead of time, and past the retention
archived, then detached and dropped.

Archive: the rows are copied into `charging_sessions_archive`, a plain table of the same schema, in the same
transaction that detaches and drops their partition. Either everything happens or nothing does (a process that
dies half-way leaves the partition as it was); the copy is checked row for row by count before the partition
goes; it needs no shared directory (the pods' root file systems are read-only) and stays queryable with SQL, so
it can be verified, restored (the migration's downgrade does) or exported to cold storage by whoever owns that.

Safe on every replica at once: each step is one transaction that first takes a transaction-level advisory lock
(the same one the partition functions take) or leaves the step to the replica holding it, and re-reads the
catalog under it, so a partition is archived once. The steps wait at most `lock_timeout_s` for a table lock
(never queueing the service's queries behind a long wait); a partition that cannot be had is tried again next
time. Writes to the partition being archived wait for the copy (SHARE lock); reads never do.

A partition that still holds an active session is kept (and logged): its session would otherwise vanish, and the
active-session marker's foreign key would refuse the DETACH anyway.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import re
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.sessions import store

log = logging.getLogger(__name__)

S = store.charging_sessions
ARCHIVE = store.charging_sessions_archive
DEFAULT_PARTITION = "charging_sessions_default"
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
    busy: list[str] = dataclasses.field(default_factory=list)  # steps another replica was doing, or lock timeouts


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
        lock_timeout_s: float = 5.0,
    ) -> None:
        self._engine = engine
        self._retention_months = retention_months
        self._months_ahead = months_ahead
        self._clock = clock
        self._lock_timeout_ms = max(1, int(lock_timeout_s * 1000))

    async def run(self) -> MaintenanceReport:
        """One round: partitions ahead, then the retention (unless it is 0: keep everything)."""
        report = MaintenanceReport()
        now = self._clock()
        await self._ensure_ahead(now, report)
        if self._retention_months > 0:
            await self._apply_retention(retention_boundary(now, self._retention_months), report)
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

    async def _apply_retention(self, boundary: datetime.datetime, report: MaintenanceReport) -> None:
        for partition in await self.partitions():
            if partition.is_default:
                await self._archive_old_default_rows(partition.name, boundary, report)
            elif partition.end is not None and partition.end <= boundary:
                try:
                    await self._archive_and_drop(partition, report)
                except sa.exc.DBAPIError as error:
                    if _sqlstate(error) != "55P03":  # lock_not_available: lock_timeout; next time
                        raise
                    report.busy.append(partition.name)
                    log.info("partition %s is busy; it will be archived next time", partition.name)

    async def _archive_and_drop(self, partition: Partition, report: MaintenanceReport) -> None:
        quoted = _quote(partition.name)
        async with self._engine.begin() as conn:
            if not await self._lock(conn):
                report.busy.append(partition.name)
                return
            if partition.name not in {p.name for p in await _partitions(conn)}:
                return  # archived meanwhile by another replica
            # No write reaches the partition while it is copied; readers go on.
            await conn.execute(sa.text(f"LOCK TABLE {quoted} IN SHARE MODE"))
            table = _like_sessions(partition.name)
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
            rows = (await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one()
            names = [c.name for c in S.c]
            copied = await conn.execute(sa.insert(ARCHIVE).from_select(names, sa.select(*table.c)))
            if copied.rowcount != rows:
                raise RuntimeError(f"archiving {partition.name}: {copied.rowcount} rows copied of {rows}")
            await conn.execute(sa.text(f"ALTER TABLE charging_sessions DETACH PARTITION {quoted}"))
            await conn.execute(sa.text(f"DROP TABLE {quoted}"))
        report.archived[partition.name] = rows
        log.info("partition %s: %d sessions archived, partition dropped", partition.name, rows)

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
            names = [c.name for c in S.c]
            copied = await conn.execute(sa.insert(ARCHIVE).from_select(names, sa.select(*moved.c)))
        if copied.rowcount:
            report.archived_from_default += copied.rowcount
            log.info("default partition: %d sessions archived", copied.rowcount)

    async def _lock(self, conn: AsyncConnection) -> bool:
        """The partitions' lock for this transaction, or False when another replica holds it. Table locks are then
        waited for at most lock_timeout."""
        if not (await conn.execute(_TRY_LOCK)).scalar_one():
            return False
        await conn.execute(sa.select(sa.func.set_config("lock_timeout", f"{self._lock_timeout_ms}ms", True)))
        return True


async def _partitions(conn: AsyncConnection) -> list[Partition]:
    # Bounds are printed in the session's time zone: UTC, for this transaction.
    await conn.execute(sa.select(sa.func.set_config("TimeZone", "UTC", True)))
    rows = await conn.execute(
        sa.text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'charging_sessions'::regclass"
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


def _like_sessions(name: str) -> sa.TableClause:
    """A partition (or the default one) as a table of its own, with the sessions' columns."""
    return sa.table(name, *(sa.column(c.name, c.type) for c in S.c))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sqlstate(error: sa.exc.DBAPIError) -> str | None:
    state = getattr(error.orig, "sqlstate", None)
    return state if isinstance(state, str) else None
