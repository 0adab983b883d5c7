"""Stripe's webhook events: the signature checked (a refusal is INVALID_ARGUMENT), each event applied at most once
(recorded in stripe_events), a signed event that cannot be applied recorded as a payment issue for an admin.
Transport-free."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import uuid
from collections.abc import Callable
from typing import Any

from nerava.ledger.v1 import ledger_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import InvalidArgument, Unavailable
from services.ledger import domain, store
from services.ledger.adapters.stripe_payouts import StripePayouts, StripeSignatureInvalid
from services.ledger.funding import CampaignFundings, FundingNotBooked
from services.ledger.onboarding import StripeOnboarding
from services.ledger.payouts import Payouts
from services.ledger.reasons import Reason

log = logging.getLogger(__name__)
# How long a Stripe event's first delivery has to apply it before a retry of the event takes it over.
STRIPE_EVENT_LEASE = datetime.timedelta(minutes=1)


class _NeedsAttention(Exception):
    """A signed Stripe event the ledger cannot apply as it is; `object_id` names the Stripe object."""

    def __init__(self, problem: str, object_id: str) -> None:
        super().__init__(problem)
        self.object_id = object_id


def _object(value: Any) -> dict[str, Any]:
    """A nested object of a Stripe event, or {} when it is absent or not an object (signed but malformed: never a
    server error, Stripe would retry it for days)."""
    return value if isinstance(value, dict) else {}


def verified_event(body: bytes, signature: str, secret: str) -> dict[str, Any]:
    """The event Stripe signed: `body` is the request's raw body, `signature` its Stripe-Signature header. Refused
    (INVALID_ARGUMENT) when the signature does not hold or the signed body is no event with an id and a
    data.object. Stripe's verifier judges the signature's age against the wall clock itself."""
    try:
        event = StripePayouts.verify_webhook(body, signature, secret)
    except StripeSignatureInvalid as exc:
        # The issue asks for 400 (INVALID_ARGUMENT), not 401: Stripe retries on any non-2xx anyway.
        raise InvalidArgument([("stripe-signature", str(exc))], reason=Reason.STRIPE_SIGNATURE_INVALID) from exc
    data = event.get("data")
    if not str(event.get("id", "")) or not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise InvalidArgument([("http_body", "not a Stripe event")], reason=Reason.WEBHOOK_PAYLOAD_INVALID)
    return event


@dataclasses.dataclass(frozen=True)
class HandledEvent:
    event_id: str
    event_type: str
    outcome: pb.WebhookOutcome


@dataclasses.dataclass(frozen=True)
class PaymentIssue:
    """A signed event the ledger could not apply, for an admin to look at."""

    event_id: str
    event_type: str
    object_id: str
    problem: str
    created_at: datetime.datetime


class StripeEvents:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        payouts: Payouts,
        fundings: CampaignFundings,
        onboarding: StripeOnboarding,
        webhook_secret: str,
        clock: Callable[[], datetime.datetime],
    ) -> None:
        self._engine = engine
        self._payouts = payouts
        self._fundings = fundings
        self._onboarding = onboarding
        self._webhook_secret = webhook_secret
        self._clock = clock

    async def receive(self, body: bytes, signature: str) -> HandledEvent:
        """One delivery of a webhook: its signature checked (verified_event), then the event applied."""
        event = verified_event(body, signature, self._webhook_secret)
        event_id, event_type = str(event.get("id", "")), str(event.get("type", ""))
        return HandledEvent(event_id, event_type, await self._handle(event_id, event_type, event))

    async def _handle(self, event_id: str, event_type: str, event: dict[str, Any]) -> pb.WebhookOutcome:
        """`event` is verified and has an id and a data.object; its outcome (DUPLICATE when it was applied, or is
        being applied, by another delivery)."""
        async with self._engine.begin() as conn:
            fresh = await store.record_stripe_event(conn, event_id, event_type)
        if not fresh and not await self._take_over_unapplied(event_id):
            return pb.WEBHOOK_OUTCOME_DUPLICATE
        try:
            outcome = await self._apply(event_type, event["data"]["object"], event)
        except _NeedsAttention as problem:
            # Signed by Stripe and not applicable as it is: acknowledged (Stripe would retry a refusal for days,
            # to no avail) and recorded for an admin.
            log.error("Stripe event needs a person", extra={"event_id": event_id, "problem": str(problem)})
            async with self._engine.begin() as conn:
                await store.record_issue(conn, event_id, event_type, problem.object_id, str(problem))
            outcome = pb.WEBHOOK_OUTCOME_NEEDS_ATTENTION
        except Exception as exc:
            # Forget the event so Stripe's retry is processed instead of being taken for a duplicate. Something
            # transient (the database, a lock): UNAVAILABLE, on purpose, so that Stripe retries.
            async with self._engine.begin() as conn:
                await store.forget_stripe_event(conn, event_id)
            log.exception("Stripe event not applied; Stripe will retry", extra={"event_id": event_id})
            raise Unavailable(Reason.STRIPE_EVENT_RETRY, "the event could not be applied now; retry") from exc
        async with self._engine.begin() as conn:
            await store.settle_stripe_event(conn, event_id, pb.WebhookOutcome.Name(outcome))
        return outcome

    async def payment_issues(self, limit: int) -> list[PaymentIssue]:
        """The newest first."""
        rows = await store.payment_issues_page(self._engine, limit)
        return [PaymentIssue(row.event_id, row.event_type, row.object_id, row.problem, row.created_at) for row in rows]

    async def _take_over_unapplied(self, event_id: str) -> bool:
        """An event recorded as received and never settled (the process applying it died) is applied again by
        Stripe's retry; applying is idempotent. One still being applied (received within STRIPE_EVENT_LEASE) is
        left to its delivery."""
        async with self._engine.begin() as conn:
            return await store.take_over_stripe_event(conn, event_id, STRIPE_EVENT_LEASE)

    async def _apply(self, event_type: str, obj: dict[str, Any], event: dict[str, Any]) -> pb.WebhookOutcome:
        """transfer.created → paid (the money reached the driver's Express balance); transfer.reversed →
        failed (it came back: the reservation is voided, once). payout.* are the driver's bank payouts
        from their own Stripe balance and settle nothing here. A transition outside the table is ignored.
        A paid campaign funding checkout funds the campaign (funding.py)."""
        if event_type in domain.FUNDING_EVENTS:
            return await self._fund_campaign(obj, event)
        if event_type == "account.updated":
            capabilities = _object(obj.get("capabilities"))
            await self._onboarding.record_status(
                str(obj.get("id", "")),
                details_submitted=bool(obj.get("details_submitted")),
                payouts_enabled=bool(obj.get("payouts_enabled")),
                charges_enabled=bool(obj.get("charges_enabled")),
                transfers_active=capabilities.get("transfers") == "active",
            )
            return pb.WEBHOOK_OUTCOME_PROCESSED
        if event_type not in ("transfer.created", "transfer.reversed"):
            return pb.WEBHOOK_OUTCOME_IGNORED
        payout_id = str(_object(obj.get("metadata")).get("payout_id", ""))
        try:
            parsed = uuid.UUID(payout_id)
        except ValueError:
            return pb.WEBHOOK_OUTCOME_IGNORED  # a transfer this ledger did not make
        if await self._payouts.find(parsed) is None:
            raise _NeedsAttention(
                f"{event_type} for payout {parsed}, which this ledger does not know", str(obj.get("id"))
            )
        if event_type == "transfer.created":
            before = await self._payouts.mark_processing(parsed, str(obj.get("id", "")))
            after = await self._payouts.mark_paid(before.id)
        else:
            before = await self._payouts.get(parsed)
            after = await self._payouts.fail(parsed, "transfer reversed by Stripe")
        return pb.WEBHOOK_OUTCOME_PROCESSED if after.status != before.status else pb.WEBHOOK_OUTCOME_IGNORED

    async def _fund_campaign(self, session: dict[str, Any], event: dict[str, Any]) -> pb.WebhookOutcome:
        """PROCESSED when the payment was booked now; DUPLICATE when this Checkout session was booked before
        (under another event id: Stripe resent it, or sent completed and then async_payment_succeeded);
        IGNORED when it is no paid campaign funding checkout, or one that cannot be booked as it is."""
        try:
            funding = domain.campaign_funding(session)
        except domain.FundingNotBookable as exc:
            # The sponsor paid and nothing can be booked: a person has to look (Stripe has the payment).
            raise _NeedsAttention(f"paid campaign checkout not bookable: {exc}", str(session.get("id", ""))) from exc
        if funding is None:
            return pb.WEBHOOK_OUTCOME_IGNORED
        created = event.get("created")
        paid_at = (
            datetime.datetime.fromtimestamp(created, datetime.UTC)
            if isinstance(created, int) and not isinstance(created, bool)
            else self._clock()
        )
        try:
            booked = await self._fundings.book(funding, paid_at)
        except FundingNotBooked as exc:
            # E.g. the same checkout session with another amount than the one booked under its id.
            raise _NeedsAttention(str(exc), funding.checkout_session_id) from exc
        return pb.WEBHOOK_OUTCOME_PROCESSED if booked else pb.WEBHOOK_OUTCOME_DUPLICATE
