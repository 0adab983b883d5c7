"""Money into and out of a campaign budget, from incentives' side: the sponsor's Stripe Checkout (at most one
payable at a time), the platform funding an admin chooses, and cancellation with the refund of what is left.

One checkout at a time. FundCampaign claims the opening under the campaign row's lock (SELECT … FOR UPDATE, a short
transaction): the first caller numbers the attempt and stamps `checkout_claimed_at`; concurrent callers see the
claim and wait — polling, without holding a connection — until the session is stored, then answer it
(ALREADY_PENDING). The Stripe call is keyed by the campaign and the attempt (`checkout:<id>:<attempt>:<gross>`),
and a claim left behind by a caller that died or got no answer from Stripe is taken over with the same attempt,
so whatever Stripe created under that key is answered again rather than a second payable session opened. A new
attempt is numbered only once the stored session has expired. A payment that still arrives for a campaign already
funded (an expired-but-paid session, a session opened by hand) is refunded by the ledger (RecordCampaignFunding
refuses it).

Platform funding and refunds call the ledger synchronously under the same row lock, with keys derived from the
campaign (and, for refunds, from what was refunded before), so a retry after any failure repeats the same ledger
request instead of moving money twice.

Transport-free: these functions take the engine, Stripe's adapter, the ledger's campaign budgets (peers.py) and the
time, and raise domain errors.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from nerava.incentives.v1 import incentives_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import audit
from services.common.errors import FailedPrecondition, NotFound, Unavailable
from services.incentives import store
from services.incentives.adapters.stripe_checkout import PaymentsUnavailable, StripeCheckout
from services.incentives.peers import BudgetRefund, CampaignBudgets, PlatformFunding, currency_name
from services.incentives.reasons import Reason

log = logging.getLogger(__name__)

# Statuses a campaign can be canceled from (ENDED and CANCELED are terminal; cancel then only refunds).
CANCELABLE = frozenset(
    {pb.CAMPAIGN_STATUS_DRAFT, pb.CAMPAIGN_STATUS_ACTIVE, pb.CAMPAIGN_STATUS_PAUSED, pb.CAMPAIGN_STATUS_EXHAUSTED}
)
# Closed campaigns: they grant nothing more, and what their budget has left belongs to the sponsor.
CLOSED = frozenset({pb.CAMPAIGN_STATUS_ENDED, pb.CAMPAIGN_STATUS_CANCELED})
# How long a caller's claim to open the checkout stands (longer than Stripe's timeout and retries), and how other
# callers wait for it.
CHECKOUT_CLAIM = datetime.timedelta(seconds=60)
CHECKOUT_WAIT_S = 0.05
CHECKOUT_WAIT_POLLS = 1200


@dataclasses.dataclass(frozen=True)
class Actor:
    """Who acts: a sponsor acts on their own campaigns, an admin on all."""

    user_id: str
    admin: bool


@dataclasses.dataclass(frozen=True)
class CheckoutAnswer:
    url: str
    session_id: str
    created: bool
    expires_at: datetime.datetime | None
    campaign: store.Row


def not_found(campaign_id: str) -> NotFound:
    return NotFound(Reason.CAMPAIGN_NOT_FOUND, "no campaign with that id", {"campaign_id": campaign_id})


async def locked_campaign(conn: AsyncConnection, campaign_id: str, actor: Actor) -> sa.RowMapping:
    """The campaign row, locked for this transaction; CAMPAIGN_NOT_FOUND for one the actor may not act on."""
    try:
        key = uuid.UUID(campaign_id)
    except ValueError:
        raise not_found(campaign_id) from None
    row = (
        (await conn.execute(sa.select(store.campaigns).where(store.campaigns.c.id == key).with_for_update()))
        .mappings()
        .first()
    )
    if row is None or (row["created_by_user_id"] != actor.user_id and not actor.admin):
        raise not_found(campaign_id)
    return row


def remaining(row: store.Row) -> int:
    """What grants may still spend (and a refund may return)."""
    return int(row["budget_cents"]) - int(row["spent_cents"]) - int(row["refunded_cents"])


def invalid_transition(current: int, target: int) -> FailedPrecondition:
    return FailedPrecondition(
        Reason.INVALID_TRANSITION,
        f"a {pb.CampaignStatus.Name(current)} campaign cannot become {pb.CampaignStatus.Name(target)}",
        {"from": pb.CampaignStatus.Name(current), "to": pb.CampaignStatus.Name(target)},
    )


def check_not_expired(row: store.Row, now: datetime.datetime) -> None:
    if row["end_date"] is not None and row["end_date"] <= now:
        raise FailedPrecondition(Reason.CAMPAIGN_EXPIRED, "the campaign's end date has passed")


def _open(row: store.Row, now: datetime.datetime) -> bool:
    """The stored checkout can still be paid."""
    return bool(
        row["funding_status"] == pb.FUNDING_STATUS_PENDING
        and row["checkout_url"]
        and (row["checkout_expires_at"] is None or row["checkout_expires_at"] > now)
    )


async def _claim_checkout(
    engine: AsyncEngine, campaign_id: str, actor: Actor, now: datetime.datetime
) -> tuple[sa.RowMapping, int | None]:
    """(the row, the attempt this caller must open at Stripe), or (row, None) when there is nothing to open: an
    open checkout is stored, or another caller is opening one right now."""
    async with engine.begin() as conn:
        row = await locked_campaign(conn, campaign_id, actor)
        if row["funding_status"] == pb.FUNDING_STATUS_FUNDED:
            raise FailedPrecondition(Reason.CAMPAIGN_ALREADY_FUNDED, "the campaign is already paid for")
        if row["status"] != pb.CAMPAIGN_STATUS_DRAFT:
            raise invalid_transition(row["status"], pb.CAMPAIGN_STATUS_ACTIVE)
        check_not_expired(row, now)
        claimed = row["checkout_claimed_at"]
        if _open(row, now) or (claimed is not None and claimed > now - CHECKOUT_CLAIM):
            return row, None
        # A claim left behind (its caller died or Stripe did not answer) may have created the session at Stripe:
        # the same attempt, so the same idempotency key, gets that session back instead of a second one.
        attempt = int(row["checkout_attempt"]) + (0 if claimed is not None else 1)
        await conn.execute(
            sa.update(store.campaigns)
            .where(store.campaigns.c.id == row["id"])
            .values(checkout_attempt=attempt, checkout_claimed_at=now)
        )
    return row, attempt


async def open_checkout(
    engine: AsyncEngine,
    stripe: StripeCheckout,
    *,
    campaign_id: str,
    actor: Actor,
    fee_bps: int,
    console_base_url: str,
    clock: Callable[[], datetime.datetime],
) -> CheckoutAnswer:
    """The campaign's one payable Stripe Checkout: the open one, or a new one (see the module docstring)."""
    for _ in range(CHECKOUT_WAIT_POLLS):
        now = clock()
        row, attempt = await _claim_checkout(engine, campaign_id, actor, now)
        if attempt is None:
            if _open(row, now):
                return CheckoutAnswer(
                    row["checkout_url"], row["checkout_session_id"], False, row["checkout_expires_at"], row
                )
            await asyncio.sleep(CHECKOUT_WAIT_S)  # another caller is opening it; no connection held meanwhile
            continue
        return await _open_at_stripe(engine, stripe, row, attempt, fee_bps=fee_bps, console_base_url=console_base_url)
    raise Unavailable(Reason.PAYMENTS_UNAVAILABLE, "the checkout is still being opened; try again")


async def _open_at_stripe(
    engine: AsyncEngine, stripe: StripeCheckout, row: store.Row, attempt: int, *, fee_bps: int, console_base_url: str
) -> CheckoutAnswer:
    gross = int(row["gross_funding_cents"])
    page = f"{console_base_url}/campaigns/{row['id']}"
    try:
        checkout = await stripe.create_checkout_session(
            campaign_id=str(row["id"]),
            gross_cents=gross,
            platform_fee_bps=fee_bps,
            reward_currency=currency_name(row["reward_kind"]),
            success_url=f"{page}?funded=true",
            cancel_url=f"{page}?funded=false",
            idempotency_key=f"checkout:{row['id']}:{attempt}:{gross}",
        )
    except PaymentsUnavailable as exc:
        # The claim stays (the session may exist at Stripe) but is released at once: the next call repeats
        # this attempt's key.
        async with engine.begin() as conn:
            await conn.execute(
                sa.update(store.campaigns)
                .where(store.campaigns.c.id == row["id"], store.campaigns.c.checkout_attempt == attempt)
                .values(checkout_claimed_at=store.campaigns.c.checkout_claimed_at - CHECKOUT_CLAIM)
            )
        raise Unavailable(Reason.PAYMENTS_UNAVAILABLE, "Stripe did not answer; try again") from exc
    async with engine.begin() as conn:
        stored = (
            (
                await conn.execute(
                    sa.update(store.campaigns)
                    .where(
                        store.campaigns.c.id == row["id"],
                        store.campaigns.c.checkout_attempt == attempt,
                        # Funded meanwhile (from the platform while Stripe answered): the session is not stored.
                        store.campaigns.c.funding_status != pb.FUNDING_STATUS_FUNDED,
                    )
                    .values(
                        funding_status=pb.FUNDING_STATUS_PENDING,
                        checkout_session_id=checkout.session_id,
                        checkout_url=checkout.url,
                        checkout_expires_at=checkout.expires_at,
                        checkout_claimed_at=None,
                    )
                    .returning(store.campaigns)
                )
            )
            .mappings()
            .first()
        )
    if stored is None:  # funded or reclaimed meanwhile: answer what is stored now
        async with engine.connect() as conn:
            stored = (
                (await conn.execute(sa.select(store.campaigns).where(store.campaigns.c.id == row["id"])))
                .mappings()
                .one()
            )
        if stored["funding_status"] == pb.FUNDING_STATUS_FUNDED:
            raise FailedPrecondition(Reason.CAMPAIGN_ALREADY_FUNDED, "the campaign is already paid for")
    return CheckoutAnswer(checkout.url, checkout.session_id, True, checkout.expires_at, stored)


async def fund_from_platform(
    engine: AsyncEngine,
    budgets: CampaignBudgets,
    *,
    campaign_id: str,
    actor: Actor,
    reason: str,
    request_id: str,
    now: datetime.datetime,
) -> sa.RowMapping:
    """An admin funds an unfunded draft from the platform: one audited ledger transfer of the net budget (no
    fee), then the campaign is FUNDED. The transfer is keyed by the campaign, so a retry (any request id) after
    a lost answer or a crash repeats the same transfer; a retry by another admin, or with another reason, finds
    the transfer the first attempt left at the ledger and completes the funding with it."""
    async with engine.begin() as conn:
        row = await locked_campaign(conn, campaign_id, actor)
        if row["funding_status"] == pb.FUNDING_STATUS_FUNDED:
            if row["checkout_session_id"] is None:
                return row  # funded by the platform before: the same answer
            raise FailedPrecondition(Reason.CAMPAIGN_ALREADY_FUNDED, "the campaign is already paid for")
        if row["status"] != pb.CAMPAIGN_STATUS_DRAFT:
            raise invalid_transition(row["status"], pb.CAMPAIGN_STATUS_ACTIVE)
        if row["funding_status"] == pb.FUNDING_STATUS_PENDING and (
            row["checkout_expires_at"] is None or row["checkout_expires_at"] > now
        ):
            raise FailedPrecondition(Reason.CHECKOUT_PENDING, "a Stripe checkout is open for this campaign")
        check_not_expired(row, now)
        net = int(row["budget_cents"])
        key = f"platform-funding:{row['id']}"
        funding = PlatformFunding(
            idempotency_key=key,
            campaign_id=str(row["id"]),
            campaign_name=row["name"],
            reward_kind=row["reward_kind"],
            amount=net,
            actor_id=actor.user_id,
            reason=reason,
        )
        if not await budgets.fund_from_platform(funding):
            # The ledger holds this campaign's platform funding under another actor or reason: an earlier attempt
            # moved the money and died (or lost its answer) before the campaign said FUNDED. That transfer is the
            # funding; the campaign's budget is what it moved.
            net = await _landed_platform_funding(budgets, row, key)
        funded: sa.RowMapping = (
            (
                await conn.execute(
                    sa.update(store.campaigns)
                    .where(store.campaigns.c.id == row["id"])
                    .values(
                        funding_status=pb.FUNDING_STATUS_FUNDED,
                        budget_cents=net,
                        gross_funding_cents=net,
                        platform_fee_cents=0,
                        checkout_session_id=None,
                        checkout_url=None,
                        checkout_expires_at=None,
                        funded_at=now,
                    )
                    .returning(store.campaigns)
                )
            )
            .mappings()
            .one()
        )
        await audit.record(conn, "campaign.fund_from_platform", f"campaign:{row['id']}", reason, amount_cents=net)
    log.warning(
        "campaign funded by the platform",
        extra={
            "campaign_id": campaign_id,
            "admin": actor.user_id,
            "amount": net,
            "reason": reason,
            "request": request_id,
        },
    )
    return funded


async def _landed_platform_funding(budgets: CampaignBudgets, row: store.Row, key: str) -> int:
    """The amount of the campaign's platform funding transfer the ledger holds under `key`; CAMPAIGN_FUNDING_CONFLICT
    (FAILED_PRECONDITION) when the ledger refused the key for something else."""
    landed = await budgets.landed_funding(str(row["id"]), row["reward_kind"], key)
    if landed is None:
        raise FailedPrecondition(
            Reason.CAMPAIGN_FUNDING_CONFLICT,
            "the ledger refused this campaign's platform funding; an operator must look at its budget account",
            {"campaign_id": str(row["id"])},
        )
    log.warning(
        "platform funding completed from the transfer an earlier attempt left",
        extra={"campaign_id": str(row["id"]), "transfer_id": landed.transfer_id, "first_admin": landed.actor_id},
    )
    return landed.amount


async def cancel(
    engine: AsyncEngine,
    budgets: CampaignBudgets,
    *,
    campaign_id: str,
    actor: Actor,
) -> tuple[sa.RowMapping, int]:
    """Cancels the campaign (no grant after this commits), then refunds what is left of its budget. Returns the
    campaign and what this call refunded. Two steps, so that a ledger that does not answer leaves a canceled
    campaign whose refund the next call completes (same key: nothing refunded twice)."""
    async with engine.begin() as conn:
        row = await locked_campaign(conn, campaign_id, actor)
        if row["status"] in CANCELABLE:
            await conn.execute(
                sa.update(store.campaigns)
                .where(store.campaigns.c.id == row["id"])
                .values(status=pb.CAMPAIGN_STATUS_CANCELED, pause_reason="")
            )
            await audit.record(conn, "campaign.cancel", f"campaign:{row['id']}")
    async with engine.begin() as conn:
        row = await locked_campaign(conn, campaign_id, actor)
        refunded = 0
        if row["funding_status"] == pb.FUNDING_STATUS_FUNDED:
            row, refunded = await _refund_remaining(conn, budgets, row)
        final = (
            (await conn.execute(sa.select(store.campaigns).where(store.campaigns.c.id == row["id"]))).mappings().one()
        )
    return final, refunded


async def refund_closed(engine: AsyncEngine, budgets: CampaignBudgets, campaign_id: uuid.UUID) -> int:
    """Refunds to its sponsor what a canceled or ended campaign has left — also budget that came back after the
    campaign closed (a clawback, a FAILED grant) — and returns what moved. Keyed by what was refunded before
    (see _refund), so the worker, the clawback that returned the budget and every replica may all call it: the
    remainder is refunded once."""
    async with engine.begin() as conn:
        row = (
            (
                await conn.execute(
                    sa.select(store.campaigns).where(store.campaigns.c.id == campaign_id).with_for_update()
                )
            )
            .mappings()
            .first()
        )
        if (
            row is None
            or row["status"] not in CLOSED
            or row["funding_status"] != pb.FUNDING_STATUS_FUNDED
            or remaining(row) <= 0
        ):
            return 0
        _, moved = await _refund_remaining(conn, budgets, row)
    return moved


async def refund_ended(engine: AsyncEngine, budgets: CampaignBudgets, limit: int = 50) -> int:
    """Refunds what is left of closed campaigns (ended, or canceled and given budget back since) to their
    sponsors; returns how many were refunded something. Every replica may run it (refund_closed)."""
    async with engine.connect() as conn:
        due = (
            (
                await conn.execute(
                    sa.select(store.campaigns.c.id)
                    .where(
                        store.campaigns.c.status.in_(CLOSED),
                        store.campaigns.c.funding_status == pb.FUNDING_STATUS_FUNDED,
                        store.campaigns.c.budget_cents
                        - store.campaigns.c.spent_cents
                        - store.campaigns.c.refunded_cents
                        > 0,
                    )
                    .order_by(store.campaigns.c.updated_at)
                    .limit(limit)
                )
            )
            .scalars()
            .all()
        )
    refunded = 0
    for campaign_id in due:
        if await refund_closed(engine, budgets, campaign_id):
            refunded += 1
            continue
        # Nothing the ledger could refund (a payment it cannot name is with a person): to the back of the queue,
        # so that it does not hold the head of every batch and starve the others.
        async with engine.begin() as conn:
            await conn.execute(
                sa.update(store.campaigns).where(store.campaigns.c.id == campaign_id).values(updated_at=sa.func.now())
            )
    return refunded


async def _refund_remaining(conn: AsyncConnection, budgets: CampaignBudgets, row: Any) -> tuple[Any, int]:
    """Refunds what is left of the locked campaign `row` and records it; (the row after, what was refunded).
    A replayed key (its first answer was lost, and the remainder may have moved since, e.g. a clawback) answers
    what it refunded then: that is recorded and the rest is asked under the next key."""
    refunded = 0
    while (left := remaining(row)) > 0:
        reply = await _refund(budgets, row, left)
        moved = reply.refunded_cents
        if moved:
            row = (
                (
                    await conn.execute(
                        sa.update(store.campaigns)
                        .where(store.campaigns.c.id == row["id"])
                        .values(refunded_cents=store.campaigns.c.refunded_cents + moved)
                        .returning(store.campaigns)
                    )
                )
                .mappings()
                .one()
            )
            refunded += moved
        if not reply.replayed or not moved:
            break
    return row, refunded


async def _refund(budgets: CampaignBudgets, row: Any, amount: int) -> BudgetRefund:
    # Keyed by what was refunded before: a retry repeats this refund, a later one (after a clawback returned
    # budget) is a new one.
    return await budgets.refund(
        idempotency_key=f"campaign-refund:{row['id']}:{row['refunded_cents']}",
        campaign_id=str(row["id"]),
        reward_kind=row["reward_kind"],
        amount=amount,
        reason="campaign canceled" if row["status"] == pb.CAMPAIGN_STATUS_CANCELED else "campaign ended",
        # The payment this campaign took: the refund goes against it, never against one it refused.
        kept_checkout_session_id=row["checkout_session_id"] or "",
    )
