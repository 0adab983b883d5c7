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
    SELECT account.owner_id, account.currency, account.opened_at,
           sum(transfer.amount - transfer.reversed_amount) AS net
      FROM ledger.accounts AS account
      JOIN ledger.transfers AS transfer
           ON transfer.to_account_id = account.id AND transfer.kind = {_K.TRANSFER_KIND_CAMPAIGN_FUNDING}
     WHERE account.type = {_A.ACCOUNT_TYPE_CAMPAIGN_BUDGET}
     GROUP BY account.id
)
SELECT coalesce(campaign.id::text, funded.owner_id) AS id
  FROM incentives.campaigns AS campaign
  FULL JOIN funded ON funded.owner_id = campaign.id::text AND funded.currency = campaign.reward_kind
 WHERE coalesce(campaign.created_at, funded.opened_at) >= :since
   AND ((campaign.id IS NULL AND funded.net <> 0)
        OR (campaign.id IS NOT NULL
            AND coalesce(funded.net, 0) <> CASE WHEN campaign.funding_status = {ipb.FUNDING_STATUS_FUNDED}
                                                THEN campaign.budget_cents - campaign.refunded_cents ELSE 0 END))
"""

_CAMPAIGN_SPEND = f"""
SELECT campaign.id::text AS id
  FROM incentives.campaigns AS campaign
  LEFT JOIN ledger.accounts AS account
         ON account.type = {_A.ACCOUNT_TYPE_CAMPAIGN_BUDGET} AND account.owner_id = campaign.id::text
            AND account.currency = campaign.reward_kind
  CROSS JOIN LATERAL (
      SELECT coalesce(sum(granted.amount_cents), 0) AS live,
             coalesce(sum(granted.amount_cents)
                      FILTER (WHERE granted.status = {_G.GRANT_STATUS_PENDING} AND transfer.id IS NULL), 0)
                 AS in_flight
        FROM incentives.grants AS granted
        LEFT JOIN ledger.transfers AS transfer
               ON transfer.scope = '{_INCENTIVES_SCOPE}' AND transfer.idempotency_key = 'grant:' || granted.id::text
       WHERE granted.campaign_id = campaign.id
         AND granted.status IN ({_G.GRANT_STATUS_PENDING}, {_G.GRANT_STATUS_GRANTED})
  ) AS spend
 WHERE campaign.created_at >= :since
   AND campaign.funding_status = {ipb.FUNDING_STATUS_FUNDED}
   AND (campaign.spent_cents <> spend.live
        OR coalesce(account.balance, 0) - spend.in_flight
           <> campaign.budget_cents - campaign.spent_cents - campaign.refunded_cents)
"""

_GRANT_TRANSFER = f"""
SELECT granted.id::text AS id
  FROM incentives.grants AS granted
  LEFT JOIN ledger.transfers AS transfer
         ON transfer.scope = '{_INCENTIVES_SCOPE}' AND transfer.idempotency_key = 'grant:' || granted.id::text
  LEFT JOIN ledger.accounts AS recipient ON recipient.id = transfer.to_account_id
 WHERE granted.created_at >= :since
   AND ((granted.status = {_G.GRANT_STATUS_GRANTED}
         AND (transfer.id IS NULL OR transfer.kind <> {_K.TRANSFER_KIND_CAMPAIGN_GRANT}
              OR transfer.amount <> granted.amount_cents
              OR transfer.reversed_amount <> 0 OR recipient.owner_id <> granted.driver_id
              OR granted.ledger_transfer_id IS DISTINCT FROM transfer.id
              OR (SELECT count(*) FROM ledger.transfers AS same_grant
                   WHERE same_grant.kind = {_K.TRANSFER_KIND_CAMPAIGN_GRANT}
                     AND same_grant.metadata ->> 'grant_id' = granted.id::text) <> 1))
        OR (granted.status IN ({_G.GRANT_STATUS_CLAWED_BACK}, {_G.GRANT_STATUS_FAILED})
            AND transfer.id IS NOT NULL AND transfer.reversed_amount <> transfer.amount)
        OR (granted.status = {_G.GRANT_STATUS_PENDING} AND granted.created_at < :stuck_before))
UNION
SELECT coalesce(transfer.metadata ->> 'grant_id', transfer.id::text)
  FROM ledger.transfers AS transfer
  LEFT JOIN incentives.grants AS granted ON 'grant:' || granted.id::text = transfer.idempotency_key
 WHERE transfer.kind = {_K.TRANSFER_KIND_CAMPAIGN_GRANT} AND transfer.scope = '{_INCENTIVES_SCOPE}'
   AND transfer.created_at >= :since
   AND granted.id IS NULL
"""

_REDEMPTION_TRANSFER = f"""
SELECT redemption.id::text AS id
  FROM merchants.redemptions AS redemption
  LEFT JOIN ledger.transfers AS transfer
         ON transfer.scope = '{_MERCHANTS_SCOPE}' AND transfer.idempotency_key = 'redemption:' || redemption.id::text
 WHERE redemption.created_at >= :since
   AND ((redemption.status = {_R.REDEMPTION_STATUS_COMPLETED}
         AND (transfer.id IS NULL OR transfer.kind <> {_K.TRANSFER_KIND_REDEMPTION}
              OR transfer.amount <> redemption.discount_cents
              OR redemption.transfer_id IS DISTINCT FROM transfer.id))
        OR (redemption.status = {_R.REDEMPTION_STATUS_FAILED}
            AND transfer.id IS NOT NULL AND transfer.reversed_amount <> transfer.amount)
        OR (redemption.status = {_R.REDEMPTION_STATUS_PENDING} AND redemption.created_at < :stuck_before))
UNION
SELECT coalesce(transfer.metadata ->> 'redemption_id', transfer.id::text)
  FROM ledger.transfers AS transfer
  LEFT JOIN merchants.redemptions AS redemption ON 'redemption:' || redemption.id::text = transfer.idempotency_key
 WHERE transfer.kind = {_K.TRANSFER_KIND_REDEMPTION} AND transfer.scope = '{_MERCHANTS_SCOPE}'
   AND transfer.created_at >= :since
   AND redemption.id IS NULL
"""

_PAYMENTS = """
SELECT payment.checkout_session_id, payment.payment_intent_id, payment.gross_cents,
       coalesce(sum(refund.amount_cents) FILTER (WHERE refund.stripe_refund_id IS NOT NULL), 0) AS refunded,
       count(refund.id) FILTER (WHERE refund.stripe_refund_id IS NULL AND refund.created_at < :stuck_before) AS unsent
  FROM ledger.campaign_payments AS payment
  LEFT JOIN ledger.payment_refunds AS refund ON refund.checkout_session_id = payment.checkout_session_id
 WHERE payment.booked_at >= :since
 GROUP BY payment.checkout_session_id
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
