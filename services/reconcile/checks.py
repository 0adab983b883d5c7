"""The cross-service reconciliation: money that lives between incentives, merchants, the ledger and Stripe, checked
against the ledger (ARCHITECTURE §5).

Why it reads the schemas and not the RPCs. It is an operator tool and a background worker, never a request path:
it needs one consistent picture of three services at once, which one REPEATABLE READ, READ ONLY transaction over
the shared PostgreSQL gives (the three schemas are read in the same snapshot, so an effect in flight is either on
both sides or visibly in flight), where paging through three services' RPCs would compare lists taken at
different moments and report races as drift. It writes nothing and needs only SELECT on the incentives, merchants
and ledger schemas (in production: a read-only role). Stripe is read through the ledger's adapter (official SDK).

Invariants, each a list of offending ids (empty = holds):
- campaign_budget: what incentives says a campaign was funded with (budget - refunded, for a funded campaign; 0
  otherwise) equals the funding still booked in its ledger budget account (funding transfers less their
  reversals); a budget account with funding for no campaign is drift too.
- campaign_spend: incentives' spent equals its live grants, and the ledger budget balance equals
  budget - spent - refunded plus the grants still in flight (PENDING, no transfer yet).
- grant_transfer: every GRANTED grant has exactly one grant transfer (its key, its amount, its driver, not
  reversed); a clawed-back or FAILED grant has none left standing; no grant transfer without its grant; no grant
  PENDING for longer than `stuck_after`.
- redemption_transfer: every COMPLETED redemption has its transfer (its key, its amount); a FAILED one has none
  standing; no redemption transfer without its redemption; none PENDING for longer than `stuck_after`.
- checkout_payment: every payment the ledger booked is a paid Stripe Checkout of that amount and PaymentIntent;
  what the ledger refunded on it equals what Stripe refunded; no refund unsent for longer than `stuck_after`.
- payout_transfer: every PAID payout is a Stripe transfer of its amount, made for it and not reversed; a FAILED
  payout's transfer, if Stripe made one, is reversed.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import sqlalchemy as sa
from nerava.incentives.v1 import incentives_pb2 as ipb
from nerava.ledger.v1 import ledger_pb2 as lpb
from nerava.merchants.v1 import merchants_pb2 as mpb
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.ledger.adapters.stripe_payouts import CheckoutPayment, StripeTransfer

INVARIANTS = (
    "campaign_budget",
    "campaign_spend",
    "grant_transfer",
    "redemption_transfer",
    "checkout_payment",
    "payout_transfer",
)
DEFAULT_STUCK_AFTER = datetime.timedelta(minutes=10)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


class StripeReads(Protocol):
    """What the reconciliation reads at Stripe (services/ledger/adapters/stripe_payouts.py)."""

    async def transfer_state(self, transfer_id: str) -> StripeTransfer | None: ...

    async def checkout_payment(self, session_id: str) -> CheckoutPayment | None: ...

    async def refunded_cents(self, payment_intent_id: str) -> int: ...


@dataclasses.dataclass(frozen=True)
class Report:
    """Offending ids per invariant, every invariant listed."""

    drift: Mapping[str, Sequence[str]]

    @property
    def holds(self) -> bool:
        return not any(self.drift.values())

    def lines(self) -> list[str]:
        return [f"{name}: {'ok' if not ids else 'DRIFT ' + ', '.join(sorted(ids))}" for name, ids in self.drift.items()]


_K, _A = lpb.TransferKind, lpb.AccountType
_G = ipb.GrantStatus
_R = mpb.RedemptionStatus
_INCENTIVES_SCOPE = "service:incentives"
_MERCHANTS_SCOPE = "service:merchants"

# Funding still booked per budget account: funding transfers in, less what was reversed of them (refunds).
_CAMPAIGN_BUDGET = f"""
WITH funded AS (
    SELECT a.owner_id, a.currency, a.opened_at, sum(t.amount - t.reversed_amount) AS net
      FROM ledger.accounts a
      JOIN ledger.transfers t ON t.to_account_id = a.id AND t.kind = {_K.TRANSFER_KIND_CAMPAIGN_FUNDING}
     WHERE a.type = {_A.ACCOUNT_TYPE_CAMPAIGN_BUDGET}
     GROUP BY a.id
)
SELECT coalesce(c.id::text, f.owner_id) AS id
  FROM incentives.campaigns c
  FULL JOIN funded f ON f.owner_id = c.id::text AND f.currency = c.reward_kind
 WHERE coalesce(c.created_at, f.opened_at) >= :since
   AND ((c.id IS NULL AND f.net <> 0)
        OR (c.id IS NOT NULL AND coalesce(f.net, 0) <> CASE WHEN c.funding_status = {ipb.FUNDING_STATUS_FUNDED}
                                                            THEN c.budget_cents - c.refunded_cents ELSE 0 END))
"""

_CAMPAIGN_SPEND = f"""
SELECT c.id::text AS id
  FROM incentives.campaigns c
  LEFT JOIN ledger.accounts a
         ON a.type = {_A.ACCOUNT_TYPE_CAMPAIGN_BUDGET} AND a.owner_id = c.id::text AND a.currency = c.reward_kind
  CROSS JOIN LATERAL (
      SELECT coalesce(sum(g.amount_cents), 0) AS live,
             coalesce(sum(g.amount_cents) FILTER (WHERE g.status = {_G.GRANT_STATUS_PENDING} AND t.id IS NULL), 0)
                 AS in_flight
        FROM incentives.grants g
        LEFT JOIN ledger.transfers t
               ON t.scope = '{_INCENTIVES_SCOPE}' AND t.idempotency_key = 'grant:' || g.id::text
       WHERE g.campaign_id = c.id AND g.status IN ({_G.GRANT_STATUS_PENDING}, {_G.GRANT_STATUS_GRANTED})
  ) s
 WHERE c.created_at >= :since
   AND c.funding_status = {ipb.FUNDING_STATUS_FUNDED}
   AND (c.spent_cents <> s.live
        OR coalesce(a.balance, 0) - s.in_flight <> c.budget_cents - c.spent_cents - c.refunded_cents)
"""

_GRANT_TRANSFER = f"""
SELECT g.id::text AS id
  FROM incentives.grants g
  LEFT JOIN ledger.transfers t ON t.scope = '{_INCENTIVES_SCOPE}' AND t.idempotency_key = 'grant:' || g.id::text
  LEFT JOIN ledger.accounts d ON d.id = t.to_account_id
 WHERE g.created_at >= :since
   AND ((g.status = {_G.GRANT_STATUS_GRANTED}
         AND (t.id IS NULL OR t.kind <> {_K.TRANSFER_KIND_CAMPAIGN_GRANT} OR t.amount <> g.amount_cents
              OR t.reversed_amount <> 0 OR d.owner_id <> g.driver_id
              OR g.ledger_transfer_id IS DISTINCT FROM t.id
              OR (SELECT count(*) FROM ledger.transfers o
                   WHERE o.kind = {_K.TRANSFER_KIND_CAMPAIGN_GRANT} AND o.metadata ->> 'grant_id' = g.id::text) <> 1))
        OR (g.status IN ({_G.GRANT_STATUS_CLAWED_BACK}, {_G.GRANT_STATUS_FAILED})
            AND t.id IS NOT NULL AND t.reversed_amount <> t.amount)
        OR (g.status = {_G.GRANT_STATUS_PENDING} AND g.created_at < :stuck_before))
UNION
SELECT coalesce(t.metadata ->> 'grant_id', t.id::text)
  FROM ledger.transfers t
  LEFT JOIN incentives.grants g ON 'grant:' || g.id::text = t.idempotency_key
 WHERE t.kind = {_K.TRANSFER_KIND_CAMPAIGN_GRANT} AND t.scope = '{_INCENTIVES_SCOPE}' AND t.created_at >= :since
   AND g.id IS NULL
"""

_REDEMPTION_TRANSFER = f"""
SELECT r.id::text AS id
  FROM merchants.redemptions r
  LEFT JOIN ledger.transfers t ON t.scope = '{_MERCHANTS_SCOPE}' AND t.idempotency_key = 'redemption:' || r.id::text
 WHERE r.created_at >= :since
   AND ((r.status = {_R.REDEMPTION_STATUS_COMPLETED}
         AND (t.id IS NULL OR t.kind <> {_K.TRANSFER_KIND_REDEMPTION} OR t.amount <> r.discount_cents
              OR r.transfer_id IS DISTINCT FROM t.id))
        OR (r.status = {_R.REDEMPTION_STATUS_FAILED} AND t.id IS NOT NULL AND t.reversed_amount <> t.amount)
        OR (r.status = {_R.REDEMPTION_STATUS_PENDING} AND r.created_at < :stuck_before))
UNION
SELECT coalesce(t.metadata ->> 'redemption_id', t.id::text)
  FROM ledger.transfers t
  LEFT JOIN merchants.redemptions r ON 'redemption:' || r.id::text = t.idempotency_key
 WHERE t.kind = {_K.TRANSFER_KIND_REDEMPTION} AND t.scope = '{_MERCHANTS_SCOPE}' AND t.created_at >= :since
   AND r.id IS NULL
"""

_PAYMENTS = """
SELECT p.checkout_session_id, p.payment_intent_id, p.gross_cents,
       coalesce(sum(r.amount_cents) FILTER (WHERE r.stripe_refund_id IS NOT NULL), 0) AS refunded,
       count(r.id) FILTER (WHERE r.stripe_refund_id IS NULL AND r.created_at < :stuck_before) AS unsent
  FROM ledger.campaign_payments p
  LEFT JOIN ledger.payment_refunds r ON r.checkout_session_id = p.checkout_session_id
 WHERE p.booked_at >= :since
 GROUP BY p.checkout_session_id
"""

_PAYOUTS = f"""
SELECT id::text AS id, amount_cents, status, stripe_transfer_id
  FROM ledger.payouts
 WHERE created_at >= :since
   AND (status = {lpb.PAYOUT_STATUS_PAID} OR (status = {lpb.PAYOUT_STATUS_FAILED} AND stripe_transfer_id IS NOT NULL))
"""


async def _ids(conn: AsyncConnection, sql: str, params: Mapping[str, Any]) -> list[str]:
    return sorted({str(row[0]) for row in (await conn.execute(sa.text(sql), dict(params))).all()})


async def _checkout_drift(rows: Sequence[Any], stripe: StripeReads) -> list[str]:
    drift = []
    for row in rows:
        paid = await stripe.checkout_payment(row.checkout_session_id)
        if (
            paid is None
            or not paid.paid
            or paid.amount_cents != row.gross_cents
            or paid.payment_intent_id != row.payment_intent_id
            or row.unsent
            or (
                row.payment_intent_id is not None and await stripe.refunded_cents(row.payment_intent_id) != row.refunded
            )
        ):
            drift.append(str(row.checkout_session_id))
    return drift


async def _payout_drift(rows: Sequence[Any], stripe: StripeReads) -> list[str]:
    drift = []
    for row in rows:
        transfer = None if row.stripe_transfer_id is None else await stripe.transfer_state(row.stripe_transfer_id)
        if row.status == lpb.PAYOUT_STATUS_PAID:
            ok = (
                transfer is not None
                and transfer.amount_cents == row.amount_cents
                and transfer.payout_id == row.id
                and not transfer.reversed
            )
        else:  # FAILED with a Stripe transfer: the money must have come back
            ok = transfer is None or transfer.reversed
        if not ok:
            drift.append(str(row.id))
    return drift


async def reconcile(
    engine: AsyncEngine,
    stripe: StripeReads | None,
    *,
    now: datetime.datetime,
    since: datetime.datetime | None = None,
    stuck_after: datetime.timedelta = DEFAULT_STUCK_AFTER,
) -> Report:
    """Every invariant, over what was created since `since` (everything when None). Without `stripe` the two
    Stripe invariants are not checked and report nothing."""
    params = {"since": since or _EPOCH, "stuck_before": now - stuck_after}
    reads = engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    async with reads.connect() as conn, conn.begin():
        drift: dict[str, list[str]] = {
            "campaign_budget": await _ids(conn, _CAMPAIGN_BUDGET, params),
            "campaign_spend": await _ids(conn, _CAMPAIGN_SPEND, params),
            "grant_transfer": await _ids(conn, _GRANT_TRANSFER, params),
            "redemption_transfer": await _ids(conn, _REDEMPTION_TRANSFER, params),
        }
        payments = list((await conn.execute(sa.text(_PAYMENTS), params)).all())
        payouts = list((await conn.execute(sa.text(_PAYOUTS), params)).all())
    # Stripe is read after the snapshot closed: no database transaction stays open across network calls.
    drift["checkout_payment"] = [] if stripe is None else await _checkout_drift(payments, stripe)
    drift["payout_transfer"] = [] if stripe is None else await _payout_drift(payouts, stripe)
    return Report({name: drift[name] for name in INVARIANTS})
