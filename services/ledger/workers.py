"""Background loops of the ledger: reconciliation of payouts whose Stripe answer was lost, and delivery of
the ledger's outbox (campaign funding → incentives)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from nerava.incentives.v1 import incentives_pb2, incentives_pb2_grpc

from services.common.outbox import Handler, OutboxMessage, PermanentDeliveryError
from services.ledger.payouts import Payouts

log = logging.getLogger(__name__)

# Incentives' answers that no retry can change: the request is invalid (INVALID_ARGUMENT), the campaign does
# not exist (NOT_FOUND), or the campaign cannot take this funding (FAILED_PRECONDITION, e.g.
# CAMPAIGN_ALREADY_FUNDED for a second checkout paid for one campaign). The row is parked (failed_at, the
# error kept in last_error) and logged. The money stays booked in the campaign's budget account; refunding
# such a payment (a Stripe refund and its reversal in the ledger) is not done here yet and needs a person.
# Every other answer — UNAVAILABLE, DEADLINE_EXCEEDED, UNIMPLEMENTED while incentives is being deployed,
# an authentication problem being fixed — is retried with backoff.
_REFUSALS = frozenset(
    {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION}
)


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


def campaign_funded_delivery(incentives: incentives_pb2_grpc.IncentivesServiceAsyncStub) -> Handler:
    """The outbox handler of "campaign.funded": RecordCampaignFunding, idempotent on the checkout session id
    at the receiver, so a delivery repeated after a lost answer records the funding once."""

    async def deliver(message: OutboxMessage) -> None:
        try:
            request = record_funding_request(message.payload)
        except (KeyError, TypeError, ValueError) as exc:
            raise PermanentDeliveryError(f"unreadable campaign.funded payload: {exc!r}") from exc
        try:
            reply = await incentives.RecordCampaignFunding(request)
        except grpc.aio.AioRpcError as exc:
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
