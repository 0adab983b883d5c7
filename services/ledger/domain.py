"""Pure rules of the ledger: which accounts each kind of transfer may move value between, idempotency
scopes and request hashes, the wallet's and payouts' arithmetic, and what a paid campaign checkout books.
No I/O, no clock reads."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import re
import uuid
from collections.abc import Mapping
from typing import Any

from nerava.ledger.v1 import ledger_pb2 as pb

# (from account type, to account type) pairs each kind allows. Reversals mirror their original instead, and
# payouts move only through the two-phase RPCs.
ALLOWED_PAIRS: dict[int, frozenset[tuple[int, int]]] = {
    pb.TRANSFER_KIND_CAMPAIGN_FUNDING: frozenset({(pb.ACCOUNT_TYPE_EXTERNAL_FUNDING, pb.ACCOUNT_TYPE_CAMPAIGN_BUDGET)}),
    pb.TRANSFER_KIND_PLATFORM_FEE: frozenset(
        {
            (pb.ACCOUNT_TYPE_CAMPAIGN_BUDGET, pb.ACCOUNT_TYPE_PLATFORM_FEES),
            (pb.ACCOUNT_TYPE_EXTERNAL_FUNDING, pb.ACCOUNT_TYPE_PLATFORM_FEES),
        }
    ),
    pb.TRANSFER_KIND_CAMPAIGN_GRANT: frozenset(
        {
            (pb.ACCOUNT_TYPE_CAMPAIGN_BUDGET, pb.ACCOUNT_TYPE_DRIVER_CASH),
            (pb.ACCOUNT_TYPE_CAMPAIGN_BUDGET, pb.ACCOUNT_TYPE_DRIVER_NOVA),
        }
    ),
    pb.TRANSFER_KIND_ADMIN_GRANT: frozenset(
        {
            (pb.ACCOUNT_TYPE_EXTERNAL_FUNDING, pb.ACCOUNT_TYPE_DRIVER_NOVA),
            (pb.ACCOUNT_TYPE_EXTERNAL_FUNDING, pb.ACCOUNT_TYPE_MERCHANT_NOVA),
        }
    ),
    pb.TRANSFER_KIND_REDEMPTION: frozenset({(pb.ACCOUNT_TYPE_DRIVER_NOVA, pb.ACCOUNT_TYPE_MERCHANT_NOVA)}),
}

# Where a reserved payout goes when posted: out of the system, to the driver's Stripe account.
PAYOUT_SOURCES = frozenset({pb.ACCOUNT_TYPE_DRIVER_CASH})
PAYOUT_DESTINATIONS = frozenset({pb.ACCOUNT_TYPE_EXTERNAL_FUNDING})


def kind_allows(kind: int, from_type: int, to_type: int) -> bool:
    return (from_type, to_type) in ALLOWED_PAIRS.get(kind, frozenset())


def request_hash(method: str, request: bytes) -> bytes:
    """What 'the same request' means for idempotency: the method and the request's exact fields (`request` is the
    request message serialized deterministically; the hashes recorded with each transfer are of those bytes)."""
    digest = hashlib.sha256(method.encode())
    digest.update(b"\0")
    digest.update(request)
    return digest.digest()


def scope_of(service: str | None, user_id: str | None) -> str:
    """Idempotency keys are scoped to the caller: two services (or two drivers) may pick the same key."""
    if service is not None:
        return f"service:{service}"
    return f"user:{user_id}"


def cash_entry_description(kind: int, phase: int, amount: int, metadata: dict[str, str]) -> tuple[str, str]:
    """(transaction_type, description) of a cash wallet entry, in the app's words."""
    if kind == pb.TRANSFER_KIND_PAYOUT:
        if phase == pb.TRANSFER_PHASE_VOID:
            return "reversal", "Withdrawal returned"
        return "withdrawal", "Withdrawal"
    if kind == pb.TRANSFER_KIND_REVERSAL:
        return "reversal", f"Reversed: {metadata['reason']}" if metadata.get("reason") else "Reversed"
    if kind == pb.TRANSFER_KIND_CAMPAIGN_GRANT:
        name = metadata.get("campaign_name")
        return "credit", f"Earned from {name}" if name else "Charging reward"
    return ("credit" if amount > 0 else "debit"), metadata.get("description", "")


@dataclasses.dataclass(frozen=True)
class TimelineEntry:
    """One entry of a driver account, with the transfer it belongs to (and, for a reversal, the original's
    kind and metadata)."""

    transfer_id: str
    amount: int  # signed, as the entry moved the driver's account
    currency: int
    kind: int
    metadata: Mapping[str, str]
    original_kind: int | None = None
    original_metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class TimelineItem:
    """How the wallet timeline shows one entry (its amount, currency and time are the entry's)."""

    id: str
    type: str
    title: str
    subtitle: str
    merchant_id: str = ""
    redemption_id: str = ""


def timeline_item(entry: TimelineEntry) -> TimelineItem:
    """EARNED for grant credits, SPENT for redemption debits (DOMAIN: wallet timeline); CLAWED_BACK for a reward
    taken back and REFUNDED for Nova a refunded redemption gave back, each its own item. Ids as the contract
    says: "earn_<transfer id>", "spent_<redemption id>" (the transfer id when the redemption has none),
    "clawback_<transfer id>", "refund_<transfer id>"."""
    metadata = entry.metadata
    if entry.kind == pb.TRANSFER_KIND_REDEMPTION:
        merchant = metadata.get("merchant_name") or f"Merchant {metadata.get('merchant_id', '')[:8]}".strip()
        return TimelineItem(
            id=f"spent_{metadata.get('redemption_id') or entry.transfer_id}",
            type="SPENT",
            title=merchant,
            subtitle="Nova applied",
            merchant_id=metadata.get("merchant_id", ""),
            redemption_id=metadata.get("redemption_id", ""),
        )
    if entry.kind == pb.TRANSFER_KIND_REVERSAL:
        before = entry.original_metadata
        if entry.original_kind == pb.TRANSFER_KIND_REDEMPTION:
            return TimelineItem(
                id=f"refund_{entry.transfer_id}",
                type="REFUNDED",
                title=before.get("merchant_name") or "Redemption refunded",
                subtitle="Nova returned",
                merchant_id=before.get("merchant_id", ""),
                redemption_id=before.get("redemption_id", ""),
            )
        return TimelineItem(
            id=f"clawback_{entry.transfer_id}",
            type="CLAWED_BACK",
            title=before.get("campaign_name") or "Reward reversed",
            subtitle=metadata.get("reason") or "Reward taken back",
        )
    title = metadata.get("campaign_name") or (
        "Admin grant" if entry.kind == pb.TRANSFER_KIND_ADMIN_GRANT else "Charging reward"
    )
    return TimelineItem(
        id=f"earn_{entry.transfer_id}",
        type="EARNED",
        title=title,
        subtitle="Nova issued" if entry.currency == pb.CURRENCY_NOVA_POINTS else "Cash earned",
    )


# --- payouts (DOMAIN: Payouts) -------------------------------------------------------------------------

MINIMUM_WITHDRAWAL_CENTS = 2000  # $20; no fee at or above it
MAX_PAYOUTS_PER_UTC_DAY = 3
MAX_CENTS_PER_ROLLING_WEEK = 100_000  # $1000 per rolling 7 days
# Payouts that count against the limits: every one that has not failed.
LIMITED_STATUSES = frozenset(
    {pb.PAYOUT_STATUS_PENDING, pb.PAYOUT_STATUS_PROCESSING, pb.PAYOUT_STATUS_PAID, pb.PAYOUT_STATUS_UNKNOWN}
)
# The transition table. `unknown` (Stripe's answer was lost) is settled by reconciliation or a webhook,
# never by refunding blindly; a webhook may overtake our own pending→processing update.
TRANSITIONS: dict[int, frozenset[int]] = {
    pb.PAYOUT_STATUS_PENDING: frozenset(
        {pb.PAYOUT_STATUS_PROCESSING, pb.PAYOUT_STATUS_UNKNOWN, pb.PAYOUT_STATUS_FAILED, pb.PAYOUT_STATUS_PAID}
    ),
    pb.PAYOUT_STATUS_UNKNOWN: frozenset({pb.PAYOUT_STATUS_PROCESSING, pb.PAYOUT_STATUS_FAILED, pb.PAYOUT_STATUS_PAID}),
    pb.PAYOUT_STATUS_PROCESSING: frozenset({pb.PAYOUT_STATUS_PAID, pb.PAYOUT_STATUS_FAILED}),
    pb.PAYOUT_STATUS_PAID: frozenset(),
    pb.PAYOUT_STATUS_FAILED: frozenset(),
}


def payout_limit_refusal(amount_cents: int, payouts_today: int, cents_last_7_days: int) -> str | None:
    """The ErrorInfo reason that refuses this payout, or None. Boundaries: exactly $20 is allowed, a 3rd
    payout in a UTC day is allowed and a 4th is not, reaching exactly $1000 in 7 days is allowed."""
    if amount_cents < MINIMUM_WITHDRAWAL_CENTS:
        return "PAYOUT_BELOW_MINIMUM"
    if payouts_today >= MAX_PAYOUTS_PER_UTC_DAY:
        return "PAYOUT_DAILY_LIMIT"
    if cents_last_7_days + amount_cents > MAX_CENTS_PER_ROLLING_WEEK:
        return "PAYOUT_WEEKLY_LIMIT"
    return None


# --- campaign funding (DOMAIN: Campaigns and grants; the Checkout incentives opens) ----------------------

# metadata.type of a Checkout session that pays a campaign budget (services/incentives/adapters/
# stripe_checkout.py writes it, with campaign_id, platform_fee_bps and reward_currency).
CAMPAIGN_FUNDING_TYPE = "campaign_funding"
# The Stripe events whose Checkout session may carry a completed payment: a card payment completes with the
# session; a delayed method (bank debit) completes it unpaid and succeeds later.
FUNDING_EVENTS = frozenset({"checkout.session.completed", "checkout.session.async_payment_succeeded"})
MAX_FEE_BPS = 10_000
# The ledger currency of the campaign budget, by the Currency enum name in metadata.reward_currency. The
# sponsor always pays cash; a Nova campaign's budget is minted 1 point per cent (DOMAIN: Units).
FUNDING_CURRENCIES: Mapping[str, int] = {
    "CURRENCY_CASH_CENTS": pb.CURRENCY_CASH_CENTS,
    "CURRENCY_NOVA_POINTS": pb.CURRENCY_NOVA_POINTS,
}
# Incentives records funding in int32 cents (RecordCampaignFunding); a larger payment could not be recorded.
MAX_FUNDING_CENTS = 2**31 - 1
_STRIPE_ID = re.compile(r"[A-Za-z0-9_]{1,200}")
_BPS = re.compile(r"[0-9]{1,5}")


class FundingNotBookable(ValueError):
    """A paid campaign checkout whose data the ledger cannot book (bad metadata, amount or currency)."""


@dataclasses.dataclass(frozen=True)
class CampaignFunding:
    """What one paid campaign checkout books: the net budget and the platform fee."""

    checkout_session_id: str
    campaign_id: str
    currency: int  # of the budget account (the fee is always cash)
    gross_cents: int
    fee_cents: int
    net_cents: int
    # The payment a refund goes against; None only in events that leave it out.
    payment_intent_id: str | None = None

    @property
    def funding_key(self) -> str:
        return f"funding:{self.checkout_session_id}"

    @property
    def fee_key(self) -> str:
        return f"platform-fee:{self.checkout_session_id}"


def funding_split(gross_cents: int, fee_bps: int) -> tuple[int, int]:
    """(fee, net) of a gross payment: the fee is ``gross * bps // 10000`` rounded down, the rest is the
    campaign's budget. Integer arithmetic only."""
    if gross_cents < 0 or not 0 <= fee_bps <= MAX_FEE_BPS:
        raise ValueError(f"cannot split {gross_cents} at {fee_bps} bps")
    fee = gross_cents * fee_bps // MAX_FEE_BPS
    return fee, gross_cents - fee


def campaign_funding(session: Mapping[str, Any]) -> CampaignFunding | None:
    """What a Checkout session (the data.object of a checkout.session.* event) books.

    None when there is nothing to book: another kind of checkout, or one not paid (yet). Raises
    FundingNotBookable when it is a paid campaign funding checkout that cannot be booked as it is.
    """
    metadata = session.get("metadata")
    if not isinstance(metadata, Mapping) or metadata.get("type") != CAMPAIGN_FUNDING_TYPE:
        return None
    if session.get("payment_status") != "paid":
        return None
    session_id = session.get("id")
    if not isinstance(session_id, str) or not _STRIPE_ID.fullmatch(session_id):
        raise FundingNotBookable(f"checkout session id {session_id!r} is not a Stripe id")
    campaign_id = metadata.get("campaign_id")
    try:
        uuid.UUID(str(campaign_id))
    except ValueError:
        raise FundingNotBookable(f"metadata.campaign_id {campaign_id!r} is not a campaign id (UUID)") from None
    currency = FUNDING_CURRENCIES.get(str(metadata.get("reward_currency")))
    if currency is None:
        raise FundingNotBookable(f"metadata.reward_currency {metadata.get('reward_currency')!r} is not a currency")
    bps = metadata.get("platform_fee_bps")
    if not isinstance(bps, str) or not _BPS.fullmatch(bps) or int(bps) > MAX_FEE_BPS:
        raise FundingNotBookable(f"metadata.platform_fee_bps {bps!r} is not 0 to {MAX_FEE_BPS}")
    if str(session.get("currency", "")).lower() != "usd":
        raise FundingNotBookable(f"checkout paid in {session.get('currency')!r}, not usd")
    gross = session.get("amount_total")
    if not isinstance(gross, int) or isinstance(gross, bool) or not 0 < gross <= MAX_FUNDING_CENTS:
        raise FundingNotBookable(f"amount_total {gross!r} is not a positive amount of cents")
    fee, net = funding_split(gross, int(bps))
    if net <= 0:
        raise FundingNotBookable(f"a {bps} bps fee leaves no budget")
    intent = session.get("payment_intent")
    if isinstance(intent, Mapping):
        intent = intent.get("id")
    return CampaignFunding(
        checkout_session_id=session_id,
        campaign_id=str(campaign_id),
        currency=currency,
        gross_cents=gross,
        fee_cents=fee,
        net_cents=net,
        payment_intent_id=intent if isinstance(intent, str) and _STRIPE_ID.fullmatch(intent) else None,
    )


# --- merchant fees -------------------------------------------------------------------------------------

# 15 % of the Nova redeemed at a merchant, per redemption, rounded half-up. The same rate is written in the
# accrual trigger (migrations/versions/0004); tests/ledger/test_merchant_fees.py holds the two equal.
MERCHANT_FEE_BPS = 1500
# ACCRUING → INVOICED → PAID, one step at a time.
FEE_PERIOD_NEXT: Mapping[int, int] = {
    pb.FEE_PERIOD_STATUS_ACCRUING: pb.FEE_PERIOD_STATUS_INVOICED,
    pb.FEE_PERIOD_STATUS_INVOICED: pb.FEE_PERIOD_STATUS_PAID,
}


def merchant_fee_cents(nova_redeemed: int) -> int:
    """The fee on one redemption: 15 %, half-up, in integers (300 → 45, 10 → 2, 30 → 5, 333 → 50)."""
    return (nova_redeemed * MERCHANT_FEE_BPS + 5_000) // 10_000


def month_bounds(month: str) -> tuple[datetime.date, datetime.date]:
    """ "YYYY-MM" → (first day, last day) of that calendar month."""
    year, number = (int(part) for part in month.split("-"))
    first = datetime.date(year, number, 1)
    following = datetime.date(year + number // 12, number % 12 + 1, 1)
    return first, following - datetime.timedelta(days=1)
