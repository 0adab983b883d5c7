"""Pure rules of the ledger: which accounts each kind of transfer may move value between, idempotency
scopes and request hashes, and the wallet's and payouts' arithmetic. No I/O, no clock reads."""

from __future__ import annotations

import hashlib
from typing import Any

from google.protobuf.message import Message
from nerava.ledger.v1 import ledger_pb2 as pb

A = pb.AccountType
K = pb.TransferKind

# (from account type, to account type) pairs each kind allows. Reversals mirror their original instead, and
# payouts move only through the two-phase RPCs.
ALLOWED_PAIRS: dict[int, frozenset[tuple[int, int]]] = {
    K.TRANSFER_KIND_CAMPAIGN_FUNDING: frozenset({(A.ACCOUNT_TYPE_EXTERNAL_FUNDING, A.ACCOUNT_TYPE_CAMPAIGN_BUDGET)}),
    K.TRANSFER_KIND_PLATFORM_FEE: frozenset(
        {
            (A.ACCOUNT_TYPE_CAMPAIGN_BUDGET, A.ACCOUNT_TYPE_PLATFORM_FEES),
            (A.ACCOUNT_TYPE_EXTERNAL_FUNDING, A.ACCOUNT_TYPE_PLATFORM_FEES),
        }
    ),
    K.TRANSFER_KIND_CAMPAIGN_GRANT: frozenset(
        {
            (A.ACCOUNT_TYPE_CAMPAIGN_BUDGET, A.ACCOUNT_TYPE_DRIVER_CASH),
            (A.ACCOUNT_TYPE_CAMPAIGN_BUDGET, A.ACCOUNT_TYPE_DRIVER_NOVA),
        }
    ),
    K.TRANSFER_KIND_ADMIN_GRANT: frozenset(
        {
            (A.ACCOUNT_TYPE_EXTERNAL_FUNDING, A.ACCOUNT_TYPE_DRIVER_NOVA),
            (A.ACCOUNT_TYPE_EXTERNAL_FUNDING, A.ACCOUNT_TYPE_MERCHANT_NOVA),
        }
    ),
    K.TRANSFER_KIND_REDEMPTION: frozenset({(A.ACCOUNT_TYPE_DRIVER_NOVA, A.ACCOUNT_TYPE_MERCHANT_NOVA)}),
}

# Where a reserved payout goes when posted: out of the system, to the driver's Stripe account.
PAYOUT_SOURCES = frozenset({A.ACCOUNT_TYPE_DRIVER_CASH})
PAYOUT_DESTINATIONS = frozenset({A.ACCOUNT_TYPE_EXTERNAL_FUNDING})


def kind_allows(kind: int, from_type: int, to_type: int) -> bool:
    return (from_type, to_type) in ALLOWED_PAIRS.get(kind, frozenset())


def request_hash(method: str, request: Message) -> bytes:
    """What 'the same request' means for idempotency: the method and the request's exact fields."""
    digest = hashlib.sha256(method.encode())
    digest.update(b"\0")
    digest.update(request.SerializeToString(deterministic=True))
    return digest.digest()


def scope_of(service: str | None, user_id: str | None) -> str:
    """Idempotency keys are scoped to the caller: two services (or two drivers) may pick the same key."""
    if service is not None:
        return f"service:{service}"
    return f"user:{user_id}"


def cash_entry_description(kind: int, phase: int, amount: int, metadata: dict[str, str]) -> tuple[str, str]:
    """(transaction_type, description) of a cash wallet entry, in the app's words."""
    if kind == K.TRANSFER_KIND_PAYOUT:
        if phase == pb.TRANSFER_PHASE_VOID:
            return "reversal", "Withdrawal returned"
        return "withdrawal", "Withdrawal"
    if kind == K.TRANSFER_KIND_REVERSAL:
        return "reversal", f"Reversed: {metadata['reason']}" if metadata.get("reason") else "Reversed"
    if kind == K.TRANSFER_KIND_CAMPAIGN_GRANT:
        name = metadata.get("campaign_name")
        return "credit", f"Earned from {name}" if name else "Charging reward"
    return ("credit" if amount > 0 else "debit"), metadata.get("description", "")


def timeline_item(
    entry_id: int, amount: int, currency: int, kind: int, metadata: dict[str, str], *, created_at: Any
) -> pb.TimelineItem:
    """EARNED for grant credits, SPENT for redemption debits (DOMAIN: wallet timeline)."""
    if kind == K.TRANSFER_KIND_REDEMPTION:
        merchant = metadata.get("merchant_name") or f"Merchant {metadata.get('merchant_id', '')[:8]}".strip()
        return pb.TimelineItem(
            id=f"spent_{entry_id}",
            type="SPENT",
            amount_cents=abs(amount),
            title=merchant,
            subtitle="Nova applied",
            created_at=created_at,
            merchant_id=metadata.get("merchant_id", ""),
            redemption_id=metadata.get("redemption_id", ""),
            currency=currency,  # type: ignore[arg-type]
        )
    title = metadata.get("campaign_name") or (
        "Admin grant" if kind == K.TRANSFER_KIND_ADMIN_GRANT else "Charging reward"
    )
    return pb.TimelineItem(
        id=f"earn_{entry_id}",
        type="EARNED",
        amount_cents=amount,
        title=title,
        subtitle="Nova issued" if currency == pb.CURRENCY_NOVA_POINTS else "Cash earned",
        created_at=created_at,
        currency=currency,  # type: ignore[arg-type]
    )


# --- payouts (DOMAIN: Payouts) -------------------------------------------------------------------------

P = pb.PayoutStatus
MINIMUM_WITHDRAWAL_CENTS = 2000  # $20; no fee at or above it
MAX_PAYOUTS_PER_UTC_DAY = 3
MAX_CENTS_PER_ROLLING_WEEK = 100_000  # $1000 per rolling 7 days
# Payouts that count against the limits: every one that has not failed.
LIMITED_STATUSES = frozenset(
    {P.PAYOUT_STATUS_PENDING, P.PAYOUT_STATUS_PROCESSING, P.PAYOUT_STATUS_PAID, P.PAYOUT_STATUS_UNKNOWN}
)
# The transition table. `unknown` (Stripe's answer was lost) is settled by reconciliation or a webhook,
# never by refunding blindly; a webhook may overtake our own pending→processing update.
TRANSITIONS: dict[int, frozenset[int]] = {
    P.PAYOUT_STATUS_PENDING: frozenset(
        {P.PAYOUT_STATUS_PROCESSING, P.PAYOUT_STATUS_UNKNOWN, P.PAYOUT_STATUS_FAILED, P.PAYOUT_STATUS_PAID}
    ),
    P.PAYOUT_STATUS_UNKNOWN: frozenset({P.PAYOUT_STATUS_PROCESSING, P.PAYOUT_STATUS_FAILED, P.PAYOUT_STATUS_PAID}),
    P.PAYOUT_STATUS_PROCESSING: frozenset({P.PAYOUT_STATUS_PAID, P.PAYOUT_STATUS_FAILED}),
    P.PAYOUT_STATUS_PAID: frozenset(),
    P.PAYOUT_STATUS_FAILED: frozenset(),
}


def may_transition(current: int, target: int) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


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
