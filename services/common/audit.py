"""The audit log: one shape in every service's schema, written in the transaction of the action it records.

Every admin action and every movement of money a person initiates calls :func:`record` with the connection of
its own transaction — one line at the action site — so an entry exists exactly when the action committed.
Each service keeps its own ``audit_log`` table (services own their schemas; a shared table would let one
service write into another's database). The table refuses UPDATE, DELETE and TRUNCATE by trigger: an entry,
once committed, stays as written.

Reading: each service answers an internal ``ListAuditEntries`` from its own table (:func:`list_entries`);
accounts merges the services' answers for ``GET /v1/admin/audit`` (services/accounts/audit_log.py). Accounts owns the
merged query because it already owns the admin identity (roles) and every other service already trusts it;
it reads the others only through their gRPC stubs, never their tables.
"""

from __future__ import annotations

import datetime
from typing import Any

import sqlalchemy as sa
from nerava.audit.v1 import audit_pb2
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.context import current_caller, request_id_var
from services.common.timestamps import timestamp

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


def _detail(value: object) -> str:
    """A detail as the audit listing shows it: booleans as JSON writes them (`true`, not Python's `True`)."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


async def record(conn: AsyncConnection, action: str, target: str, reason: str = "", **details: object) -> None:
    """Writes one entry in ``conn``'s transaction: it commits or rolls back with the action. The actor and the
    request id come from the RPC's context — the one thing a core reads from it, so that no core can write an
    entry in anyone's name but the authenticated caller's (or its own service's, in a worker)."""
    await conn.execute(
        sa.insert(audit_log).values(
            actor=current_actor(),
            action=action,
            target=target,
            reason=reason,
            request_id=request_id_var.get() or "",
            details={name: _detail(value) for name, value in details.items()},
        )
    )


# --- one service's entries ------------------------------------------------------------------------------


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def list_entries(engine: AsyncEngine, service: str, query: audit_pb2.AuditQuery) -> list[audit_pb2.AuditEntry]:
    """This service's entries matching ``query``, newest first by (occurred_at, service, id)."""
    select = sa.select(audit_log)
    if query.actor:
        select = select.where(audit_log.c.actor == query.actor)
    if query.action.endswith("."):
        select = select.where(audit_log.c.action.like(_like_prefix(query.action), escape="\\"))
    elif query.action:
        select = select.where(audit_log.c.action == query.action)
    if query.target:
        select = select.where(audit_log.c.target == query.target)
    if query.HasField("since"):
        select = select.where(audit_log.c.occurred_at >= query.since.ToDatetime(datetime.UTC))
    if query.HasField("until"):
        select = select.where(audit_log.c.occurred_at < query.until.ToDatetime(datetime.UTC))
    if query.HasField("before"):
        cursor = query.before
        at = cursor.occurred_at.ToDatetime(datetime.UTC)
        # The merged order is (occurred_at, service, id): this table's rows are all of `service`.
        select = select.where(
            sa.or_(
                audit_log.c.occurred_at < at,
                sa.and_(audit_log.c.occurred_at == at, sa.literal(service) < cursor.service),
                sa.and_(
                    audit_log.c.occurred_at == at, sa.literal(service) == cursor.service, audit_log.c.id < cursor.row_id
                ),
            )
        )
    select = select.order_by(audit_log.c.occurred_at.desc(), audit_log.c.id.desc()).limit(query.limit or 50)
    async with engine.connect() as conn:
        rows = (await conn.execute(select)).all()
    return [
        audit_pb2.AuditEntry(
            id=f"{service}:{row.id}",
            service=service,
            occurred_at=timestamp(row.occurred_at),
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
