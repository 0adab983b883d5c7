"""Money going back to whoever paid a campaign budget: a payment that arrived for a campaign already funded
(refunded whole, fee included), and what is left of a canceled or ended campaign (refunded net against the
payment the campaign kept and the platform's funding, oldest first; the fee of a kept payment is kept).

Accounting. A refund is the reversal of the funding transfer it undoes (budget → the external account the money
came from), plus, for a duplicate payment, the reversal of its platform fee. The reversals, the
`payment_refunds` row (what Stripe owes the payer back) and its outbox row commit in one transaction; the
relay then asks Stripe, with the row id as the Idempotency-Key, and records Stripe's refund id. Money is on its
way back from the moment the reversals commit: a Stripe refund that fails for good lands in the dead-letter
list and in ListPaymentIssues, never silently lost. Platform-funded money (FundCampaignFromPlatform) goes back
to the platform by its reversal alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from nerava.ledger.v1 import ledger_pb2 as pb
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import audit
from services.common.errors import Aborted, FailedPrecondition
from services.common.outbox import OutboxMessage, PermanentDeliveryError, enqueue
from services.ledger import store
from services.ledger.adapters.stripe_payouts import StripeRefused
from services.ledger.funding import SCOPE, STRIPE_OWNER
from services.ledger.payouts import Stripe
from services.ledger.reasons import Reason

log = logging.getLogger(__name__)

TOPIC = "payment.refund"
_NAMESPACE = uuid.UUID("5b0e4a52-3c1e-4f0e-9d8e-6a1f1c2b7d10")


class RefundNotBooked(RuntimeError):
    """post_transfer() refused a refund's reversal; nothing of the refund was written."""


@dataclasses.dataclass(frozen=True)
class BudgetRefund:
    refunded_cents: int
    stripe_refunded_cents: int
    replayed: bool


def _hash(*parts: object) -> bytes:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()


async def _reverse(conn: AsyncConnection, key: str, original: Any, amount: int | None, metadata: dict[str, str]) -> int:
    """Posts the reversal of `original` (a row with id, currency and both accounts' type and owner) for `amount`
    (None: all that is left); returns what it moved."""
    movement = store.Movement(
        kind=pb.TRANSFER_KIND_REVERSAL,
        phase=pb.TRANSFER_PHASE_SINGLE,
        currency=original.currency,
        amount=amount,
        from_account=store.AccountKey(original.to_type, original.to_owner, original.currency),
        to_account=store.AccountKey(original.from_type, original.from_owner, original.currency),
        metadata=metadata,
        reversal_of=original.id,
    )
    result = await store.post_transfer_in(
        await store.driver_connection(conn), SCOPE, key, _hash(key, original.id, amount), movement
    )
    if result.error_reason is not None and result.error_reason != "TRANSFER_ALREADY_REVERSED":
        raise RefundNotBooked(f"{key}: {result.error_reason}")
    return int(result.amount or 0)


def _funding_transfers() -> sa.Select[Any]:
    transfers = store.transfers
    source, target = store.accounts.alias("source"), store.accounts.alias("target")
    return (
        sa.select(
            transfers.c.id,
            transfers.c.idempotency_key,
            transfers.c.currency,
            (transfers.c.amount - transfers.c.reversed_amount).label("open"),
            source.c.type.label("from_type"),
            source.c.owner_id.label("from_owner"),
            target.c.type.label("to_type"),
            target.c.owner_id.label("to_owner"),
        )
        .select_from(transfers)
        .join(source, source.c.id == transfers.c.from_account_id)
        .join(target, target.c.id == transfers.c.to_account_id)
    )


async def _owe_stripe_refund(
    conn: AsyncConnection, refund_id: uuid.UUID, payment: Any, amount: int, reason: str
) -> None:
    await conn.execute(
        pg_insert(store.payment_refunds)
        .values(
            id=refund_id,
            checkout_session_id=payment.checkout_session_id,
            payment_intent_id=payment.payment_intent_id,
            amount_cents=amount,
            reason=reason[:500],
        )
        .on_conflict_do_nothing(index_elements=[store.payment_refunds.c.id])
    )
    await enqueue(conn, store.outbox, TOPIC, str(refund_id), {"refund_id": str(refund_id)})


async def refund_duplicate_payment(engine: AsyncEngine, checkout_session_id: str, why: str) -> bool:
    """Refunds a whole booked payment that its campaign does not take (already funded by another checkout,
    canceled, unknown): its funding and fee transfers are reversed and the gross goes back through Stripe.
    Idempotent; False when the payment is not one the ledger can refund (no payment record or PaymentIntent:
    recorded as an issue for a person)."""
    async with engine.begin() as conn:
        payment = (
            await conn.execute(
                sa.select(store.campaign_payments)
                .where(store.campaign_payments.c.checkout_session_id == checkout_session_id)
                .with_for_update()
            )
        ).first()
        if payment is None or payment.payment_intent_id is None:
            await store.record_issue(
                conn, checkout_session_id, "campaign.funded", checkout_session_id, f"cannot refund: {why}"
            )
            return False
        transfers = store.transfers
        legs = (
            await conn.execute(
                _funding_transfers().where(
                    transfers.c.scope == SCOPE,
                    transfers.c.idempotency_key.in_(
                        [f"funding:{checkout_session_id}", f"platform-fee:{checkout_session_id}"]
                    ),
                )
            )
        ).all()
        metadata = {"campaign_id": payment.campaign_id, "reason": why[:500]}
        moved = 0
        for leg in legs:
            moved += await _reverse(conn, f"refund:{leg.idempotency_key}", leg, None, metadata)
        # What Stripe owes back is what these reversals moved: a part of the payment a budget refund already
        # reversed (oldest funding first, e.g. this payment booked before the one the campaign took) was refunded
        # through Stripe then, and is not refunded twice.
        if moved > 0:
            refund_id = uuid.uuid5(_NAMESPACE, f"duplicate:{checkout_session_id}")
            await _owe_stripe_refund(conn, refund_id, payment, moved, why)
    log.warning(
        "campaign payment refunded",
        extra={"checkout_session_id": checkout_session_id, "campaign_id": payment.campaign_id, "why": why},
    )
    return True


class BudgetRefunds:
    """What is left of a campaign's budget, refunded (RefundCampaignBudget). `on_refund` wakes the outbox relay
    once a refund's payment.refund row has committed, so that Stripe is asked now rather than at the next poll."""

    def __init__(self, engine: AsyncEngine, on_refund: Callable[[], None]) -> None:
        self._engine = engine
        self._on_refund = on_refund

    async def refund(
        self,
        scope: str,
        key: str,
        *,
        campaign_id: str,
        currency: int,
        amount: int,
        reason: str,
        kept_checkout_session_id: str,
    ) -> BudgetRefund:
        """Returns up to `amount` of the campaign's budget account to whoever paid what the campaign kept — the
        payment of `kept_checkout_session_id` and the platform's funding — oldest first, each up to what is left of
        it, in one transaction under the account's row lock (so concurrent grants and refunds see each other). A
        payment the campaign did not take is never touched here: it is refunded whole on its own
        (refund_duplicate_payment), and a budget refund taking part of it would pay the wrong payer and leave the
        kept payment's money in the budget. A reversal post_transfer() refuses is REFUND_NOT_BOOKED (nothing of
        the refund is written)."""
        accounts, transfers, campaign_payments, budget_refunds = (
            store.accounts,
            store.transfers,
            store.campaign_payments,
            store.budget_refunds,
        )
        async with self._engine.begin() as conn:
            budget = (
                await conn.execute(
                    sa.select(accounts.c.id, accounts.c.balance)
                    .where(
                        accounts.c.type == pb.ACCOUNT_TYPE_CAMPAIGN_BUDGET,
                        accounts.c.owner_id == campaign_id,
                        accounts.c.currency == currency,
                    )
                    .with_for_update()
                )
            ).first()
            done = (
                await conn.execute(
                    sa.select(budget_refunds).where(
                        budget_refunds.c.scope == scope, budget_refunds.c.idempotency_key == key
                    )
                )
            ).first()
            if done is not None:
                # A retry may ask another amount (the remainder moved while the first answer was lost): the key
                # answers what it refunded, and the caller asks the rest under a new key.
                if done.campaign_id != campaign_id:
                    raise Aborted(Reason.IDEMPOTENCY_KEY_REUSED, "this key was used for another campaign's refund")
                return BudgetRefund(int(done.refunded_cents), int(done.stripe_refunded_cents), True)
            left = 0 if budget is None else min(amount, int(budget.balance))
            refunded = stripe_refunded = 0
            if left > 0 and budget is not None:
                fundings = (
                    await conn.execute(
                        _funding_transfers()
                        .where(
                            transfers.c.to_account_id == budget.id,
                            transfers.c.kind == pb.TRANSFER_KIND_CAMPAIGN_FUNDING,
                        )
                        .order_by(transfers.c.created_at, transfers.c.id)
                    )
                ).all()
                kept_key = f"funding:{kept_checkout_session_id}" if kept_checkout_session_id else None
                fundings = [f for f in fundings if f.from_owner != STRIPE_OWNER or f.idempotency_key == kept_key]
                metadata = {"campaign_id": campaign_id, "reason": reason[:500]}
                for funding in fundings:
                    share = min(left, int(funding.open))
                    if share <= 0:
                        continue
                    payment = None
                    if funding.from_owner == STRIPE_OWNER:
                        session_id = str(funding.idempotency_key).removeprefix("funding:")
                        payment = (
                            await conn.execute(
                                sa.select(campaign_payments).where(
                                    campaign_payments.c.checkout_session_id == session_id
                                )
                            )
                        ).first()
                        if payment is None or payment.payment_intent_id is None:
                            # Money Stripe holds for a payment the ledger cannot name: a person refunds it.
                            await store.record_issue(
                                conn, f"{key}:{funding.id}", "campaign.refund", session_id, "no PaymentIntent to refund"
                            )
                            continue
                    try:
                        moved = await _reverse(conn, f"{key}:{funding.id}", funding, share, metadata)
                    except RefundNotBooked as exc:
                        raise FailedPrecondition(Reason.REFUND_NOT_BOOKED, str(exc)) from exc
                    left -= moved
                    refunded += moved
                    if payment is not None:
                        refund_id = uuid.uuid5(_NAMESPACE, f"{scope}:{key}:{funding.id}")
                        await _owe_stripe_refund(conn, refund_id, payment, moved, reason)
                        stripe_refunded += moved
                    if left == 0:
                        break
            await conn.execute(
                sa.insert(budget_refunds).values(
                    scope=scope,
                    idempotency_key=key,
                    campaign_id=campaign_id,
                    requested_cents=amount,
                    refunded_cents=refunded,
                    stripe_refunded_cents=stripe_refunded,
                )
            )
            if refunded:
                await audit.record(
                    conn,
                    "campaign.refund",
                    f"campaign:{campaign_id}",
                    reason,
                    refunded_cents=refunded,
                    stripe_refunded_cents=stripe_refunded,
                )
        if stripe_refunded:
            self._on_refund()
        return BudgetRefund(refunded, stripe_refunded, False)


def refund_delivery(engine: AsyncEngine, stripe: Stripe) -> Any:
    """The outbox handler of "payment.refund": asks Stripe for the refund (keyed by the refund id, so a
    repeated delivery refunds once) and records Stripe's refund id."""
    payment_refunds = store.payment_refunds

    async def deliver(message: OutboxMessage) -> None:
        refund_id = uuid.UUID(str(message.payload["refund_id"]))
        async with engine.connect() as conn:
            row = (await conn.execute(sa.select(payment_refunds).where(payment_refunds.c.id == refund_id))).first()
        if row is None:
            raise PermanentDeliveryError(f"refund {refund_id} does not exist")
        if row.stripe_refund_id is not None:
            return
        try:
            stripe_refund_id = await stripe.create_refund(row.payment_intent_id, int(row.amount_cents), str(refund_id))
        except StripeRefused as exc:
            raise PermanentDeliveryError(f"Stripe refused refund {refund_id}: {exc}") from exc
        async with engine.begin() as conn:
            await conn.execute(
                sa.update(payment_refunds)
                .where(payment_refunds.c.id == refund_id, payment_refunds.c.stripe_refund_id.is_(None))
                .values(stripe_refund_id=stripe_refund_id, refunded_at=sa.func.now())
            )

    return deliver


def refund_dead_letter(engine: AsyncEngine) -> Any:
    """A refund Stripe would not make: the payer is still owed it, so a person must see it."""

    async def park(message: OutboxMessage, error: BaseException) -> None:
        async with engine.begin() as conn:
            await store.record_issue(conn, message.key, TOPIC, message.key, f"Stripe refund not made: {error!r}")

    return park
