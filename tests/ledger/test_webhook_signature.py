"""The webhooks core checks Stripe's signature itself (no gRPC): a refusal names its registered reason, a good
signature gives the event, and a refused delivery touches nothing."""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any, cast

import pytest
from nerava.ledger.v1 import ledger_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from fakes.stripe import FakeStripe
from services.common.errors import InvalidArgument
from services.ledger.reasons import Reason
from services.ledger.webhooks import StripeEvents, verified_event

STRIPE = FakeStripe()


def _events(engine: AsyncEngine | None = None) -> StripeEvents:
    """A core whose collaborators must not be reached (and, without `engine`, no database either)."""
    untouched = cast(Any, object())
    return StripeEvents(
        engine or untouched,
        payouts=untouched,
        fundings=untouched,
        onboarding=untouched,
        webhook_secret=STRIPE.webhook_secret,
        clock=lambda: datetime.datetime.now(datetime.UTC),
    )


def _payout_paid() -> tuple[bytes, str]:
    # payout.* are the driver's own bank payouts: signed, recorded, ignored.
    return STRIPE.signed_event("payout.paid", {"id": f"po_{uuid.uuid4().hex}", "object": "payout"})


def test_a_good_signature_gives_the_event() -> None:
    body, signature = _payout_paid()
    event = verified_event(body, signature, STRIPE.webhook_secret)
    assert event["type"] == "payout.paid"
    assert event["data"]["object"]["object"] == "payout"


@pytest.mark.parametrize(
    "signature",
    ["", "t=1,v1=00", "not a header"],
    ids=["missing", "wrong", "malformed"],
)
def test_a_bad_signature_is_refused_with_its_reason(signature: str) -> None:
    body, _ = _payout_paid()
    with pytest.raises(InvalidArgument) as refused:
        verified_event(body, signature, STRIPE.webhook_secret)
    assert refused.value.reason == Reason.STRIPE_SIGNATURE_INVALID


def test_a_signature_for_another_body_is_refused() -> None:
    body, signature = _payout_paid()
    other, _ = _payout_paid()
    with pytest.raises(InvalidArgument) as refused:
        verified_event(other, signature, STRIPE.webhook_secret)
    assert refused.value.reason == Reason.STRIPE_SIGNATURE_INVALID
    assert verified_event(body, signature, STRIPE.webhook_secret)["type"] == "payout.paid"


def test_a_signed_event_without_its_object_is_refused_as_a_payload() -> None:
    body = json.dumps({"id": "evt_1", "object": "event", "type": "payout.paid", "data": {}}).encode()
    with pytest.raises(InvalidArgument) as refused:
        verified_event(body, STRIPE.sign(body), STRIPE.webhook_secret)
    assert refused.value.reason == Reason.WEBHOOK_PAYLOAD_INVALID


async def test_a_refused_delivery_touches_nothing() -> None:
    body, _ = _payout_paid()
    with pytest.raises(InvalidArgument) as refused:
        await _events().receive(body, "t=1,v1=00")
    assert refused.value.reason == Reason.STRIPE_SIGNATURE_INVALID


async def test_a_signed_delivery_is_handled_once(ledger_engine: AsyncEngine) -> None:
    body, signature = _payout_paid()
    event_id = json.loads(body)["id"]
    events = _events(ledger_engine)
    first = await events.receive(body, signature)
    assert (first.event_id, first.event_type, first.outcome) == (event_id, "payout.paid", pb.WEBHOOK_OUTCOME_IGNORED)
    again = await events.receive(body, signature)
    assert again.outcome == pb.WEBHOOK_OUTCOME_DUPLICATE
