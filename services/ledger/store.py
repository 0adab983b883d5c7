"""Tables of the ledger schema and the calls into post_transfer() (migrations/versions/0002).

The tables are created by hand-written SQL in the migration (the function needs them exactly so); the
Table objects here describe them for reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import asyncpg
import sqlalchemy as sa
from nerava.ledger.v1 import ledger_pb2 as pb
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.outbox import outbox_table

metadata = sa.MetaData()
outbox = outbox_table(metadata)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("type", sa.SmallInteger, nullable=False),
    sa.Column("owner_id", sa.Text, nullable=False),
    sa.Column("currency", sa.SmallInteger, nullable=False),
    sa.Column("balance", sa.BigInteger, nullable=False),
    sa.Column("debits_total", sa.BigInteger, nullable=False),
    sa.Column("credits_total", sa.BigInteger, nullable=False),
    sa.Column("may_go_negative", sa.Boolean, nullable=False),
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

transfers = sa.Table(
    "transfers",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("idempotency_key", sa.Text, nullable=False),
    sa.Column("kind", sa.SmallInteger, nullable=False),
    sa.Column("phase", sa.SmallInteger, nullable=False),
    sa.Column("currency", sa.SmallInteger, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("from_account_id", sa.BigInteger, nullable=False),
    sa.Column("to_account_id", sa.BigInteger, nullable=False),
    sa.Column("metadata", pg.JSONB, nullable=False),
    sa.Column("reversal_of", pg.UUID(as_uuid=True)),
    sa.Column("reversed_amount", sa.BigInteger, nullable=False),
    sa.Column("pending_to_account_id", sa.BigInteger),
    sa.Column("reservation_state", sa.SmallInteger),
    sa.Column("reservation_id", pg.UUID(as_uuid=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

entries = sa.Table(
    "entries",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("transfer_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("account_id", sa.BigInteger, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("balance_after", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclasses.dataclass(frozen=True)
class AccountKey:
    type: int
    owner_id: str
    currency: int


@dataclasses.dataclass(frozen=True)
class Movement:
    """One call of post_transfer(): everything but the idempotency scope, key and hash."""

    kind: int
    phase: int
    currency: int
    amount: int | None
    from_account: AccountKey
    to_account: AccountKey
    metadata: Mapping[str, str]
    up_to_available: bool = False
    reversal_of: uuid.UUID | None = None
    pending_to: AccountKey | None = None
    reservation_id: uuid.UUID | None = None
    reservation_state: int | None = None


@dataclasses.dataclass(frozen=True)
class PostResult:
    transfer_id: uuid.UUID | None
    amount: int | None
    from_balance: int | None
    to_balance: int | None
    replayed: bool
    error_reason: str | None
    error_metadata: Mapping[str, Any]
    created_at: datetime.datetime | None


def _json_object(value: object) -> dict[str, Any]:
    # SQLAlchemy installs a jsonb codec on its asyncpg connections (dicts come back); a bare asyncpg
    # connection returns text.
    if isinstance(value, str):
        parsed: dict[str, Any] = json.loads(value)
        return parsed
    return dict(value) if isinstance(value, dict) else {}


_POST = (
    "SELECT * FROM post_transfer($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14, $15, $16, $17,"
    " $18, $19)"
)
# Lock-order violations cannot happen inside post_transfer(), but PostgreSQL may still report a deadlock or
# a serialization failure under unusual plans; both are safe to retry because the statement rolled back.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def _arguments(scope: str, key: str, request_hash: bytes, movement: Movement) -> tuple[Any, ...]:
    pending = movement.pending_to
    return (
        scope,
        key,
        request_hash,
        None,  # the transfer id is drawn by the database (gen_random_uuid): no urandom call per transfer here
        movement.kind,
        movement.phase,
        movement.currency,
        movement.amount,
        movement.from_account.type,
        movement.from_account.owner_id,
        movement.to_account.type,
        movement.to_account.owner_id,
        json.dumps(dict(movement.metadata)),
        movement.up_to_available,
        movement.reversal_of,
        pending.type if pending else None,
        pending.owner_id if pending else None,
        movement.reservation_id,
        movement.reservation_state,
    )


def _result(row: asyncpg.Record) -> PostResult:
    return PostResult(
        transfer_id=row["transfer_id"],
        amount=row["amount"],
        from_balance=row["from_balance"],
        to_balance=row["to_balance"],
        replayed=row["replayed"],
        error_reason=row["error_reason"],
        error_metadata=_json_object(row["error_metadata"]),
        created_at=row["created_at"],
    )


merchant_fee_periods = sa.Table(
    "merchant_fee_periods",
    metadata,
    sa.Column("merchant_id", sa.Text, primary_key=True),
    sa.Column("period_start", sa.Date, primary_key=True),
    sa.Column("nova_redeemed", sa.BigInteger, nullable=False),
    sa.Column("fee_cents", sa.BigInteger, nullable=False),
    sa.Column("redemption_count", sa.Integer, nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("invoiced_at", sa.DateTime(timezone=True)),
    sa.Column("paid_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


async def reservation_accounts(conn: AsyncConnection, transfer_id: uuid.UUID) -> Any:
    """A reservation's source, in-flight and pending destination accounts (type and owner of each), or None when
    the transfer is no reservation."""
    source, in_flight, pending = accounts.alias("source"), accounts.alias("in_flight"), accounts.alias("pending")
    query = (
        sa.select(
            source.c.type.label("source_type"),
            source.c.owner_id.label("source_owner"),
            in_flight.c.type.label("in_flight_type"),
            in_flight.c.owner_id.label("in_flight_owner"),
            pending.c.type.label("pending_type"),
            pending.c.owner_id.label("pending_owner"),
        )
        .select_from(transfers)
        .join(source, source.c.id == transfers.c.from_account_id)
        .join(in_flight, in_flight.c.id == transfers.c.to_account_id)
        .join(pending, pending.c.id == transfers.c.pending_to_account_id)
        .where(transfers.c.id == transfer_id, transfers.c.phase == pb.TRANSFER_PHASE_RESERVE)
    )
    return (await conn.execute(query)).first()


async def transfer_with_accounts(conn: AsyncConnection, transfer_id: uuid.UUID) -> Any:
    """A transfer's kind, phase and currency with the type and owner of its two accounts, or None."""
    source, target = accounts.alias("source"), accounts.alias("target")
    query = (
        sa.select(
            transfers.c.kind,
            transfers.c.phase,
            transfers.c.currency,
            source.c.type.label("from_type"),
            source.c.owner_id.label("from_owner"),
            target.c.type.label("to_type"),
            target.c.owner_id.label("to_owner"),
        )
        .select_from(transfers)
        .join(source, source.c.id == transfers.c.from_account_id)
        .join(target, target.c.id == transfers.c.to_account_id)
        .where(transfers.c.id == transfer_id)
    )
    return (await conn.execute(query)).first()


def _is_account(key: AccountKey) -> Any:
    return (accounts.c.type == key.type) & (accounts.c.owner_id == key.owner_id) & (accounts.c.currency == key.currency)


async def account_row(conn: AsyncConnection, key: AccountKey) -> Any:
    return (await conn.execute(sa.select(accounts).where(_is_account(key)))).first()


async def account_transfer_rows(
    conn: AsyncConnection, key: AccountKey, size: int, before: int | None, kinds: Sequence[int]
) -> list[Any]:
    """The transfers that touched the account, newest entry first (up to size + 1, so the caller sees whether more
    follow), each with its entry id and the type and owner of its accounts (pending: of a reservation)."""
    source, target, pending = accounts.alias("source"), accounts.alias("target"), accounts.alias("pending")
    query = (
        sa.select(
            entries.c.id.label("entry_id"),
            transfers,
            source.c.type.label("from_type"),
            source.c.owner_id.label("from_owner"),
            target.c.type.label("to_type"),
            target.c.owner_id.label("to_owner"),
            pending.c.type.label("pending_type"),
            pending.c.owner_id.label("pending_owner"),
        )
        .select_from(entries)
        .join(accounts, accounts.c.id == entries.c.account_id)
        .join(transfers, transfers.c.id == entries.c.transfer_id)
        .join(source, source.c.id == transfers.c.from_account_id)
        .join(target, target.c.id == transfers.c.to_account_id)
        .outerjoin(pending, pending.c.id == transfers.c.pending_to_account_id)
        .where(_is_account(key))
        .order_by(entries.c.id.desc())
        .limit(size + 1)
    )
    if before is not None:
        query = query.where(entries.c.id < before)
    if kinds:
        query = query.where(transfers.c.kind.in_(list(kinds)))
    return list((await conn.execute(query)).all())


# A row of merchant_fee_periods (the columns the fee-period core reads).
FeePeriodRow = Any


async def fee_period_row(conn: AsyncConnection, merchant_id: str, first_day: datetime.date) -> FeePeriodRow | None:
    periods = merchant_fee_periods
    query = sa.select(periods).where(periods.c.merchant_id == merchant_id, periods.c.period_start == first_day)
    return (await conn.execute(query)).first()


async def lock_fee_period(conn: AsyncConnection, merchant_id: str, first_day: datetime.date) -> FeePeriodRow:
    """The month's period row, created (empty, ACCRUING) if nothing was redeemed in it yet, locked FOR UPDATE."""
    periods = merchant_fee_periods
    await conn.execute(
        pg.insert(periods).values(merchant_id=merchant_id, period_start=first_day).on_conflict_do_nothing()
    )
    query = (
        sa.select(periods)
        .where(periods.c.merchant_id == merchant_id, periods.c.period_start == first_day)
        .with_for_update()
    )
    return (await conn.execute(query)).one()


async def set_fee_period_status(
    conn: AsyncConnection, merchant_id: str, first_day: datetime.date, status: int
) -> FeePeriodRow:
    """Sets the status and stamps invoiced_at or paid_at (whichever it moves to)."""
    periods = merchant_fee_periods
    stamp = "invoiced_at" if status == pb.FEE_PERIOD_STATUS_INVOICED else "paid_at"
    query = (
        sa.update(periods)
        .where(periods.c.merchant_id == merchant_id, periods.c.period_start == first_day)
        .values(status=status, updated_at=sa.func.now(), **{stamp: sa.func.now()})
        .returning(*periods.c)
    )
    return (await conn.execute(query)).one()


stripe_accounts = sa.Table(
    "stripe_accounts",
    metadata,
    sa.Column("driver_id", sa.Text, primary_key=True),
    sa.Column("stripe_account_id", sa.Text, nullable=False, unique=True),
    sa.Column("details_submitted", sa.Boolean, nullable=False),
    sa.Column("payouts_enabled", sa.Boolean, nullable=False),
    sa.Column("charges_enabled", sa.Boolean, nullable=False),
    sa.Column("transfers_active", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

# A row of stripe_accounts.
StripeAccountRow = Any


async def stripe_account(conn: AsyncConnection, driver_id: str) -> StripeAccountRow | None:
    return (await conn.execute(sa.select(stripe_accounts).where(stripe_accounts.c.driver_id == driver_id))).first()


async def insert_stripe_account(conn: AsyncConnection, driver_id: str, stripe_account_id: str) -> None:
    """The driver's new Express account, nothing enabled yet; a row already there is kept."""
    await conn.execute(
        pg.insert(stripe_accounts)
        .values(
            driver_id=driver_id,
            stripe_account_id=stripe_account_id,
            details_submitted=False,
            payouts_enabled=False,
            charges_enabled=False,
            transfers_active=False,
        )
        .on_conflict_do_nothing(index_elements=[stripe_accounts.c.driver_id])
    )


async def update_stripe_account(conn: AsyncConnection, stripe_account_id: str, **flags: bool) -> None:
    await conn.execute(
        sa.update(stripe_accounts)
        .where(stripe_accounts.c.stripe_account_id == stripe_account_id)
        .values(**flags, updated_at=sa.func.now())
    )


@contextlib.asynccontextmanager
async def advisory_lock(engine: AsyncEngine, name: str) -> AsyncIterator[None]:
    """A session-level advisory lock on `name`, held on a connection of its own while the block runs."""
    lock = sa.func.hashtextextended(name, 0)
    async with engine.connect() as holder:
        await holder.execute(sa.select(sa.func.pg_advisory_lock(lock)))
        try:
            yield
        finally:
            await holder.execute(sa.select(sa.func.pg_advisory_unlock(lock)))


payouts = sa.Table(
    "payouts",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("driver_id", sa.Text, nullable=False),
    sa.Column("request_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("amount_cents", sa.Integer, nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("stripe_account_id", sa.Text, nullable=False),
    sa.Column("reservation_transfer_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("stripe_transfer_id", sa.Text),
    sa.Column("failure_reason", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("paid_at", sa.DateTime(timezone=True)),
)

stripe_events = sa.Table(
    "stripe_events",
    metadata,
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)


# Since migration 0005: the payments behind campaign budgets, the refunds owed on them, the idempotency record of
# RefundCampaignBudget, and what needs a person.
async def record_stripe_event(conn: AsyncConnection, event_id: str, event_type: str) -> bool:
    """Records the event as received; False when it was recorded before."""
    events = stripe_events
    seen = (
        await conn.execute(
            pg.insert(events)
            .values(event_id=event_id, type=event_type, outcome="received")
            .on_conflict_do_nothing(index_elements=[events.c.event_id])
            .returning(events.c.event_id)
        )
    ).first()
    return seen is not None


async def take_over_stripe_event(conn: AsyncConnection, event_id: str, lease: datetime.timedelta) -> bool:
    """Restarts the lease of an event received more than `lease` ago and never settled; False when there is none."""
    events = stripe_events
    taken = (
        await conn.execute(
            sa.update(events)
            .where(
                events.c.event_id == event_id,
                events.c.outcome == "received",
                events.c.received_at < sa.func.now() - lease,
            )
            .values(received_at=sa.func.now())
            .returning(events.c.event_id)
        )
    ).first()
    return taken is not None


async def forget_stripe_event(conn: AsyncConnection, event_id: str) -> None:
    await conn.execute(sa.delete(stripe_events).where(stripe_events.c.event_id == event_id))


async def settle_stripe_event(conn: AsyncConnection, event_id: str, outcome: str) -> None:
    await conn.execute(sa.update(stripe_events).where(stripe_events.c.event_id == event_id).values(outcome=outcome))


campaign_payments = sa.Table(
    "campaign_payments",
    metadata,
    sa.Column("checkout_session_id", sa.Text, primary_key=True),
    sa.Column("campaign_id", sa.Text, nullable=False),
    sa.Column("payment_intent_id", sa.Text),
    sa.Column("currency", sa.SmallInteger, nullable=False),
    sa.Column("gross_cents", sa.BigInteger, nullable=False),
    sa.Column("fee_cents", sa.BigInteger, nullable=False),
    sa.Column("net_cents", sa.BigInteger, nullable=False),
    sa.Column("booked_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

payment_refunds = sa.Table(
    "payment_refunds",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("checkout_session_id", sa.Text, nullable=False),
    sa.Column("payment_intent_id", sa.Text, nullable=False),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("stripe_refund_id", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("refunded_at", sa.DateTime(timezone=True)),
)

budget_refunds = sa.Table(
    "budget_refunds",
    metadata,
    sa.Column("scope", sa.Text, primary_key=True),
    sa.Column("idempotency_key", sa.Text, primary_key=True),
    sa.Column("campaign_id", sa.Text, nullable=False),
    sa.Column("requested_cents", sa.BigInteger, nullable=False),
    sa.Column("refunded_cents", sa.BigInteger, nullable=False),
    sa.Column("stripe_refunded_cents", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

payment_issues = sa.Table(
    "payment_issues",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("object_id", sa.Text, nullable=False, server_default=""),
    sa.Column("problem", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)


async def record_issue(conn: AsyncConnection, event_id: str, event_type: str, object_id: str, problem: str) -> None:
    """Something a person must look at (ListPaymentIssues); the same event and type are recorded once."""
    await conn.execute(
        pg.insert(payment_issues)
        .values(event_id=event_id, event_type=event_type, object_id=object_id[:255], problem=problem[:2000])
        .on_conflict_do_nothing(constraint="payment_issues_event_unique")
    )


async def onboarding_complete(conn: AsyncConnection, driver_id: str) -> bool:
    """The driver's Express account can take transfers (as last reported by Stripe)."""
    query = sa.select(stripe_accounts.c.transfers_active).where(stripe_accounts.c.driver_id == driver_id)
    return bool((await conn.execute(query)).scalar())


async def wallet_timeline_rows(conn: AsyncConnection, driver_id: str, limit: int) -> list[Any]:
    """The driver's wallet entries the timeline shows, newest first (at the same instant SPENT before EARNED,
    DOMAIN; then by entry id): grant credits, redemption debits, and — each its own item, so an EARNED (or
    SPENT) item is never left standing with nothing offsetting it — the reversal taking a reward back and the one
    giving a redemption's Nova back, with the original transfer's kind and metadata."""
    original = transfers.alias("original")
    grants = [pb.TRANSFER_KIND_CAMPAIGN_GRANT, pb.TRANSFER_KIND_ADMIN_GRANT]
    reversal, redemption = pb.TRANSFER_KIND_REVERSAL, pb.TRANSFER_KIND_REDEMPTION
    reversed_kind = sa.func.coalesce(original.c.kind, 0)
    shown = (
        (transfers.c.kind.in_(grants) & (entries.c.amount > 0))
        | ((transfers.c.kind == redemption) & (entries.c.amount < 0))
        | ((transfers.c.kind == reversal) & reversed_kind.in_(grants) & (entries.c.amount < 0))
        | ((transfers.c.kind == reversal) & (reversed_kind == redemption) & (entries.c.amount > 0))
    )
    query = (
        sa.select(
            entries.c.id,
            entries.c.amount,
            entries.c.created_at,
            accounts.c.currency,
            transfers.c.id.label("transfer_id"),
            transfers.c.kind,
            transfers.c.metadata,
            original.c.kind.label("original_kind"),
            original.c.metadata.label("original_metadata"),
        )
        .select_from(entries)
        .join(accounts, accounts.c.id == entries.c.account_id)
        .join(transfers, transfers.c.id == entries.c.transfer_id)
        .outerjoin(original, original.c.id == transfers.c.reversal_of)
        .where(
            accounts.c.owner_id == driver_id,
            accounts.c.type.in_([pb.ACCOUNT_TYPE_DRIVER_CASH, pb.ACCOUNT_TYPE_DRIVER_NOVA]),
            shown,
        )
        .order_by(entries.c.created_at.desc(), (transfers.c.kind == redemption).desc(), entries.c.id.desc())
        .limit(limit)
    )
    return list((await conn.execute(query)).all())


async def driver_balances(conn: AsyncConnection, driver_id: str) -> dict[int, int]:
    """The balances of the driver's cash, Nova and payouts-in-flight accounts, by account type (absent: never
    touched)."""
    query = sa.select(accounts.c.type, accounts.c.balance).where(
        accounts.c.owner_id == driver_id,
        accounts.c.type.in_(
            [pb.ACCOUNT_TYPE_DRIVER_CASH, pb.ACCOUNT_TYPE_DRIVER_NOVA, pb.ACCOUNT_TYPE_PAYOUTS_IN_FLIGHT]
        ),
    )
    return {row.type: row.balance for row in (await conn.execute(query)).all()}


async def driver_cash_totals(conn: AsyncConnection, driver_id: str) -> tuple[int, int]:
    """(earned, withdrawn) in cents: grants to the driver's cash less what reversals took back, and what posted
    payouts moved out of the in-flight account."""
    cash = cash_account_id(driver_id)
    in_flight = (
        sa.select(accounts.c.id)
        .where(accounts.c.owner_id == driver_id, accounts.c.type == pb.ACCOUNT_TYPE_PAYOUTS_IN_FLIGHT)
        .scalar_subquery()
    )
    earned = (
        sa.select(sa.func.coalesce(sa.func.sum(transfers.c.amount), 0))
        .where(
            transfers.c.to_account_id == cash,
            transfers.c.kind.in_([pb.TRANSFER_KIND_CAMPAIGN_GRANT, pb.TRANSFER_KIND_ADMIN_GRANT]),
        )
        .scalar_subquery()
    )
    clawed = (
        sa.select(sa.func.coalesce(sa.func.sum(transfers.c.amount), 0))
        .where(transfers.c.from_account_id == cash, transfers.c.kind == pb.TRANSFER_KIND_REVERSAL)
        .scalar_subquery()
    )
    withdrawn = (
        sa.select(sa.func.coalesce(sa.func.sum(transfers.c.amount), 0))
        .where(transfers.c.from_account_id == in_flight, transfers.c.phase == pb.TRANSFER_PHASE_POST)
        .scalar_subquery()
    )
    totals = (await conn.execute(sa.select(earned - clawed, withdrawn))).one()
    return int(totals[0]), int(totals[1])


def cash_account_id(driver_id: str) -> Any:
    """The id of the driver's cash account, as a scalar subquery."""
    return (
        sa.select(accounts.c.id)
        .where(
            accounts.c.owner_id == driver_id,
            accounts.c.type == pb.ACCOUNT_TYPE_DRIVER_CASH,
            accounts.c.currency == pb.CURRENCY_CASH_CENTS,
        )
        .scalar_subquery()
    )


async def cash_entry_rows(
    conn: AsyncConnection, driver_id: str, size: int, before: int | None, offset: int
) -> tuple[list[Any], int]:
    """A page of the driver's cash entries, newest first (up to size + 1, so the caller sees whether more follow),
    each with its transfer's kind, phase and metadata and, for a reversal, the reversed transfer's metadata (a
    clawback names its grant, not the campaign); and how many entries the account holds."""
    original = transfers.alias("original")
    account = cash_account_id(driver_id)
    query = (
        sa.select(
            entries.c.id,
            entries.c.amount,
            entries.c.balance_after,
            entries.c.created_at,
            transfers.c.kind,
            transfers.c.phase,
            transfers.c.metadata,
            original.c.metadata.label("original_metadata"),
        )
        .select_from(entries)
        .join(transfers, transfers.c.id == entries.c.transfer_id)
        .outerjoin(original, original.c.id == transfers.c.reversal_of)
        .where(entries.c.account_id == account)
        .order_by(entries.c.id.desc())
        .limit(size + 1)
    )
    if before is not None:
        query = query.where(entries.c.id < before)
    elif offset:
        query = query.offset(offset)
    rows = list((await conn.execute(query)).all())
    count = (await conn.execute(sa.select(sa.func.count()).where(entries.c.account_id == account))).scalar() or 0
    return rows, int(count)


async def payment_issues_page(engine: AsyncEngine, limit: int) -> list[Any]:
    """The newest issues first."""
    async with engine.connect() as conn:
        return list(
            (await conn.execute(sa.select(payment_issues).order_by(payment_issues.c.id.desc()).limit(limit))).all()
        )


async def count_payouts(conn: AsyncConnection, status: int) -> int:
    return int((await conn.execute(sa.select(sa.func.count()).where(payouts.c.status == status))).scalar_one())


async def driver_connection(conn: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under a SQLAlchemy one, for post_transfer_in() in the same transaction."""
    raw = await conn.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
    return driver


async def post_transfer_in(
    conn: asyncpg.Connection, scope: str, key: str, request_hash: bytes, movement: Movement
) -> PostResult:
    """post_transfer() inside the caller's open transaction (the payout row and the reservation commit
    together). The caller must already have a transaction open on ``conn``."""
    assert conn.is_in_transaction(), "post_transfer_in needs an open transaction"
    row = await conn.fetchrow(_POST, *_arguments(scope, key, request_hash, movement))
    assert row is not None
    return _result(row)


# One round trip and one commit for a whole batch: the movements are unnested and post_transfer() runs for
# each, in order, inside one statement. Refusals are rows, so one refused transfer never undoes the others.
_POST_BATCH = """
SELECT posted.* FROM unnest(
    $1::text[], $2::text[], $3::bytea[], $4::uuid[], $5::int2[], $6::int2[], $7::int2[], $8::int8[],
    $9::int2[], $10::text[], $11::int2[], $12::text[], $13::text[], $14::bool[], $15::uuid[], $16::int2[],
    $17::text[], $18::uuid[], $19::int2[]
) WITH ORDINALITY AS posting(scope, key, hash, id, kind, phase, currency, amount, from_type, from_owner, to_type,
                       to_owner, metadata, up_to_available, reversal_of, pending_type, pending_owner,
                       reservation_id, reservation_state, position)
CROSS JOIN LATERAL post_transfer(
    posting.scope, posting.key, posting.hash, posting.id, posting.kind, posting.phase, posting.currency,
    posting.amount, posting.from_type, posting.from_owner, posting.to_type, posting.to_owner, posting.metadata::jsonb,
    posting.up_to_available, posting.reversal_of, posting.pending_type, posting.pending_owner, posting.reservation_id,
    posting.reservation_state
) AS posted
ORDER BY posting.position
"""


async def post_transfer_in_transaction(
    conn: AsyncConnection, scope: str, key: str, request_hash: bytes, movement: Movement
) -> PostResult:
    """post_transfer() inside the caller's SQLAlchemy transaction, so that what the caller writes next commits
    with the transfer."""
    await conn.execute(sa.select(1))  # SQLAlchemy sends BEGIN with the first statement; the post needs it
    return await post_transfer_in(await driver_connection(conn), scope, key, request_hash, movement)


@dataclasses.dataclass
class _Pending:
    arguments: tuple[Any, ...]
    done: asyncio.Future[PostResult]


class TransferWriter:
    """Group commit for single transfers: concurrent post_transfer() calls are written together.

    One writer task takes everything queued, runs it as one statement (one round trip, one commit, one WAL
    flush), answers each caller, and repeats. Nothing waits for a batch to fill: an idle writer sends a lone
    transfer at once, and batches grow only while the previous one is in flight — under load. Batches are
    written one at a time, so two batches of this process never wait on each other's locks. If a batch
    fails as a whole (a deadlock with another process, a lost connection), its transfers are retried one by
    one, where each is its own transaction again; idempotency makes the retry exact.
    """

    def __init__(self, pool: asyncpg.Pool, max_batch: int = 128) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def post(self, scope: str, key: str, request_hash: bytes, movement: Movement) -> PostResult:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        pending = _Pending(_arguments(scope, key, request_hash, movement), asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        self._wake.set()
        return await pending.done

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                await self._write(batch)

    async def _write(self, batch: list[_Pending]) -> None:
        try:
            async with self._pool.acquire() as conn:
                columns = list(zip(*(p.arguments for p in batch), strict=True))
                rows = await conn.fetch(_POST_BATCH, *columns)
            for pending, row in zip(batch, rows, strict=True):
                if not pending.done.done():
                    pending.done.set_result(_result(row))
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
            for pending in batch:
                await self._write_one(pending)

    async def _write_one(self, pending: _Pending) -> None:
        for attempt in range(5):
            try:
                async with self._pool.acquire() as conn:
                    row = await conn.fetchrow(_POST, *pending.arguments)
                assert row is not None
                pending.done.set_result(_result(row))
                return
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
                retryable = getattr(exc, "sqlstate", None) in _RETRYABLE_SQLSTATES or not isinstance(
                    exc, asyncpg.PostgresError
                )
                if not retryable or attempt == 4:
                    if not pending.done.done():
                        pending.done.set_exception(exc)
                    return
                await asyncio.sleep(0.005 * 2**attempt)
