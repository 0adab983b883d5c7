"""Background loops of the ledger: reconciliation of payouts whose Stripe answer was lost, and delivery of
the ledger's outbox (campaign funding → incentives)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from nerava.incentives.v1 import incentives_pb2, incentives_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.outbox import Handler, OutboxMessage, PermanentDeliveryError
from services.ledger.payouts import Payouts
from services.ledger.refunds import refund_duplicate_payment

log = logging.getLogger(__name__)

# Incentives' answers that no retry can change. The campaign does not take this payment (FAILED_PRECONDITION,
# e.g. CAMPAIGN_ALREADY_FUNDED for a second checkout paid for one campaign, or a canceled campaign) or does not
# exist (NOT_FOUND): the payment is refunded whole — its funding and fee transfers reversed, the gross back
# through Stripe (refunds.py) — and the delivery is done. INVALID_ARGUMENT (a payload incentives cannot read) is
# parked for a person. Every other answer — UNAVAILABLE, DEADLINE_EXCEEDED, UNIMPLEMENTED while incentives is
# being deployed, an authentication problem being fixed — is retried with backoff, a bounded number of times.
_NOT_TAKEN = frozenset({grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION})
_REFUSALS = frozenset({grpc.StatusCode.INVALID_ARGUMENT})


async def reconcile_payouts(payouts: Payouts, stop: asyncio.Event, interval_s: float, after_s: float) -> None:
    """Every ``interval_s``, asks Stripe about payouts that have been `unknown` for ``after_s``. Every replica
    may run it: settling is a conditional update, and re-sending a transfer reuses its idempotency key."""
    while not stop.is_set():
        try:
            settled = await payouts.reconcile_unknown(older_than=datetime.timedelta(seconds=after_s))
            if settled:
                log.info("payouts reconciled", extra={"settled": settled})
        except Exception:
            log.exception("payout reconciliation failed; retrying next interval")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)


def record_funding_request(payload: Any) -> incentives_pb2.RecordCampaignFundingRequest:
    """The RecordCampaignFunding request of a "campaign.funded" outbox payload (funding.funded_payload)."""
    paid_at = timestamp_pb2.Timestamp()
    paid_at.FromJsonString(str(payload["paid_at"]))
    return incentives_pb2.RecordCampaignFundingRequest(
        campaign_id=str(payload["campaign_id"]),
        checkout_session_id=str(payload["checkout_session_id"]),
        gross_cents=int(payload["gross_cents"]),
        platform_fee_cents=int(payload["platform_fee_cents"]),
        net_budget_cents=int(payload["net_budget_cents"]),
        paid_at=paid_at,
    )


def campaign_funded_delivery(
    incentives: incentives_pb2_grpc.IncentivesServiceAsyncStub, engine: AsyncEngine, on_refund: Callable[[], None]
) -> Handler:
    """The outbox handler of "campaign.funded": RecordCampaignFunding, idempotent on the checkout session id
    at the receiver, so a delivery repeated after a lost answer records the funding once. A payment the
    campaign does not take is refunded."""

    async def deliver(message: OutboxMessage) -> None:
        try:
            request = record_funding_request(message.payload)
        except (KeyError, TypeError, ValueError) as exc:
            raise PermanentDeliveryError(f"unreadable campaign.funded payload: {exc!r}") from exc
        try:
            reply = await incentives.RecordCampaignFunding(request)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _NOT_TAKEN:
                if not await refund_duplicate_payment(
                    engine, request.checkout_session_id, f"{exc.code().name}: {exc.details()}"
                ):
                    raise PermanentDeliveryError(f"unrefundable: {exc.code().name}: {exc.details()}") from exc
                on_refund()
                return
            if exc.code() in _REFUSALS:
                log.error(
                    "incentives refused a campaign funding; the outbox row is parked",
                    extra={
                        "campaign_id": request.campaign_id,
                        "checkout_session_id": request.checkout_session_id,
                        "code": exc.code().name,
                        "details": exc.details(),
                    },
                )
                raise PermanentDeliveryError(f"{exc.code().name}: {exc.details()}") from exc
            raise
        log.info(
            "campaign funding recorded by incentives",
            extra={"checkout_session_id": request.checkout_session_id, "replayed": reply.replayed},
        )

    return deliver
