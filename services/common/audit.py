"""The audit log: one shape in every service's schema, written in the transaction of the action it records.

Every admin action and every movement of money a person initiates calls :func:`record` with the connection of
its own transaction — one line at the action site — so an entry exists exactly when the action committed.
Each service keeps its own ``audit_log`` table (services own their schemas; a shared table would let one
service write into another's database). The table refuses UPDATE, DELETE and TRUNCATE by trigger: an entry,
once committed, stays as written.

Reading: each service answers an internal ``ListAuditEntries`` from its own table (:func:`list_entries`);
accounts merges the services' answers for ``GET /v1/admin/audit`` (:class:`MergedAuditLog`). Accounts owns the
merged query because it already owns the admin identity (roles) and every other service already trusts it;
it reads the others only through their gRPC stubs, never their tables.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import sqlalchemy as sa
from google.protobuf import timestamp_pb2
from nerava.audit.v1 import audit_pb2
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.context import current_caller, request_id_var
from services.common.errors import InvalidArgument, Unavailable

# Unqualified: each service's connections set search_path to its own schema (services/common/db.py).
audit_log = sa.Table(
    "audit_log",
    sa.MetaData(),
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("request_id", sa.Text, nullable=False),
    sa.Column("details", postgresql.JSONB, nullable=False),
)


def current_actor() -> str:
    """The user's public id, or ``service:<name>`` when a service acts on its own (a worker, an outbox)."""
    caller = current_caller()
    if caller.user_id:
        return caller.user_id
    return f"service:{caller.service}" if caller.service else "anonymous"


async def record(conn: AsyncConnection, action: str, target: str, reason: str = "", **details: object) -> None:
    """Writes one entry in ``conn``'s transaction: it commits or rolls back with the action. The actor and the
    request id come from the RPC's context."""
    await conn.execute(
        sa.insert(audit_log).values(
            actor=current_actor(),
            action=action,
            target=target,
            reason=reason,
            request_id=request_id_var.get() or "",
            details={name: str(value) for name, value in details.items()},
        )
    )


# --- one service's entries ------------------------------------------------------------------------------


def _timestamp(value: datetime.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def list_entries(engine: AsyncEngine, service: str, query: audit_pb2.AuditQuery) -> list[audit_pb2.AuditEntry]:
    """This service's entries matching ``query``, newest first by (occurred_at, service, id)."""
    a = audit_log
    select = sa.select(a)
    if query.actor:
        select = select.where(a.c.actor == query.actor)
    if query.action.endswith("."):
        select = select.where(a.c.action.like(_like_prefix(query.action), escape="\\"))
    elif query.action:
        select = select.where(a.c.action == query.action)
    if query.target:
        select = select.where(a.c.target == query.target)
    if query.HasField("since"):
        select = select.where(a.c.occurred_at >= query.since.ToDatetime(datetime.UTC))
    if query.HasField("until"):
        select = select.where(a.c.occurred_at < query.until.ToDatetime(datetime.UTC))
    if query.HasField("before"):
        cursor = query.before
        at = cursor.occurred_at.ToDatetime(datetime.UTC)
        # The merged order is (occurred_at, service, id): this table's rows are all of `service`.
        select = select.where(
            sa.or_(
                a.c.occurred_at < at,
                sa.and_(a.c.occurred_at == at, sa.literal(service) < cursor.service),
                sa.and_(a.c.occurred_at == at, sa.literal(service) == cursor.service, a.c.id < cursor.row_id),
            )
        )
    select = select.order_by(a.c.occurred_at.desc(), a.c.id.desc()).limit(query.limit or 50)
    async with engine.connect() as conn:
        rows = (await conn.execute(select)).all()
    return [
        audit_pb2.AuditEntry(
            id=f"{service}:{row.id}",
            service=service,
            occurred_at=_timestamp(row.occurred_at),
            actor=row.actor,
            action=row.action,
            target=row.target,
            reason=row.reason,
            request_id=row.request_id,
            details=dict(row.details),
        )
        for row in rows
    ]


# --- the merged log (accounts) --------------------------------------------------------------------------

Source = Callable[[audit_pb2.AuditQuery], Awaitable[list[audit_pb2.AuditEntry]]]


def _order(entry: audit_pb2.AuditEntry) -> tuple[int, int, str, int]:
    row_id = int(entry.id.rpartition(":")[2])
    return (entry.occurred_at.seconds, entry.occurred_at.nanos, entry.service, row_id)


def _filters_digest(query: audit_pb2.AuditQuery) -> str:
    """What a page token is bound to: the filters (not the position, not the size)."""
    bound = audit_pb2.AuditQuery()
    bound.CopyFrom(query)
    bound.ClearField("before")
    bound.ClearField("limit")
    return hashlib.sha256(bound.SerializeToString(deterministic=True)).hexdigest()[:16]


def _page_token(entry: audit_pb2.AuditEntry, query: audit_pb2.AuditQuery) -> str:
    position = {
        "s": entry.occurred_at.seconds,
        "n": entry.occurred_at.nanos,
        "svc": entry.service,
        "id": int(entry.id.rpartition(":")[2]),
        "f": _filters_digest(query),
    }
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def _cursor(token: str, query: audit_pb2.AuditQuery) -> audit_pb2.AuditCursor | None:
    if not token:
        return None
    try:
        position: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        cursor = audit_pb2.AuditCursor(
            occurred_at=timestamp_pb2.Timestamp(seconds=int(position["s"]), nanos=int(position["n"])),
            service=str(position["svc"]),
            row_id=int(position["id"]),
        )
        bound = str(position["f"])
        cursor.occurred_at.ToDatetime()  # a forged time outside what a datetime holds fails here, not in a service
    except (ValueError, KeyError, TypeError, OverflowError, AttributeError):
        raise InvalidArgument([("page_token", "not a token from a previous page")]) from None
    if bound != _filters_digest(query):
        raise InvalidArgument([("page_token", "the token belongs to a listing with other filters")])
    return cursor


class MergedAuditLog:
    """The audit log of every service, newest first, paged by a cursor over (occurred_at, service, id).

    A page of n asks each service for its n+1 newest entries after the cursor and keeps the n newest of the
    union: every entry between the cursor and the page's last one is in it, so no entry is skipped or
    repeated across pages. A service that does not answer fails the query (UNAVAILABLE): an audit answer with
    a silent hole would read as "nothing happened"."""

    def __init__(self, sources: Mapping[str, Source], timeout_s: float = 5.0) -> None:
        self._sources = dict(sources)
        self._timeout_s = timeout_s

    async def page(
        self, query: audit_pb2.AuditQuery, page_size: int, page_token: str
    ) -> tuple[list[audit_pb2.AuditEntry], str]:
        cursor = _cursor(page_token, query)
        asked = audit_pb2.AuditQuery()
        asked.CopyFrom(query)
        asked.limit = page_size + 1
        if cursor is not None:
            asked.before.CopyFrom(cursor)
        names = sorted(self._sources)
        answers = await asyncio.gather(
            *(asyncio.wait_for(self._sources[name](asked), self._timeout_s) for name in names),
            return_exceptions=True,
        )
        merged: list[audit_pb2.AuditEntry] = []
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, BaseException):
                raise Unavailable(
                    "AUDIT_UNAVAILABLE", f"the {name} service did not answer; retry", {"service": name}
                ) from answer
            merged.extend(answer)
        merged.sort(key=_order, reverse=True)
        page, more = merged[:page_size], len(merged) > page_size
        return page, _page_token(page[-1], query) if more else ""


# --- the table, for each service's migration ------------------------------------------------------------

_REFUSE_CHANGE = """
CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def create_audit_log(op: Any) -> None:
    """The audit_log table of the schema being migrated, append-only by trigger. Called by one migration of
    each service; what it creates must not change (a later change is a new migration)."""
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("request_id", sa.Text(), server_default="", nullable=False),
        sa.Column("details", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
    )
    # Newest first overall, and per actor and per target (the admin's usual questions).
    op.create_index("ix_audit_log_occurred", "audit_log", [sa.text("occurred_at DESC"), sa.text("id DESC")])
    op.create_index("ix_audit_log_actor", "audit_log", ["actor", sa.text("occurred_at DESC")])
    op.create_index("ix_audit_log_target", "audit_log", ["target", sa.text("occurred_at DESC")])
    op.execute(_REFUSE_CHANGE)
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change()"
    )


def drop_audit_log(op: Any) -> None:
    op.drop_table("audit_log")
    op.execute("DROP FUNCTION audit_log_refuse_change()")
