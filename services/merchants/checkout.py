"""QR checkout: spending a driver's Nova at a merchant, exactly once, consistent with the ledger without a
distributed transaction.

1. The redemption is written PENDING first, in one statement that also enforces "one redemption per driver and
   idempotency key" and "a Square order at most once per merchant" (unique indexes) — so a duplicate Square
   order is refused before anything is debited (🐞 the first implementation debited first).
2. The ledger is asked, synchronously, for one REDEMPTION transfer driver Nova → merchant Nova, keyed by
   "redemption:<id>", of min(perk, order total) *up to the driver's balance*: the ledger takes the smaller of
   that and the balance under its row lock, which makes discount = min(perk, Nova balance, order total)
   atomic however many redemptions race. Its merchant-fee trigger accrues the 15 % in the same transaction.
3. The answer moves the redemption to COMPLETED (with the transfer, discount, fee and the balance after) or
   FAILED (a definitive refusal: no Nova). A lost answer leaves it PENDING; the same request again, or the
   settling worker, asks the ledger again with the same key, which the ledger answers from its idempotency
   record — so the Nova moves at most once, and a COMPLETED redemption always has its transfer (a CHECK
   constraint) while a debit without a COMPLETED redemption lasts only until the next settle.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import hashlib
import logging
import types
import uuid
from typing import Any, Protocol

import asyncpg
import sqlalchemy as sa
from nerava.merchants.v1 import merchants_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.context import Caller
from services.common.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    Unavailable,
)
from services.merchants import domain, store
from services.merchants.adapters.square import (
    SquareAccounts,
    SquareAuthError,
    SquareNotFound,
    SquareOrder,
    SquareUnavailable,
)
from services.merchants.peers import (
    RedemptionTransfer,
    RedemptionTransfers,
    TransferRefused,
    TransferUnknown,
)
from services.merchants.reasons import Reason
from services.merchants.records import is_admin

log = logging.getLogger(__name__)


PENDING, COMPLETED, FAILED = (
    pb.REDEMPTION_STATUS_PENDING,
    pb.REDEMPTION_STATUS_COMPLETED,
    pb.REDEMPTION_STATUS_FAILED,
)


class _SquareTokens(Protocol):
    """The Square onboarding group (onboarding.py), which keeps the stores' Square connections."""

    async def square_access_token(self, merchant_id: str) -> tuple[str, str] | None: ...


# The namespace of the idempotency keys derived from a Square order id, when the app sends no key of its own.
SQUARE_ORDER_KEYS = uuid.UUID("5f0b8a39-3c1e-4d27-9a51-7e4c2b6d8f10")


def request_hash(qr_token: str, order_total_cents: int, square_order_id: str) -> bytes:
    """What an idempotency key is bound to: the same key with another request is IDEMPOTENCY_KEY_REUSED."""
    return hashlib.sha256(f"{qr_token}\x1f{order_total_cents}\x1f{square_order_id}".encode()).digest()


def redemption_transfer(row: Any) -> RedemptionTransfer:
    """The one ledger transfer of a redemption row — the same on every attempt, so the ledger replays it."""
    return RedemptionTransfer(
        redemption_id=str(row.id),
        driver_id=row.driver_id,
        merchant_id=row.merchant_id,
        merchant_name=row.merchant_name,
        amount=row.requested_discount_cents,
    )


def _no_nova(row: Any) -> FailedPrecondition:
    return FailedPrecondition(
        Reason.INSUFFICIENT_BALANCE, "the driver has no Nova to spend here", {"redemption_id": str(row.id)}
    )


# The hot path runs on asyncpg directly (Checkout.pool): prepared statements, no ORM layer. A first redemption
# is two statements before the ledger call (the store by its QR token; the insert, which is also the check of
# the driver's key) and one after it.
# Enum values by name in the SQL text (tests/test_enum_names.py).
_PENDING, _COMPLETED, _FAILED = (
    pb.REDEMPTION_STATUS_PENDING,
    pb.REDEMPTION_STATUS_COMPLETED,
    pb.REDEMPTION_STATUS_FAILED,
)
_STORE_BY_QR = f"""
SELECT id, name, custom_perk_cents, recommended_perk_cents, perk_label FROM merchants
WHERE qr_token = $1 AND status = {pb.MERCHANT_STATUS_ACTIVE}"""
_COLUMNS = ", ".join(column.name for column in store.redemptions.c)
_INSERT = f"""
INSERT INTO redemptions (id, merchant_id, merchant_name, driver_id, idempotency_key, request_hash, square_order_id,
                         order_total_cents, requested_discount_cents)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (driver_id, idempotency_key) DO NOTHING
RETURNING {_COLUMNS}"""
_BY_KEY = f"SELECT {_COLUMNS} FROM redemptions WHERE driver_id = $1 AND idempotency_key = $2"
_BY_ID = f"SELECT {_COLUMNS} FROM redemptions WHERE id = $1"
_EARLIER_ORDER = f"""
SELECT id, driver_id FROM redemptions WHERE square_order_id = $1 AND status <> {_FAILED}"""
_COMPLETE = f"""
UPDATE redemptions SET status = {_COMPLETED}, discount_cents = $2, merchant_fee_cents = $3, transfer_id = $4,
       nova_balance_after = $5, attempts = attempts + 1, settled_at = now()
WHERE id = $1 AND status = {_PENDING}
RETURNING {_COLUMNS}"""
_FAIL = f"""
UPDATE redemptions SET status = {_FAILED}, failure_reason = $2, attempts = attempts + 1, settled_at = now()
WHERE id = $1 AND status = {_PENDING}
RETURNING {_COLUMNS}"""
_ATTEMPTED = "UPDATE redemptions SET attempts = attempts + 1 WHERE id = $1"
_PENDING_BEFORE = (
    f"SELECT {_COLUMNS} FROM redemptions WHERE status = {_PENDING} AND created_at < $1 ORDER BY created_at LIMIT 100"
)


async def redemption_with_owner(conn: AsyncConnection, redemption_id: uuid.UUID) -> Any:
    """The redemption with its store's owner (who may read it too); None when unknown. Not on the hot path:
    SQLAlchemy Core."""
    return (
        await conn.execute(
            sa.select(store.redemptions, store.merchants.c.owner_user_id)
            .join(store.merchants, store.merchants.c.id == store.redemptions.c.merchant_id)
            .where(store.redemptions.c.id == redemption_id)
        )
    ).first()


def _row(record: Any) -> Any:
    """A redemption record with attribute access, as the rest of the module reads rows."""
    return types.SimpleNamespace(**dict(record))


_REDEEMED_ORDERS = (
    f"SELECT square_order_id FROM redemptions WHERE square_order_id = ANY($1::text[]) AND status <> {_FAILED}"
)
DEFAULT_RECENT_MINUTES = 10


class Settlement:
    """The core that settles a PENDING redemption with the ledger: the checkout handlers and the settling worker
    both call it (the worker never reaches the servicer)."""

    def __init__(self, pool: asyncpg.Pool, ledger: RedemptionTransfers) -> None:
        self.pool = pool
        self.ledger = ledger

    async def settle(self, row: Any) -> Any:
        """Asks the ledger for the redemption's transfer (again, with the same key) and records the outcome;
        returns the row as it now stands (still PENDING when the ledger did not answer)."""
        outcome = await self.ledger.post(redemption_transfer(row))
        if isinstance(outcome, TransferRefused):
            return await self._record(_FAIL, row.id, "INSUFFICIENT_BALANCE")
        if isinstance(outcome, TransferUnknown):
            log.warning(
                "redemption left pending: the ledger did not settle it",
                extra={"redemption_id": str(row.id), "code": outcome.code, "reason": outcome.reason},
            )
            await self.pool.execute(_ATTEMPTED, row.id)
            return _row(await self.pool.fetchrow(_BY_ID, row.id))
        return await self._record(
            _COMPLETE,
            row.id,
            outcome.amount,
            outcome.merchant_fee_cents,
            uuid.UUID(outcome.transfer_id),
            outcome.driver_balance_after,
        )

    async def _record(self, statement: str, redemption_id: uuid.UUID, *outcome: Any) -> Any:
        """PENDING → the outcome, once; a concurrent settle of the same redemption records the same outcome."""
        record = await self.pool.fetchrow(statement, redemption_id, *outcome)
        return _row(record if record is not None else await self.pool.fetchrow(_BY_ID, redemption_id))

    async def pending_before(self, cutoff: datetime.datetime) -> list[Any]:
        """Redemptions still PENDING that were created before `cutoff` (a batch, oldest first)."""
        return [_row(record) for record in await self.pool.fetch(_PENDING_BEFORE, cutoff)]


@dataclasses.dataclass(frozen=True)
class RecentOrder:
    """A Square order of the store's location, and whether a redemption already used it."""

    order: SquareOrder
    redeemed: bool


@dataclasses.dataclass(frozen=True)
class RecentOrders:
    """The store a scanned QR code names, its perk, and its recent Square orders (none when the store has no
    Square connection or the seller revoked it: the page falls back to a typed total)."""

    merchant_id: str
    merchant_name: str
    perk: domain.Perk
    orders: list[RecentOrder]


@dataclasses.dataclass(frozen=True)
class Redeemed:
    """A COMPLETED redemption (its row) and whether this request only replayed an earlier one."""

    redemption: Any
    replayed: bool


class Checkout:
    """Redemptions at checkout: the recent Square orders a driver picks from, the redemption itself (exactly once,
    settled with the ledger through `Settlement`), and reading one back."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        reads: AsyncEngine,
        ledger: RedemptionTransfers,
        square: SquareAccounts,
        square_tokens: _SquareTokens,
    ) -> None:
        self.pool = pool
        self.reads = reads
        self.square = square
        # The onboarding group's Square tokens (onboarding.py), handed in by the servicer that composes both.
        self.square_tokens = square_tokens
        # The same core the settling worker calls (workers.py).
        self.settlement = Settlement(pool, ledger)

    async def recent_square_orders(self, qr_token: str, minutes: int) -> RecentOrders:
        """The store behind `qr_token` (QR_TOKEN_UNKNOWN unless it is live) and its Square orders of the last
        `minutes`."""
        merchant = await self.pool.fetchrow(_STORE_BY_QR, qr_token)
        if merchant is None:
            raise NotFound(Reason.QR_TOKEN_UNKNOWN, "this QR code is not a live Nerava checkout")
        perk = domain.merchant_perk(
            merchant["custom_perk_cents"], merchant["recommended_perk_cents"], merchant["perk_label"]
        )
        answer = RecentOrders(merchant_id=merchant["id"], merchant_name=merchant["name"], perk=perk, orders=[])
        tokens = await self.square_tokens.square_access_token(merchant["id"])
        if tokens is None:
            return answer
        access_token, location_id = tokens
        since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=minutes)
        try:
            orders = await self.square.recent_orders(access_token, location_id, since)
        except SquareAuthError:
            # The seller revoked us: as good as not connected (the page falls back to a typed total; the portal
            # tells the owner to reconnect).
            log.warning("Square refused the orders search", extra={"merchant_id": merchant["id"]})
            return answer
        except SquareUnavailable:
            raise Unavailable(Reason.SQUARE_UNAVAILABLE, "Square did not answer; try again") from None
        redeemed = {row["square_order_id"] for row in await self.pool.fetch(_REDEEMED_ORDERS, [o.id for o in orders])}
        answer.orders.extend(RecentOrder(order, order.id in redeemed) for order in orders)
        return answer

    async def redeem(
        self, driver_id: str, qr_token: str, order_total_cents: int, square_order_id: str, idempotency_key: str
    ) -> Redeemed:
        """Spends the driver's Nova at the store behind `qr_token`, once per idempotency key (or, without one, per
        Square order); `square_order_id` empty means the typed `order_total_cents` is the total, else Square's
        total counts."""
        if idempotency_key:
            key = uuid.UUID(idempotency_key)
            fingerprint = request_hash(qr_token, order_total_cents, square_order_id)
        else:  # keyed by the Square order (the contract requires one of the two)
            key = uuid.uuid5(SQUARE_ORDER_KEYS, square_order_id)
            fingerprint = request_hash(qr_token, 0, square_order_id)
        if square_order_id:
            # A replay must not depend on Square answering again: look for it first.
            existing = await self._by_key(driver_id, key)
            if existing is not None:
                return await self._replay(existing, fingerprint)
        merchant = await self.pool.fetchrow(_STORE_BY_QR, qr_token)
        if merchant is None:
            existing = await self._by_key(driver_id, key)  # the stored answer stands if the store paused since
            if existing is not None:
                return await self._replay(existing, fingerprint)
            raise NotFound(Reason.QR_TOKEN_UNKNOWN, "this QR code is not a live Nerava checkout")
        total = order_total_cents
        if square_order_id:
            total = await self._square_order_total(merchant["id"], square_order_id)
        perk = domain.merchant_perk(
            merchant["custom_perk_cents"], merchant["recommended_perk_cents"], merchant["perk_label"]
        )
        try:
            record = await self.pool.fetchrow(
                _INSERT,
                uuid.uuid4(),
                merchant["id"],
                merchant["name"],
                driver_id,
                key,
                fingerprint,
                square_order_id or None,
                total,
                domain.discount_cap_cents(perk.cents, total),
            )
        except asyncpg.UniqueViolationError as error:
            if error.constraint_name != "redemptions_square_order_once":
                raise
            earlier = await self.pool.fetchrow(_EARLIER_ORDER, square_order_id)
            # The earlier redemption is named to its own driver only: another driver's id is not theirs to see.
            mine = "" if earlier is None or earlier["driver_id"] != driver_id else str(earlier["id"])
            raise AlreadyExists(
                Reason.ORDER_ALREADY_REDEEMED,
                "this Square order was already redeemed; nothing was debited",
                {"redemption_id": mine},
            ) from None
        if record is None:  # the key was used before (or concurrently): answer as its replay
            existing = await self._by_key(driver_id, key)
            assert existing is not None
            return await self._replay(existing, fingerprint)
        return _completed(await self.settlement.settle(_row(record)), replayed=False)

    async def _by_key(self, driver_id: str, key: uuid.UUID) -> Any:
        record = await self.pool.fetchrow(_BY_KEY, driver_id, key)
        return None if record is None else _row(record)

    async def _replay(self, row: Any, fingerprint: bytes) -> Redeemed:
        if row.request_hash != fingerprint:
            raise Aborted(
                Reason.IDEMPOTENCY_KEY_REUSED,
                "this idempotency key was used for a different redemption",
                {"redemption_id": str(row.id)},
            )
        if row.status == PENDING:
            row = await self.settlement.settle(row)
        return _completed(row, replayed=True)

    async def _square_order_total(self, merchant_id: str, order_id: str) -> int:
        """Square's total for the order (the client's total is ignored), which must belong to the merchant's
        connected location."""
        tokens = await self.square_tokens.square_access_token(merchant_id)
        if tokens is None:
            raise FailedPrecondition(Reason.SQUARE_NOT_CONNECTED, "this merchant has no Square connection")
        access_token, location_id = tokens
        try:
            order = await self.square.get_order(access_token, order_id)
        except SquareNotFound:
            raise FailedPrecondition(Reason.SQUARE_ORDER_UNAVAILABLE, "Square has no such order") from None
        except SquareAuthError:
            raise FailedPrecondition(
                Reason.SQUARE_NOT_CONNECTED, "the merchant's Square connection was revoked; reconnect Square"
            ) from None
        except SquareUnavailable:
            raise Unavailable(Reason.SQUARE_UNAVAILABLE, "Square did not answer; retry with the same key") from None
        if (
            order.location_id != location_id
            or not order.total_cents
            or order.state == "CANCELED"
            or (order.currency or "USD") != "USD"  # Nova discounts are US cents
        ):
            raise FailedPrecondition(
                Reason.SQUARE_ORDER_UNAVAILABLE,
                "the order has no total in USD, was canceled, or belongs to another location",
            )
        return order.total_cents

    async def redemption(self, redemption_id: str, caller: Caller) -> Any:
        """The redemption, for its driver, its store's owner or an admin; REDEMPTION_NOT_FOUND for anyone else."""
        async with self.reads.connect() as conn:
            row = await redemption_with_owner(conn, uuid.UUID(redemption_id))
        if row is None or not (is_admin(caller) or caller.user_id in {row.driver_id, row.owner_user_id}):
            raise NotFound(Reason.REDEMPTION_NOT_FOUND, "no such redemption", {"redemption_id": redemption_id})
        return row


def _completed(row: Any, *, replayed: bool) -> Redeemed:
    """The answer to a redemption as settled so far: INSUFFICIENT_BALANCE when it FAILED, LEDGER_UNAVAILABLE while
    it is still PENDING (the same key again settles it)."""
    if row.status == FAILED:
        raise _no_nova(row)
    if row.status == PENDING:
        raise Unavailable(
            Reason.LEDGER_UNAVAILABLE,
            "the redemption is pending: the ledger did not answer; retry with the same idempotency key",
            {"redemption_id": str(row.id)},
        )
    return Redeemed(row, replayed)


async def settle_pending(settlement: Settlement, stop: asyncio.Event, every_s: float, after_s: float) -> None:
    """Settles redemptions left PENDING (their ledger answer was lost) with the same key, until `stop`."""
    while not stop.is_set():
        cutoff = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=after_s)
        try:
            for row in await settlement.pending_before(cutoff):
                await settlement.settle(row)
        except Exception:  # a worker must outlive a database or ledger outage
            log.exception("settling pending redemptions failed; retrying")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
