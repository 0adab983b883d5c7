"""Building blocks for incentives tests: people with roles, campaigns, funding, ended sessions."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import grpc
import sqlalchemy as sa
from google.protobuf import timestamp_pb2
from nerava.incentives.v1 import incentives_pb2 as pb
from nerava.incentives.v1 import incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ledger import store as ledger_store
from tests.support.people import Person
from tests.support.rpc import as_service

UTC = datetime.UTC
AUSTIN = (30.2672, -97.7431)


def stamp(moment: datetime.datetime) -> timestamp_pb2.Timestamp:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(moment)
    return value


def campaign_request(**overrides: Any) -> pb.CreateCampaignRequest:
    """A valid campaign: $1 cash per session, $100 gross (80 net at the 20 % fee), started an hour ago."""
    fields: dict[str, Any] = {
        "sponsor_name": "Test Sponsor",
        "name": "Test campaign",
        "reward_kind": pb.REWARD_KIND_CASH,
        "cost_per_session_cents": 100,
        "budget_cents": 10_000,
        "start_date": (datetime.datetime.now(UTC) - datetime.timedelta(hours=1)).isoformat(),
        "time_zone": "America/Chicago",
    }
    fields.update(overrides)
    return pb.CreateCampaignRequest(**fields)


def ended_session(driver_id: str, **overrides: Any) -> pb.EndedSession:
    """A 30-minute session at an Austin charger that ended a minute ago."""
    end = overrides.pop("end", datetime.datetime.now(UTC) - datetime.timedelta(minutes=1))
    minutes = overrides.pop("minutes", 30)
    start = overrides.pop("start", end - datetime.timedelta(minutes=minutes))
    fields: dict[str, Any] = {
        "session_id": str(uuid.uuid4()),
        "end_sequence": 1,
        "driver_id": driver_id,
        "charger_id": "charger-austin-1",
        "charger_network": "Tesla",
        "zone_id": "austin-downtown",
        "lat": AUSTIN[0],
        "lng": AUSTIN[1],
        "session_start": stamp(start),
        "session_end": stamp(end),
        "duration_minutes": int((end - start).total_seconds() // 60),
        "kwh_delivered": 20.0,
        "max_power_kw": 150.0,
        "connector_type": "NACS",
        "quality_score": 80,
        "driver_completed_sessions": 3,
    }
    fields.update(overrides)
    return pb.EndedSession(**fields)


class Incentives:
    """The IncentivesService as the apps and the other services call it."""

    def __init__(
        self, stub: incentives_pb2_grpc.IncentivesServiceAsyncStub, ledger: ledger_pb2_grpc.LedgerServiceAsyncStub
    ) -> None:
        self.stub = stub
        self.ledger = ledger
        # The mesh and its database are shared by every test: each test's campaigns pay only at its own
        # charger (unless the test says otherwise), so that no test's campaign pays another test's session.
        self.charger = f"charger-{uuid.uuid4().hex[:12]}"

    async def create(self, sponsor: Person, **overrides: Any) -> pb.Campaign:
        overrides.setdefault("rules", pb.CampaignRules(charger_ids=[self.charger]))
        reply = await self.stub.CreateCampaign(campaign_request(**overrides), metadata=sponsor.auth)
        return reply.campaign

    def session(self, driver_id: str, **overrides: Any) -> pb.EndedSession:
        overrides.setdefault("charger_id", self.charger)
        return ended_session(driver_id, **overrides)

    async def fund(self, campaign: pb.Campaign) -> pb.Campaign:
        """What the ledger does for a paid checkout: the net budget into the campaign's budget account, then
        RecordCampaignFunding (which activates a draft)."""
        currency = (
            ledger_pb2.CURRENCY_CASH_CENTS
            if campaign.reward_kind == pb.REWARD_KIND_CASH
            else ledger_pb2.CURRENCY_NOVA_POINTS
        )
        checkout = f"cs_test_{uuid.uuid4().hex}"
        await self.ledger.PostTransfer(
            ledger_pb2.PostTransferRequest(
                idempotency_key=f"funding:{checkout}",
                kind=ledger_pb2.TRANSFER_KIND_CAMPAIGN_FUNDING,
                currency=currency,
                amount=campaign.budget_cents,
                from_account=ledger_pb2.AccountRef(
                    type=ledger_pb2.ACCOUNT_TYPE_EXTERNAL_FUNDING, owner_id="stripe", currency=currency
                ),
                to_account=ledger_pb2.AccountRef(
                    type=ledger_pb2.ACCOUNT_TYPE_CAMPAIGN_BUDGET, owner_id=campaign.id, currency=currency
                ),
            ),
            metadata=as_service("ledger"),
        )
        reply = await self.stub.RecordCampaignFunding(
            pb.RecordCampaignFundingRequest(
                campaign_id=campaign.id,
                checkout_session_id=checkout,
                gross_cents=campaign.gross_funding_cents,
                platform_fee_cents=campaign.platform_fee_cents,
                net_budget_cents=campaign.budget_cents,
                paid_at=stamp(datetime.datetime.now(UTC)),
            ),
            metadata=as_service("ledger"),
        )
        return reply.campaign

    async def active(self, sponsor: Person, **overrides: Any) -> pb.Campaign:
        """A funded, active campaign, visible to evaluations."""
        return await self.fund(await self.create(sponsor, **overrides))

    async def evaluate(self, session: pb.EndedSession) -> pb.EvaluateSessionResponse:
        return await self.stub.EvaluateSession(
            pb.EvaluateSessionRequest(session=session), metadata=as_service("sessions")
        )

    async def campaign(self, campaign_id: str, who: Person) -> pb.Campaign:
        return (await self.stub.GetCampaign(pb.GetCampaignRequest(campaign_id=campaign_id), metadata=who.auth)).campaign

    async def ledger_balance(self, account: ledger_pb2.AccountRef) -> int:
        try:
            reply = await self.ledger.GetAccount(
                ledger_pb2.GetAccountRequest(account=account), metadata=as_service("incentives")
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return 0  # never touched by a transfer
            raise
        return reply.account.balance


def driver_cash(driver_id: str) -> ledger_pb2.AccountRef:
    return ledger_pb2.AccountRef(
        type=ledger_pb2.ACCOUNT_TYPE_DRIVER_CASH, owner_id=driver_id, currency=ledger_pb2.CURRENCY_CASH_CENTS
    )


def driver_nova(driver_id: str) -> ledger_pb2.AccountRef:
    return ledger_pb2.AccountRef(
        type=ledger_pb2.ACCOUNT_TYPE_DRIVER_NOVA, owner_id=driver_id, currency=ledger_pb2.CURRENCY_NOVA_POINTS
    )


def budget_account(campaign: pb.Campaign) -> ledger_pb2.AccountRef:
    currency = (
        ledger_pb2.CURRENCY_CASH_CENTS
        if campaign.reward_kind == pb.REWARD_KIND_CASH
        else ledger_pb2.CURRENCY_NOVA_POINTS
    )
    return ledger_pb2.AccountRef(type=ledger_pb2.ACCOUNT_TYPE_CAMPAIGN_BUDGET, owner_id=campaign.id, currency=currency)


async def funding_answered(ledger_engine: AsyncEngine, checkout_session_id: str) -> bool:
    """Incentives answered the ledger's RecordCampaignFunding for this paid checkout — which it does once its
    campaign index holds the campaign. The campaign reads ACTIVE a moment before (the commit comes before the
    index refresh), and a session evaluated in that moment finds no campaign: a test that evaluates right after
    a Stripe funding waits for this, not for ACTIVE."""
    o = ledger_store.outbox
    async with ledger_engine.connect() as conn:
        delivered = await conn.execute(
            sa.select(o.c.delivered_at).where(o.c.topic == "campaign.funded", o.c.key == checkout_session_id)
        )
        return delivered.scalar_one_or_none() is not None
