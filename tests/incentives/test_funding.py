"""Funding end to end: FundCampaign opens a Checkout at the (fake) Stripe, the sponsor pays, Stripe's signed
webhook reaches the ledger, the ledger books net budget + platform fee and tells incentives, the campaign
activates — and its budget account holds exactly what grants may spend."""

from __future__ import annotations

import grpc
import pytest
from google.api import httpbody_pb2
from nerava.incentives.v1 import incentives_pb2 as pb
from nerava.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from fakes.stripe import FakeStripe
from tests.incentives.helpers import Incentives, budget_account, driver_nova
from tests.support.eventually import eventually
from tests.support.mesh import Mesh
from tests.support.people import Person
from tests.support.rpc import error_reason

PLATFORM_FEES = ledger_pb2.AccountRef(
    type=ledger_pb2.ACCOUNT_TYPE_PLATFORM_FEES, owner_id="platform", currency=ledger_pb2.CURRENCY_CASH_CENTS
)


async def pay_and_send_webhook(
    stripe_fake: FakeStripe, mesh: Mesh, session_id: str
) -> ledger_pb2.HandleStripeEventResponse:
    completed = stripe_fake.complete_checkout_session(session_id)
    payload, header = stripe_fake.signed_event("checkout.session.completed", completed)
    stub = ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"])
    return await stub.HandleStripeEvent(
        ledger_pb2.HandleStripeEventRequest(
            http_body=httpbody_pb2.HttpBody(content_type="application/json", data=payload)
        ),
        metadata=(("stripe-signature", header),),
    )


async def until_active(incentives: Incentives, campaign_id: str, sponsor: Person) -> pb.Campaign:
    async def out_of_draft() -> pb.Campaign:
        campaign = await incentives.campaign(campaign_id, sponsor)
        assert campaign.status != pb.CAMPAIGN_STATUS_DRAFT
        return campaign

    return await eventually(out_of_draft)


async def test_a_paid_checkout_funds_and_activates_the_campaign_once(
    incentives: Incentives, sponsor: Person, driver: Person, stripe_fake: FakeStripe, mesh: Mesh
) -> None:
    draft = await incentives.create(sponsor, reward_kind=pb.REWARD_KIND_NOVA, budget_cents=25_000)
    assert (draft.gross_funding_cents, draft.platform_fee_cents, draft.budget_cents) == (25_000, 5_000, 20_000)
    fees_before = await incentives.ledger_balance(PLATFORM_FEES)

    opened = await incentives.stub.FundCampaign(pb.FundCampaignRequest(campaign_id=draft.id), metadata=sponsor.auth)
    assert opened.status == pb.CHECKOUT_STATUS_CREATED
    assert (opened.gross_cents, opened.platform_fee_cents, opened.net_budget_cents) == (25_000, 5_000, 20_000)
    checkout = stripe_fake.checkout_session(opened.session_id)
    assert checkout["amount_total"] == 25_000
    assert checkout["metadata"]["campaign_id"] == draft.id
    assert checkout["success_url"].endswith(f"/campaigns/{draft.id}?funded=true")
    again = await incentives.stub.FundCampaign(pb.FundCampaignRequest(campaign_id=draft.id), metadata=sponsor.auth)
    assert (again.status, again.checkout_url) == (pb.CHECKOUT_STATUS_ALREADY_PENDING, opened.checkout_url)

    webhook = await pay_and_send_webhook(stripe_fake, mesh, opened.session_id)
    assert webhook.outcome == ledger_pb2.WEBHOOK_OUTCOME_PROCESSED
    funded = await until_active(incentives, draft.id, sponsor)
    assert (funded.status, funded.funding_status) == (pb.CAMPAIGN_STATUS_ACTIVE, pb.FUNDING_STATUS_FUNDED)
    assert funded.budget_cents == 20_000
    assert await incentives.ledger_balance(budget_account(funded)) == 20_000
    assert await incentives.ledger_balance(PLATFORM_FEES) - fees_before == 5_000

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await incentives.stub.FundCampaign(pb.FundCampaignRequest(campaign_id=draft.id), metadata=sponsor.auth)
    assert error_reason(refused.value) == "CAMPAIGN_ALREADY_FUNDED"

    granted = await incentives.evaluate(incentives.session(driver.user_id))
    assert granted.outcome == pb.EVALUATION_OUTCOME_GRANTED

    async def credited() -> None:
        assert await incentives.ledger_balance(driver_nova(driver.user_id)) == 100

    await eventually(credited)
    assert await incentives.ledger_balance(budget_account(funded)) == 19_900
