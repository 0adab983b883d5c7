"""Every validly signed Stripe event answers 2xx or a deliberate 4xx through the gateway, never 500: Stripe retries
anything else for days. Events the ledger cannot apply are acknowledged and listed for an admin."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from nerava.incentives.v1 import incentives_pb2 as pb
from nerava.incentives.v1 import incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2_grpc

from fakes.stripe import FakeStripe
from services.incentives.adapters.stripe_checkout import funding_metadata
from tests.incentives.helpers import Incentives
from tests.support.mesh import Mesh
from tests.support.people import NewPerson, Person

WEBHOOK = "/v1/wallet/stripe/webhook"


def _transfer(payout_id: str) -> dict[str, Any]:
    return {
        "id": f"tr_{uuid.uuid4().hex[:20]}",
        "object": "transfer",
        "amount": 2_500,
        "currency": "usd",
        "destination": "acct_unknown",
        "metadata": {"payout_id": payout_id},
        "transfer_group": payout_id,
    }


def _checkout(campaign_id: str, amount: int, *, paid: bool = True, intent: str | None = None) -> dict[str, Any]:
    return {
        "id": f"cs_test_{uuid.uuid4().hex}",
        "object": "checkout.session",
        "amount_total": amount,
        "currency": "usd",
        "metadata": funding_metadata(campaign_id, 2000, "CURRENCY_CASH_CENTS"),
        "mode": "payment",
        "payment_intent": intent or f"pi_{uuid.uuid4().hex[:24]}",
        "payment_status": "paid" if paid else "unpaid",
        "status": "complete",
    }


VARIANTS: list[tuple[str, str, Callable[[], dict[str, Any]]]] = [
    ("transfer for an unknown payout", "transfer.created", lambda: _transfer(str(uuid.uuid4()))),
    ("reversal for an unknown payout", "transfer.reversed", lambda: _transfer(str(uuid.uuid4()))),
    ("transfer that is not ours", "transfer.created", lambda: _transfer("not-a-payout")),
    ("checkout for an unknown campaign", "checkout.session.completed", lambda: _checkout(str(uuid.uuid4()), 5_000)),
    ("unpaid checkout", "checkout.session.completed", lambda: _checkout(str(uuid.uuid4()), 5_000, paid=False)),
    ("checkout for a campaign id that is not one", "checkout.session.completed", lambda: _checkout("nope", 5_000)),
    ("expired checkout", "checkout.session.expired", lambda: _checkout(str(uuid.uuid4()), 5_000, paid=False)),
    ("unknown account", "account.updated", lambda: {"id": "acct_nobody", "object": "account"}),
    ("a type we do not handle", "charge.refunded", lambda: {"id": "ch_1", "object": "charge"}),
    ("a payout on a connected account", "payout.paid", lambda: {"id": "po_1", "object": "payout"}),
    # Signed, and malformed where we read it: never a server error (Stripe would retry it for days).
    ("transfer whose metadata is a list", "transfer.created", lambda: {**_transfer("x"), "metadata": ["payout_id"]}),
    (
        "account whose capabilities are text",
        "account.updated",
        lambda: {"id": "acct_nobody", "object": "account", "capabilities": "active"},
    ),
    ("account whose id is a number", "account.updated", lambda: {"id": 42, "object": "account"}),
    (
        "checkout whose amount is text",
        "checkout.session.completed",
        lambda: {**_checkout(str(uuid.uuid4()), 5_000), "amount_total": "5000"},
    ),
    (
        "checkout whose metadata is text",
        "checkout.session.completed",
        lambda: {**_checkout(str(uuid.uuid4()), 5_000), "metadata": "campaign"},
    ),
    (
        "checkout whose PaymentIntent is an object",
        "checkout.session.completed",
        lambda: {**_checkout(str(uuid.uuid4()), 5_000), "payment_intent": {"id": "pi_1"}},
    ),
]


async def _post(
    rest: httpx.AsyncClient, stripe_fake: FakeStripe, event_type: str, obj: dict[str, Any]
) -> httpx.Response:
    payload, signature = stripe_fake.signed_event(event_type, obj)
    return await rest.post(
        WEBHOOK, content=payload, headers={"Content-Type": "application/json", "Stripe-Signature": signature}
    )


@pytest.mark.parametrize(("name", "event_type", "build"), VARIANTS, ids=[v[0] for v in VARIANTS])
async def test_every_signed_variant_answers_without_a_server_error(
    rest: httpx.AsyncClient,
    stripe_fake: FakeStripe,
    name: str,
    event_type: str,
    build: Callable[[], dict[str, Any]],
) -> None:
    obj = build()
    first = await _post(rest, stripe_fake, event_type, obj)
    assert first.status_code == 200, (name, first.text)
    again = await _post(rest, stripe_fake, event_type, obj)  # another event id for the same object
    assert again.status_code == 200, (name, again.text)


async def test_a_transfer_for_an_unknown_payout_is_listed_for_an_admin(
    rest: httpx.AsyncClient, stripe_fake: FakeStripe, admin: Person, driver: Person
) -> None:
    obj = _transfer(str(uuid.uuid4()))
    reply = await _post(rest, stripe_fake, "transfer.created", obj)
    assert reply.json()["outcome"] == "WEBHOOK_OUTCOME_NEEDS_ATTENTION"
    listed = await rest.get("/v1/admin/payments/issues", headers=admin.headers)
    assert listed.status_code == 200
    issues = listed.json()["issues"]
    assert any(i["event_id"] == reply.json()["event_id"] and i["object_id"] == obj["id"] for i in issues)
    assert (await rest.get("/v1/admin/payments/issues", headers=driver.headers)).status_code == 403


async def test_a_booked_checkout_sent_again_with_another_amount_needs_a_person(
    rest: httpx.AsyncClient, stripe_fake: FakeStripe, mesh: Mesh, person: NewPerson, admin: Person
) -> None:
    incentives = Incentives(
        incentives_pb2_grpc.IncentivesServiceStub(mesh.channels["incentives"]),
        ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"]),
    )
    sponsor = await person("sponsor")
    draft = await incentives.create(sponsor, budget_cents=10_000)
    opened = await incentives.stub.FundCampaign(pb.FundCampaignRequest(campaign_id=draft.id), metadata=sponsor.auth)
    completed = stripe_fake.complete_checkout_session(opened.session_id)
    booked = await _post(rest, stripe_fake, "checkout.session.completed", completed)
    assert booked.json()["outcome"] == "WEBHOOK_OUTCOME_PROCESSED"

    forged = {**completed, "amount_total": 12_345}
    reply = await _post(rest, stripe_fake, "checkout.session.completed", forged)
    assert reply.status_code == 200, reply.text
    assert reply.json()["outcome"] == "WEBHOOK_OUTCOME_NEEDS_ATTENTION"
    issues = (await rest.get("/v1/admin/payments/issues", headers=admin.headers)).json()["issues"]
    assert any(i["object_id"] == opened.session_id for i in issues)


async def test_an_unsigned_event_is_a_deliberate_400(rest: httpx.AsyncClient, stripe_fake: FakeStripe) -> None:
    payload, _ = stripe_fake.signed_event("transfer.created", _transfer(str(uuid.uuid4())))
    reply = await rest.post(WEBHOOK, content=payload, headers={"Content-Type": "application/json"})
    assert reply.status_code == 400
