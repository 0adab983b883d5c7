"""The IncentivesService servicer: sponsors' campaigns (lifecycle, funding, reports, dry runs), the evaluation
of ended charging sessions (granting.py), drivers' "earn here" list and reputation.

Each handler reads the request into plain values, calls one core (campaigns.py, granting.py, funding.py) and builds
the answer; the translation both ways is messages.py's. The ACCESS table says who may call each RPC; ownership of a
campaign needs its row, so the cores check it (the caller is handed to them as a funding.Actor): a campaign the
caller may not see answers CAMPAIGN_NOT_FOUND.
"""

from __future__ import annotations

import datetime
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from nerava.incentives.v1 import incentives_pb2 as pb
from nerava.incentives.v1 import incentives_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import audit
from services.common.context import Caller, current_caller
from services.common.interceptors import BY_AN_ADMIN, OWN_DATA, Access, Owned
from services.common.outbox import DEAD_LETTER_ACCESS, dead_letter_message, dead_letters, replay_dead_letters
from services.common.paging import MAX_OFFSET, page_position, page_token
from services.common.timestamps import timestamp
from services.incentives import domain, funding, messages, store
from services.incentives.adapters.stripe_checkout import StripeCheckout
from services.incentives.campaigns import (
    Campaigns,
    parse_uuid,
    utc_now,
)
from services.incentives.config import IncentivesSettings
from services.incentives.granting import Granting, reputation, session_grants
from services.incentives.index import CampaignIndex
from services.incentives.peers import CampaignBudgets

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["IncentivesService"].full_name
DRIVER, SPONSOR, ADMIN, ADMIN_READONLY = "driver", "sponsor", "admin", "admin_readonly"

# A sponsor's campaign: another sponsor's is CAMPAIGN_NOT_FOUND (admins reach every one, see _owned).
CAMPAIGN = Owned("campaign", "campaign_id", frozenset({SPONSOR}), "CAMPAIGN_NOT_FOUND")
_SPONSORS_AND_READERS = Access.role(SPONSOR, ADMIN, ADMIN_READONLY)
_SPONSORS = Access.role(SPONSOR, ADMIN)

ACCESS: dict[str, Access] = {
    "ListAuditEntries": Access.service_only(),
    **DEAD_LETTER_ACCESS,
    # A sponsor lists their own campaigns; an admin all.
    "ListCampaigns": _SPONSORS_AND_READERS.not_owned(OWN_DATA),
    "GetCampaign": _SPONSORS_AND_READERS.owned(CAMPAIGN),
    "ListGrants": _SPONSORS_AND_READERS.owned(CAMPAIGN),
    "GetBudget": _SPONSORS_AND_READERS.owned(CAMPAIGN),
    "SimulateCampaign": _SPONSORS_AND_READERS.owned(CAMPAIGN),
    "CreateCampaign": _SPONSORS.not_owned("creates a campaign of the caller's own"),
    "UpdateCampaign": _SPONSORS.owned(CAMPAIGN),
    "EditCampaign": _SPONSORS.owned(CAMPAIGN),
    "ActivateCampaign": _SPONSORS.owned(CAMPAIGN),
    "PauseCampaign": _SPONSORS.owned(CAMPAIGN),
    "ResumeCampaign": _SPONSORS.owned(CAMPAIGN),
    # The owner pays; an admin may fund from the platform instead.
    "FundCampaign": Access.role(SPONSOR).owned(CAMPAIGN),
    "FundCampaignFromPlatform": Access.role(ADMIN).not_owned(BY_AN_ADMIN),
    "CancelCampaign": _SPONSORS.owned(CAMPAIGN),
    "ListDriverCampaigns": Access.role(DRIVER).not_owned(OWN_DATA),
    "GetReputation": Access.role(DRIVER).not_owned(OWN_DATA),
    "ClawbackGrant": Access.role(ADMIN).not_owned(BY_AN_ADMIN),
    "RecordCampaignFunding": Access.service_only(),
    "BatchGetSessionGrants": Access.service_only(),
    "ListChargerRewards": Access.service_only(),
    "EvaluateSession": Access.service_only(),
}

DEFAULT_PAGE = 50
DEFAULT_DRIVER_PAGE = 20
DEFAULT_STREAK_ZONE = "America/Chicago"


def _dt(stamp: timestamp_pb2.Timestamp) -> datetime.datetime:
    return stamp.ToDatetime(tzinfo=datetime.UTC)


def _offset(token: str, offset: int) -> int:
    """Where a page starts: after the token's position, else the console's offset."""
    position = page_position(token, maximum=MAX_OFFSET)
    return offset if position is None else position


def _is_admin(caller: Caller, *, write: bool) -> bool:
    return ADMIN in caller.roles or (not write and ADMIN_READONLY in caller.roles)


def _actor(*, write: bool = True) -> funding.Actor:
    """The caller as the cores see them: an admin acts on every campaign (a read-only admin reads them all)."""
    caller = current_caller()
    return funding.Actor(caller.user_id or "", _is_admin(caller, write=write))


class IncentivesApi(incentives_pb2_grpc.IncentivesServiceServicer):
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        settings: IncentivesSettings,
        index: CampaignIndex,
        granting: Granting,
        campaigns: Campaigns,
        stripe: StripeCheckout,
        budgets: CampaignBudgets,
    ) -> None:
        self._budgets = budgets
        self._engine = engine
        self._settings = settings
        self._index = index
        self._granting = granting
        self._stripe = stripe
        self._campaigns = campaigns

    # --- campaigns -----------------------------------------------------------------------------------------

    async def CreateCampaign(
        self, request: pb.CreateCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CreateCampaignResponse:
        caller = current_caller()
        assert caller.user_id is not None
        row = await self._campaigns.create(messages.campaign_draft(request), caller.user_id)
        return pb.CreateCampaignResponse(campaign=messages.campaign_message(row))

    async def GetCampaign(
        self, request: pb.GetCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetCampaignResponse:
        row = await self._campaigns.get(request.campaign_id, _actor(write=False))
        return pb.GetCampaignResponse(campaign=messages.campaign_message(row))

    async def ListCampaigns(
        self, request: pb.ListCampaignsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListCampaignsResponse:
        size = request.page_size or request.limit or DEFAULT_PAGE
        offset = _offset(request.page_token, request.offset)
        page = await self._campaigns.list_page(
            _actor(write=False),
            status=messages.status_filter(request.status),
            sponsor_name=request.sponsor_name,
            offset=offset,
            size=size,
        )
        return pb.ListCampaignsResponse(
            campaigns=[messages.campaign_message(row) for row in page.campaigns],
            count=len(page.campaigns),
            next_page_token=page_token(offset + size) if page.more else "",
        )

    async def UpdateCampaign(
        self, request: pb.UpdateCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.UpdateCampaignResponse:
        row = await self._campaigns.edit(request.campaign_id, messages.campaign_edit(request), _actor())
        return pb.UpdateCampaignResponse(campaign=messages.campaign_message(row))

    async def EditCampaign(
        self, request: pb.EditCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EditCampaignResponse:
        edit = messages.campaign_edit(messages.console_update(request.campaign_id, request.http_body.data))
        row = await self._campaigns.edit(request.campaign_id, edit, _actor())
        return pb.EditCampaignResponse(campaign=messages.campaign_message(row))

    async def ActivateCampaign(
        self, request: pb.ActivateCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ActivateCampaignResponse:
        row = await self._campaigns.activate(request.campaign_id, _actor())
        return pb.ActivateCampaignResponse(campaign=messages.campaign_message(row))

    async def PauseCampaign(
        self, request: pb.PauseCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PauseCampaignResponse:
        row = await self._campaigns.pause(request.campaign_id, request.reason, _actor())
        return pb.PauseCampaignResponse(campaign=messages.campaign_message(row))

    async def ResumeCampaign(
        self, request: pb.ResumeCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ResumeCampaignResponse:
        row = await self._campaigns.resume(request.campaign_id, _actor())
        return pb.ResumeCampaignResponse(campaign=messages.campaign_message(row))

    # --- funding -------------------------------------------------------------------------------------------

    async def FundCampaign(
        self, request: pb.FundCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.FundCampaignResponse:
        answer = await funding.open_checkout(
            self._engine,
            self._stripe,
            campaign_id=request.campaign_id,
            actor=_actor(),
            fee_bps=self._settings.platform_fee_bps,
            console_base_url=self._settings.console_base_url,
            clock=utc_now,
        )
        row = answer.campaign
        return pb.FundCampaignResponse(
            checkout_url=answer.url,
            session_id=answer.session_id,
            status=pb.CHECKOUT_STATUS_CREATED if answer.created else pb.CHECKOUT_STATUS_ALREADY_PENDING,
            message=(
                "Complete the payment to fund the campaign."
                if answer.created
                else "A checkout is already open for this campaign."
            ),
            gross_cents=int(row["gross_funding_cents"]),
            platform_fee_cents=int(row["platform_fee_cents"]),
            net_budget_cents=int(row["budget_cents"]),
            expires_at=timestamp(answer.expires_at),
        )

    async def FundCampaignFromPlatform(
        self, request: pb.FundCampaignFromPlatformRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.FundCampaignFromPlatformResponse:
        row = await funding.fund_from_platform(
            self._engine,
            self._budgets,
            campaign_id=request.campaign_id,
            actor=_actor(),
            reason=request.reason,
            request_id=request.request_id,
            now=utc_now(),
        )
        await self._index.refresh()
        return pb.FundCampaignFromPlatformResponse(campaign=messages.campaign_message(row))

    async def CancelCampaign(
        self, request: pb.CancelCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CancelCampaignResponse:
        row, refunded = await funding.cancel(
            self._engine, self._budgets, campaign_id=request.campaign_id, actor=_actor()
        )
        await self._index.refresh()
        return pb.CancelCampaignResponse(campaign=messages.campaign_message(row), refunded_cents=refunded)

    async def RecordCampaignFunding(
        self, request: pb.RecordCampaignFundingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RecordCampaignFundingResponse:
        row, replayed = await self._campaigns.record_funding(
            request.campaign_id,
            checkout_session_id=request.checkout_session_id,
            gross_cents=request.gross_cents,
            platform_fee_cents=request.platform_fee_cents,
            net_budget_cents=request.net_budget_cents,
            paid_at=_dt(request.paid_at),
        )
        return pb.RecordCampaignFundingResponse(campaign=messages.campaign_message(row), replayed=replayed)

    # --- reports -------------------------------------------------------------------------------------------

    async def ListGrants(
        self, request: pb.ListGrantsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListGrantsResponse:
        size = request.page_size or request.limit or DEFAULT_PAGE
        offset = _offset(request.page_token, request.offset)
        page = await self._campaigns.grants(
            request.campaign_id, _actor(write=False), status=request.status, offset=offset, size=size
        )
        more = offset + len(page.grants) < page.total
        return pb.ListGrantsResponse(
            grants=[messages.grant_message(row, page.campaign_name) for row in page.grants],
            total=page.total,
            count=len(page.grants),
            next_page_token=page_token(offset + size) if more else "",
        )

    async def GetBudget(
        self, request: pb.GetBudgetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetBudgetResponse:
        return messages.budget_message(await self._campaigns.budget(request.campaign_id, _actor(write=False)))

    async def SimulateCampaign(
        self, request: pb.SimulateCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SimulateCampaignResponse:
        run = await self._campaigns.simulate(
            request.campaign_id,
            _actor(write=False),
            since=_dt(request.since) if request.HasField("since") else None,
            until=_dt(request.until) if request.HasField("until") else None,
        )
        return messages.dry_run_message(run)

    # --- drivers -------------------------------------------------------------------------------------------

    async def ListDriverCampaigns(
        self, request: pb.ListDriverCampaignsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListDriverCampaignsResponse:
        caller = current_caller()
        assert caller.user_id is not None
        size = request.page_size or DEFAULT_DRIVER_PAGE
        offset = _offset(request.page_token, 0)
        page = await self._campaigns.for_driver(
            caller.user_id,
            charger_id=request.charger_id,
            lat=request.lat if request.HasField("lat") else None,
            lng=request.lng if request.HasField("lng") else None,
            offset=offset,
            size=size,
        )
        return pb.ListDriverCampaignsResponse(
            campaigns=[messages.driver_campaign(offer) for offer in page.offers],
            next_page_token=page_token(offset + size) if page.more else "",
        )

    async def GetReputation(
        self, request: pb.GetReputationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetReputationResponse:
        caller = current_caller()
        assert caller.user_id is not None
        zone = domain.parse_time_zone(messages.zone_name(request.time_zone, DEFAULT_STREAK_ZONE))
        standing = await reputation(self._engine, caller.user_id, zone, utc_now())
        return messages.reputation_message(standing.reputation, standing.streak_days)

    # --- grants --------------------------------------------------------------------------------------------

    async def EvaluateSession(
        self, request: pb.EvaluateSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EvaluateSessionResponse:
        return messages.evaluation_message(await self._granting.evaluate(messages.ended_session(request.session)))

    async def ClawbackGrant(
        self, request: pb.ClawbackGrantRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ClawbackGrantResponse:
        caller = current_caller()
        clawback = await self._granting.claw_back(
            parse_uuid(request.grant_id, "grant_id"),
            request.reason,
            parse_uuid(request.request_id, "request_id"),
            caller.user_id or "",
        )
        return pb.ClawbackGrantResponse(
            grant=messages.grant_message(clawback.grant, clawback.campaign_name),
            campaign_remaining_cents=clawback.campaign_remaining_cents,
        )

    async def ListChargerRewards(
        self, request: pb.ListChargerRewardsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListChargerRewardsResponse:
        places = [
            domain.Place(charger_id=c.charger_id, network=c.network, zone_id=c.zone_id, lat=c.lat, lng=c.lng)
            for c in request.chargers
        ]
        rewards = [
            messages.charger_reward(place.charger_id, best)
            for place in places
            if (best := self._campaigns.charger_reward(place)) is not None
        ]
        return pb.ListChargerRewardsResponse(rewards=rewards)

    async def ListDeadLetters(self, request: pb.ListDeadLettersRequest, context: Any) -> pb.ListDeadLettersResponse:
        rows = await dead_letters(self._engine, store.outbox, request.limit or 100)
        return pb.ListDeadLettersResponse(dead_letters=[dead_letter_message(row) for row in rows])

    async def ReplayDeadLetters(
        self, request: pb.ReplayDeadLettersRequest, context: Any
    ) -> pb.ReplayDeadLettersResponse:
        replayed = await replay_dead_letters(self._engine, store.outbox, list(request.ids) or None, request.reason)
        return pb.ReplayDeadLettersResponse(replayed=replayed)

    async def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListAuditEntriesResponse:
        return pb.ListAuditEntriesResponse(entries=await audit.list_entries(self._engine, "incentives", request.query))

    async def BatchGetSessionGrants(
        self, request: pb.BatchGetSessionGrantsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.BatchGetSessionGrantsResponse:
        ids = [parse_uuid(s, "session_ids") for s in request.session_ids]
        rows = await session_grants(self._engine, ids)
        return pb.BatchGetSessionGrantsResponse(
            grants=[messages.grant_message(row, row["campaign_name"]) for row in rows]
        )
