"""Cash payouts through Stripe Express: request, settle, reconcile.

The money side is two-phase in the ledger. A request reserves the amount (driver cash → the driver's
payouts-in-flight account) in the same transaction that writes the payout row, so a payout never exists
without its reservation nor the reverse. Then Stripe is asked for the transfer with the payout id as its
idempotency key:
- an answer → `processing`; a refusal → `failed` and the reservation is voided (the funds come back,
  once, as a reversal entry);
- no answer (timeout, 5xx, lost connection) → `unknown`: Stripe may or may not have made the transfer,
  so nothing is refunded; once the lost call is surely over, the reconciliation worker asks Stripe: a
  transfer for the payout → `processing`; none → `failed`, and the funds come back.
Webhooks then move `processing` to `paid` (the reservation is posted: the money left) or `failed`
(voided). Every status change is a conditional update that follows domain.TRANSITIONS.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import prometheus_client
import sqlalchemy as sa
from nerava.ledger.v1 import ledger_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import audit
from services.common.errors import Aborted, DomainError, FailedPrecondition, InvalidArgument, ResourceExhausted
from services.ledger import domain, store
from services.ledger.adapters.stripe_payouts import AccountStatus, StripeAdapterError, StripeRefused, StripeUnavailable
from services.ledger.reasons import Reason

log = logging.getLogger(__name__)
SCOPE = "service:ledger-payouts"  # idempotency scope of the ledger's own payout movements
CASH = pb.CURRENCY_CASH_CENTS
# A withdrawal without request_id of the same amount as one requested this recently is its retry (the app sends
# no idempotency key; a double tap or a network retry must pay once).
RETRY_WINDOW = datetime.timedelta(minutes=10)


class Stripe(Protocol):
    """What the payout flow needs from the Stripe adapter (services/ledger/adapters/stripe_payouts.py)."""

    async def create_express_account(
        self, driver_id: str, email: str | None, *, idempotency_key: str | None = None
    ) -> str: ...

    async def create_account_link(self, account_id: str, refresh_url: str, return_url: str) -> str: ...

    async def get_account_status(self, account_id: str) -> AccountStatus: ...

    async def create_transfer(self, amount_cents: int, destination_account: str, payout_id: str) -> str: ...

    async def find_transfer_by_payout(self, payout_id: str) -> str | None: ...

    async def create_refund(self, payment_intent_id: str, amount_cents: int, refund_id: str) -> str: ...


# Payouts whose Stripe answer was lost (measured by every reconciliation pass): money that left a driver's balance
# and may or may not have reached Stripe. Read by the alerts in deploy/k8s/components/monitoring.
UNKNOWN_PAYOUTS = prometheus_client.Gauge("nerava_payouts_unknown", "Payouts in status UNKNOWN.")
UNKNOWN_OLDEST = prometheus_client.Gauge(
    "nerava_payouts_unknown_oldest_seconds", "How long the oldest UNKNOWN payout has been unknown (0: none)."
)


@dataclasses.dataclass(frozen=True)
class PayoutRow:
    id: uuid.UUID
    driver_id: str
    amount_cents: int
    status: int
    stripe_account_id: str
    reservation_transfer_id: uuid.UUID
    stripe_transfer_id: str | None
    failure_reason: str | None
    created_at: datetime.datetime
    paid_at: datetime.datetime | None


_LIMIT_ERRORS: dict[str, type[DomainError]] = {
    Reason.PAYOUT_BELOW_MINIMUM: InvalidArgument,
    Reason.PAYOUT_DAILY_LIMIT: ResourceExhausted,
    Reason.PAYOUT_WEEKLY_LIMIT: ResourceExhausted,
}
_LIMIT_MESSAGES = {
    "PAYOUT_BELOW_MINIMUM": "the minimum withdrawal is $20.00",
    "PAYOUT_DAILY_LIMIT": "at most 3 withdrawals per day (UTC)",
    "PAYOUT_WEEKLY_LIMIT": "at most $1,000.00 in withdrawals per 7 days",
}


def _row(record: Any) -> PayoutRow:
    return PayoutRow(
        id=record.id,
        driver_id=record.driver_id,
        amount_cents=record.amount_cents,
        status=record.status,
        stripe_account_id=record.stripe_account_id,
        reservation_transfer_id=record.reservation_transfer_id,
        stripe_transfer_id=record.stripe_transfer_id,
        failure_reason=record.failure_reason,
        created_at=record.created_at,
        paid_at=record.paid_at,
    )


def _movement(kind_phase: int, from_key: store.AccountKey, to_key: store.AccountKey, **extra: Any) -> store.Movement:
    return store.Movement(
        kind=pb.TRANSFER_KIND_PAYOUT,
        phase=kind_phase,
        currency=CASH,
        amount=extra.pop("amount", None),
        from_account=from_key,
        to_account=to_key,
        metadata=extra.pop("metadata", {}),
        **extra,
    )


class Payouts:
    def __init__(self, engine: AsyncEngine, stripe: Stripe, clock: Callable[[], datetime.datetime]) -> None:
        self._engine = engine
        self._stripe = stripe
        self._clock = clock

    # --- requesting ----------------------------------------------------------------------------------

    async def request(self, driver_id: str, request_id: uuid.UUID | None, amount_cents: int) -> PayoutRow:
        """Reserves the funds and asks Stripe; idempotent on (driver, request_id). Without a request_id (today's
        app sends none) a payout of the same amount requested in the last RETRY_WINDOW is the same request."""
        if amount_cents < domain.MINIMUM_WITHDRAWAL_CENTS:
            raise InvalidArgument(
                [("amount_cents", _LIMIT_MESSAGES["PAYOUT_BELOW_MINIMUM"])], reason=Reason.PAYOUT_BELOW_MINIMUM
            )
        payout = await self._reserve(driver_id, request_id, amount_cents)
        if payout.status != pb.PAYOUT_STATUS_PENDING or payout.stripe_transfer_id:
            return payout  # a replay of a request already sent to Stripe
        return await self._send_to_stripe(payout)

    async def _reserve(self, driver_id: str, request_id: uuid.UUID | None, amount_cents: int) -> PayoutRow:
        accounts, payouts = store.stripe_accounts, store.payouts
        now = self._clock()
        async with self._engine.begin() as conn:
            # Locking the driver's Stripe row serializes this driver's requests, so two concurrent
            # requests cannot both pass the daily and weekly limits.
            account = (
                await conn.execute(sa.select(accounts).where(accounts.c.driver_id == driver_id).with_for_update())
            ).first()
            if account is None:
                raise FailedPrecondition(Reason.STRIPE_ACCOUNT_MISSING, "set up payouts first (Stripe account)")
            if not account.transfers_active:
                raise FailedPrecondition(
                    Reason.STRIPE_ONBOARDING_INCOMPLETE, "finish Stripe onboarding before withdrawing"
                )
            if request_id is None:
                # Under the lock above, so two copies of one request cannot both miss each other.
                found = await conn.execute(
                    sa.select(payouts)
                    .where(
                        payouts.c.driver_id == driver_id,
                        payouts.c.amount_cents == amount_cents,
                        payouts.c.created_at > now - RETRY_WINDOW,
                        # A FAILED payout moved nothing: asking again is a new attempt, not a replay.
                        payouts.c.status != pb.PAYOUT_STATUS_FAILED,
                    )
                    .order_by(payouts.c.created_at.desc())
                    .limit(1)
                )
                existing = found.first()
                request_id = uuid.uuid4()
            else:
                existing = (
                    await conn.execute(
                        sa.select(payouts).where(payouts.c.driver_id == driver_id, payouts.c.request_id == request_id)
                    )
                ).first()
            if existing is not None:
                if existing.amount_cents != amount_cents:
                    raise Aborted(Reason.IDEMPOTENCY_KEY_REUSED, "this request_id was used for another amount")
                return _row(existing)
            day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
            counted = payouts.c.status.in_(sorted(domain.LIMITED_STATUSES))
            today, week = (
                await conn.execute(
                    sa.select(
                        sa.func.count().filter(payouts.c.created_at >= day_start),
                        sa.func.coalesce(
                            sa.func.sum(payouts.c.amount_cents).filter(
                                payouts.c.created_at > now - datetime.timedelta(days=7)
                            ),
                            0,
                        ),
                    ).where(payouts.c.driver_id == driver_id, counted)
                )
            ).one()
            refusal = domain.payout_limit_refusal(amount_cents, int(today), int(week))
            if refusal is not None:
                raise _LIMIT_ERRORS[refusal](refusal, _LIMIT_MESSAGES[refusal])
            payout_id = uuid.uuid4()
            reservation = await store.post_transfer_in(
                await store.driver_connection(conn),
                SCOPE,
                f"payout:{payout_id}:reserve",
                payout_id.bytes,
                _movement(
                    pb.TRANSFER_PHASE_RESERVE,
                    store.AccountKey(pb.ACCOUNT_TYPE_DRIVER_CASH, driver_id, CASH),
                    store.AccountKey(pb.ACCOUNT_TYPE_PAYOUTS_IN_FLIGHT, driver_id, CASH),
                    amount=amount_cents,
                    pending_to=store.AccountKey(pb.ACCOUNT_TYPE_EXTERNAL_FUNDING, "stripe-payouts", CASH),
                    metadata={"payout_id": str(payout_id), "description": "Withdrawal"},
                ),
            )
            if reservation.error_reason is not None:
                # Raising rolls back the whole transaction: no payout row, no remembered reservation.
                raise FailedPrecondition(
                    reservation.error_reason,
                    "your available balance is lower than this withdrawal",
                    {k: str(v) for k, v in reservation.error_metadata.items()},
                )
            inserted = (
                await conn.execute(
                    sa.insert(payouts)
                    .values(
                        id=payout_id,
                        driver_id=driver_id,
                        request_id=request_id,
                        amount_cents=amount_cents,
                        status=pb.PAYOUT_STATUS_PENDING,
                        stripe_account_id=account.stripe_account_id,
                        reservation_transfer_id=reservation.transfer_id,
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(payouts)
                )
            ).one()
            await audit.record(
                conn, "payout.request", f"payout:{payout_id}", amount_cents=amount_cents, driver_id=driver_id
            )
        return _row(inserted)

    async def _send_to_stripe(self, payout: PayoutRow) -> PayoutRow:
        try:
            transfer_id = await self._stripe.create_transfer(
                payout.amount_cents, payout.stripe_account_id, str(payout.id)
            )
        except StripeRefused as refusal:
            return await self.fail(payout.id, f"stripe refused: {refusal.code or refusal}")
        except StripeUnavailable:
            # The transfer may exist. Unknown is settled by reconciliation, never by refunding blindly.
            log.warning("stripe answer lost; payout is unknown until reconciled", extra={"payout_id": str(payout.id)})
            return await self._move(payout.id, pb.PAYOUT_STATUS_UNKNOWN)
        return await self._move(payout.id, pb.PAYOUT_STATUS_PROCESSING, stripe_transfer_id=transfer_id)

    # --- settling ------------------------------------------------------------------------------------

    async def _move(self, payout_id: uuid.UUID, target: int, **values: Any) -> PayoutRow:
        """Moves the payout to ``target`` if the transition table allows it from its current status;
        returns the payout as it is afterwards (unchanged when the transition was not allowed)."""
        payouts = store.payouts
        allowed_from = sorted(s for s, targets in domain.TRANSITIONS.items() if target in targets)
        now = self._clock()
        async with self._engine.begin() as conn:
            moved = (
                await conn.execute(
                    sa.update(payouts)
                    .where(payouts.c.id == payout_id, payouts.c.status.in_(allowed_from))
                    .values(status=target, updated_at=now, **values)
                    .returning(payouts)
                )
            ).first()
            if moved is not None:
                return _row(moved)
            current = (await conn.execute(sa.select(payouts).where(payouts.c.id == payout_id))).one()
        return _row(current)

    async def _settle(self, payout_id: uuid.UUID, target: int, phase: int, state: int, **values: Any) -> PayoutRow:
        """paid (post the reservation) or failed (void it), with the status change, in one transaction."""
        payouts = store.payouts
        allowed_from = sorted(s for s, targets in domain.TRANSITIONS.items() if target in targets)
        now = self._clock()
        async with self._engine.begin() as conn:
            current = (await conn.execute(sa.select(payouts).where(payouts.c.id == payout_id).with_for_update())).one()
            if current.status not in allowed_from:
                return _row(current)  # already settled, or a transition outside the table: no effect
            in_flight = store.AccountKey(pb.ACCOUNT_TYPE_PAYOUTS_IN_FLIGHT, current.driver_id, CASH)
            destination = (
                store.AccountKey(pb.ACCOUNT_TYPE_EXTERNAL_FUNDING, "stripe-payouts", CASH)
                if phase == pb.TRANSFER_PHASE_POST
                else store.AccountKey(pb.ACCOUNT_TYPE_DRIVER_CASH, current.driver_id, CASH)
            )
            step = "post" if phase == pb.TRANSFER_PHASE_POST else "void"
            result = await store.post_transfer_in(
                await store.driver_connection(conn),
                SCOPE,
                f"payout:{payout_id}:{step}",
                payout_id.bytes + step.encode(),
                _movement(
                    phase,
                    in_flight,
                    destination,
                    reservation_id=current.reservation_transfer_id,
                    reservation_state=state,
                    metadata={"payout_id": str(payout_id), "reason": values.get("failure_reason") or ""},
                ),
            )
            if result.error_reason is not None:
                raise RuntimeError(f"payout {payout_id}: reservation could not be {step}ed: {result.error_reason}")
            settled = (
                await conn.execute(
                    sa.update(payouts)
                    .where(payouts.c.id == payout_id)
                    .values(status=target, updated_at=now, **values)
                    .returning(payouts)
                )
            ).one()
        return _row(settled)

    async def mark_paid(self, payout_id: uuid.UUID) -> PayoutRow:
        return await self._settle(
            payout_id, pb.PAYOUT_STATUS_PAID, pb.TRANSFER_PHASE_POST, pb.RESERVATION_STATE_POSTED, paid_at=self._clock()
        )

    async def fail(self, payout_id: uuid.UUID, reason: str) -> PayoutRow:
        return await self._settle(
            payout_id,
            pb.PAYOUT_STATUS_FAILED,
            pb.TRANSFER_PHASE_VOID,
            pb.RESERVATION_STATE_VOIDED,
            failure_reason=reason[:500],
        )

    async def mark_processing(self, payout_id: uuid.UUID, stripe_transfer_id: str) -> PayoutRow:
        return await self._move(payout_id, pb.PAYOUT_STATUS_PROCESSING, stripe_transfer_id=stripe_transfer_id)

    # --- reconciliation ------------------------------------------------------------------------------

    async def measure_unknown(self) -> int:
        """Sets the UNKNOWN-payout gauges the alerts read; returns how many payouts are UNKNOWN."""
        payouts = store.payouts
        async with self._engine.connect() as conn:
            count, oldest = (
                await conn.execute(
                    sa.select(sa.func.count(), sa.func.min(payouts.c.updated_at)).where(
                        payouts.c.status == pb.PAYOUT_STATUS_UNKNOWN
                    )
                )
            ).one()
        UNKNOWN_PAYOUTS.set(int(count))
        UNKNOWN_OLDEST.set(0.0 if oldest is None else (self._clock() - oldest).total_seconds())
        return int(count)

    async def reconcile_unknown(self, older_than: datetime.timedelta = datetime.timedelta(seconds=0)) -> int:
        """Settles payouts whose Stripe answer was lost; returns how many left `unknown`."""
        payouts = store.payouts
        cutoff = self._clock() - older_than
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(payouts)
                    .where(payouts.c.status == pb.PAYOUT_STATUS_UNKNOWN, payouts.c.updated_at <= cutoff)
                    .order_by(payouts.c.updated_at)
                    .limit(100)
                )
            ).all()
        settled = 0
        for record in rows:
            payout = _row(record)
            try:
                transfer_id = await self._stripe.find_transfer_by_payout(str(payout.id))
            except StripeAdapterError:
                continue  # Stripe cannot tell us yet; ask again on the next pass
            if transfer_id is None:
                # Checked, not guessed: the lost call is long over (older_than) and Stripe has no transfer
                # for this payout, so nothing left the platform. Re-sending with the same idempotency key
                # would only replay the lost error, so the payout fails and the funds come back, once.
                await self.fail(payout.id, "stripe has no transfer for this payout")
            else:
                await self.mark_processing(payout.id, transfer_id)
            settled += 1
        await self.measure_unknown()
        return settled

    async def reconcile_now(self, reason: str) -> tuple[int, int]:
        """An operator's reconciliation of every `unknown` payout, whatever its age; returns (settled, still
        unknown). Each settlement is its own transaction (a Stripe call sits between them); the operator's
        request is audited once with what it settled."""
        settled = await self.reconcile_unknown()
        async with self._engine.begin() as conn:
            still = await store.count_payouts(conn, pb.PAYOUT_STATUS_UNKNOWN)
            await audit.record(
                conn, "payouts.reconcile", "payouts:unknown", reason, settled=settled, still_unknown=still
            )
        return settled, still

    async def list_unknown(self, limit: int) -> list[tuple[PayoutRow, datetime.datetime]]:
        """Payouts whose Stripe answer was lost, oldest first, with when they last changed."""
        payouts = store.payouts
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(payouts)
                    .where(payouts.c.status == pb.PAYOUT_STATUS_UNKNOWN)
                    .order_by(payouts.c.updated_at)
                    .limit(limit)
                )
            ).all()
        return [(_row(record), record.updated_at) for record in rows]

    # --- reads ---------------------------------------------------------------------------------------

    async def list_for_driver(self, driver_id: str, limit: int) -> list[PayoutRow]:
        payouts = store.payouts
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(payouts)
                    .where(payouts.c.driver_id == driver_id)
                    .order_by(payouts.c.created_at.desc())
                    .limit(limit)
                )
            ).all()
        return [_row(r) for r in rows]

    async def find(self, payout_id: uuid.UUID) -> PayoutRow | None:
        payouts = store.payouts
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(payouts).where(payouts.c.id == payout_id))).first()
        return None if row is None else _row(row)

    async def get(self, payout_id: uuid.UUID) -> PayoutRow:
        payouts = store.payouts
        async with self._engine.connect() as conn:
            return _row((await conn.execute(sa.select(payouts).where(payouts.c.id == payout_id))).one())
