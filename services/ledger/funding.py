"""Campaign funding: a sponsor's paid Stripe Checkout becomes a campaign budget.

Incentives opens the Checkout (FundCampaign); Stripe's checkout.session.completed reaches the ledger's
webhook; `CampaignFundings.book` then, in ONE database transaction,
- moves the net amount from external funding ("stripe", in the budget's currency) into the campaign's
  budget account (CAMPAIGN_FUNDING, key "funding:<checkout session id>"),
- moves the platform fee from external funding ("stripe", cash) into the platform fees account
  (PLATFORM_FEE, key "platform-fee:<checkout session id>"), when there is a fee,
- and writes the outbox row ("campaign.funded", keyed by the checkout session id) through which the relay
  (workers.py) tells incentives — RecordCampaignFunding — what was booked.
Everything is keyed by the Checkout session, not by the Stripe event: Stripe may send the same payment
under several event ids (a resend, completed then async_payment_succeeded), and it is booked once.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Any

from nerava.ledger.v1 import ledger_pb2 as pb
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.outbox import enqueue
from services.ledger import domain, store

log = logging.getLogger(__name__)

# The idempotency scope of the transfers the ledger posts for Stripe's payments. Callers' keys live in
# "service:<name>" and "user:<id>" scopes; no service is named "ledger-stripe", so no caller can collide.
SCOPE = domain.scope_of("ledger-stripe", None)
TOPIC = "campaign.funded"
STRIPE_OWNER = "stripe"
PLATFORM_OWNER = "platform"


class FundingNotBooked(RuntimeError):
    """post_transfer() refused a funding leg; the whole booking was rolled back (Stripe will retry)."""


def _movement(funding: domain.CampaignFunding, *, fee: bool) -> store.Movement:
    if fee:
        return store.Movement(
            kind=pb.TRANSFER_KIND_PLATFORM_FEE,
            phase=pb.TRANSFER_PHASE_SINGLE,
            currency=pb.CURRENCY_CASH_CENTS,
            amount=funding.fee_cents,
            from_account=store.AccountKey(pb.ACCOUNT_TYPE_EXTERNAL_FUNDING, STRIPE_OWNER, pb.CURRENCY_CASH_CENTS),
            to_account=store.AccountKey(pb.ACCOUNT_TYPE_PLATFORM_FEES, PLATFORM_OWNER, pb.CURRENCY_CASH_CENTS),
            metadata={"campaign_id": funding.campaign_id},
        )
    return store.Movement(
        kind=pb.TRANSFER_KIND_CAMPAIGN_FUNDING,
        phase=pb.TRANSFER_PHASE_SINGLE,
        currency=funding.currency,
        amount=funding.net_cents,
        from_account=store.AccountKey(pb.ACCOUNT_TYPE_EXTERNAL_FUNDING, STRIPE_OWNER, funding.currency),
        to_account=store.AccountKey(pb.ACCOUNT_TYPE_CAMPAIGN_BUDGET, funding.campaign_id, funding.currency),
        metadata={"campaign_id": funding.campaign_id},
    )


def _request_hash(key: str, movement: store.Movement) -> bytes:
    """The same payment always hashes the same (whichever event carried it); a different amount or campaign
    under the same checkout session id would be IDEMPOTENCY_KEY_REUSED. The bytes hashed are the movement as a
    PostTransferRequest because the bookings already recorded hold hashes of exactly those bytes."""
    as_request = pb.PostTransferRequest(
        idempotency_key=key,
        kind=movement.kind,  # type: ignore[arg-type]
        currency=movement.currency,  # type: ignore[arg-type]
        amount=movement.amount or 0,
        from_account=pb.AccountRef(
            type=movement.from_account.type,  # type: ignore[arg-type]
            owner_id=movement.from_account.owner_id,
            currency=movement.currency,  # type: ignore[arg-type]
        ),
        to_account=pb.AccountRef(
            type=movement.to_account.type,  # type: ignore[arg-type]
            owner_id=movement.to_account.owner_id,
            currency=movement.currency,  # type: ignore[arg-type]
        ),
        metadata=pb.TransferMetadata(**movement.metadata),
    )
    return domain.request_hash("StripeCampaignFunding", as_request.SerializeToString(deterministic=True))


def funded_payload(funding: domain.CampaignFunding, paid_at: datetime.datetime) -> dict[str, Any]:
    """The outbox payload of "campaign.funded" (JSON): what RecordCampaignFunding is told."""
    return {
        "campaign_id": funding.campaign_id,
        "checkout_session_id": funding.checkout_session_id,
        "gross_cents": funding.gross_cents,
        "platform_fee_cents": funding.fee_cents,
        "net_budget_cents": funding.net_cents,
        "paid_at": paid_at.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z"),
    }


async def _record_payment(conn: AsyncConnection, funding: domain.CampaignFunding) -> None:
    """The payment behind the budget (what a refund goes against), with its transfers."""
    await conn.execute(
        pg_insert(store.campaign_payments)
        .values(
            checkout_session_id=funding.checkout_session_id,
            campaign_id=funding.campaign_id,
            payment_intent_id=funding.payment_intent_id,
            currency=funding.currency,
            gross_cents=funding.gross_cents,
            fee_cents=funding.fee_cents,
            net_cents=funding.net_cents,
        )
        .on_conflict_do_nothing(index_elements=[store.campaign_payments.c.checkout_session_id])
    )


class CampaignFundings:
    def __init__(self, engine: AsyncEngine, on_enqueued: Callable[[], None] = lambda: None) -> None:
        self._engine = engine
        # Wakes the outbox relay once a "campaign.funded" row has committed.
        self._on_enqueued = on_enqueued

    async def book(self, funding: domain.CampaignFunding, paid_at: datetime.datetime) -> bool:
        """Books the payment; True when it was booked now, False when this checkout was booked before."""
        async with self._engine.begin() as conn:
            # The outbox row first: it commits with the transfers or not at all. (topic, key) is unique, so a
            # replay writes nothing, and a concurrent delivery of the same checkout waits here for this one.
            await enqueue(conn, store.outbox, TOPIC, funding.checkout_session_id, funded_payload(funding, paid_at))
            driver = await store.driver_connection(conn)
            legs = [(funding.funding_key, _movement(funding, fee=False))]
            if funding.fee_cents > 0:
                legs.append((funding.fee_key, _movement(funding, fee=True)))
            replayed = []
            for key, movement in legs:
                result = await store.post_transfer_in(driver, SCOPE, key, _request_hash(key, movement), movement)
                if result.error_reason is not None:
                    # Raising rolls back every leg and the outbox row: all of this checkout is booked, or none.
                    raise FundingNotBooked(
                        f"checkout {funding.checkout_session_id}: {key} refused with {result.error_reason}"
                    )
                replayed.append(result.replayed)
            await _record_payment(conn, funding)
        if all(replayed):
            return False
        log.info(
            "campaign funded",
            extra={
                "campaign_id": funding.campaign_id,
                "checkout_session_id": funding.checkout_session_id,
                "gross_cents": funding.gross_cents,
                "platform_fee_cents": funding.fee_cents,
                "net_budget_cents": funding.net_cents,
            },
        )
        self._on_enqueued()
        return True
