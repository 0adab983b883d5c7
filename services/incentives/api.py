"""The IncentivesService servicer: sponsors' campaigns (lifecycle, funding, reports, dry runs), the evaluation
of ended charging sessions (granting.py), drivers' "earn here" list and reputation.

Ownership is checked here, on every campaign RPC: a sponsor acts only on campaigns they created, an admin on
all; a campaign the caller may not see answers CAMPAIGN_NOT_FOUND, so ids of other sponsors' campaigns are not
confirmed to exist.
"""

from __future__ import annotations

import datetime
import uuid
from collections import defaultdict
from typing import Any

import grpc
import sqlalchemy as sa
from google.protobuf import timestamp_pb2
from nerava.incentives.v1 import incentives_pb2 as pb
from nerava.incentives.v1 import incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2_grpc
from nerava.sessions.v1 import sessions_pb2, sessions_pb2_grpc
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import audit
from services.common.context import Caller, current_caller
from services.common.errors import NotFound
from services.common.interceptors import BY_AN_ADMIN, OWN_DATA, Access, Owned
from services.common.outbox import DEAD_LETTER_ACCESS, dead_letter_message, dead_letters, replay_dead_letters
from services.common.paging import MAX_OFFSET, page_position, page_token
from services.incentives import domain, editing, funding, store
from services.incentives.adapters.stripe_checkout import StripeCheckout
from services.incentives.campaigns import Campaigns, parse_uuid
from services.incentives.config import IncentivesSettings
from services.incentives.granting import Granting
from services.incentives.index import CampaignIndex
from services.incentives.reasons import Reason

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
STREAK_LOOKBACK_DAYS = 400


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


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
        stripe: StripeCheckout,
        sessions: sessions_pb2_grpc.SessionsServiceAsyncStub,
        ledger: ledger_pb2_grpc.LedgerServiceAsyncStub,
    ) -> None:
        self._ledger = ledger
        self._engine = engine
        self._settings = settings
        self._index = index
        self._granting = granting
        self._stripe = stripe
        self._sessions = sessions
        self._campaigns = Campaigns(engine, index, platform_fee_bps=settings.platform_fee_bps, clock=_now)

    # --- campaigns -----------------------------------------------------------------------------------------

    async def CreateCampaign(
        self, request: pb.CreateCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CreateCampaignResponse:
        caller = current_caller()
        assert caller.user_id is not None
        return pb.CreateCampaignResponse(campaign=await self._campaigns.create(request, caller.user_id))

    async def GetCampaign(
        self, request: pb.GetCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetCampaignResponse:
        return pb.GetCampaignResponse(campaign=await self._campaigns.get(request.campaign_id, _actor(write=False)))

    async def ListCampaigns(
        self, request: pb.ListCampaignsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListCampaignsResponse:
        size = request.page_size or request.limit or DEFAULT_PAGE
        offset = _offset(request.page_token, request.offset)
        page = await self._campaigns.list(
            _actor(write=False), status=request.status, sponsor_name=request.sponsor_name, offset=offset, size=size
        )
        return pb.ListCampaignsResponse(
            campaigns=page.campaigns,
            count=len(page.campaigns),
            next_page_token=page_token(offset + size) if page.more else "",
        )

    async def UpdateCampaign(
        self, request: pb.UpdateCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.UpdateCampaignResponse:
        return pb.UpdateCampaignResponse(campaign=await self._campaigns.edit(request, _actor()))

    async def EditCampaign(
        self, request: pb.EditCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EditCampaignResponse:
        edit = editing.console_edit(request.campaign_id, request.http_body.data)
        return pb.EditCampaignResponse(campaign=await self._campaigns.edit(edit, _actor()))

    async def ActivateCampaign(
        self, request: pb.ActivateCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ActivateCampaignResponse:
        return pb.ActivateCampaignResponse(campaign=await self._campaigns.activate(request.campaign_id, _actor()))

    async def PauseCampaign(
        self, request: pb.PauseCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PauseCampaignResponse:
        campaign = await self._campaigns.pause(request.campaign_id, request.reason, _actor())
        return pb.PauseCampaignResponse(campaign=campaign)

    async def ResumeCampaign(
        self, request: pb.ResumeCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ResumeCampaignResponse:
        return pb.ResumeCampaignResponse(campaign=await self._campaigns.resume(request.campaign_id, _actor()))

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
            clock=_now,
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
            expires_at=store.timestamp(answer.expires_at),
        )

    async def FundCampaignFromPlatform(
        self, request: pb.FundCampaignFromPlatformRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.FundCampaignFromPlatformResponse:
        row = await funding.fund_from_platform(
            self._engine,
            self._ledger,
            campaign_id=request.campaign_id,
            actor=_actor(),
            reason=request.reason,
            request_id=request.request_id,
            now=_now(),
        )
        await self._index.refresh()
        return pb.FundCampaignFromPlatformResponse(campaign=store.campaign_message(row))

    async def CancelCampaign(
        self, request: pb.CancelCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CancelCampaignResponse:
        row, refunded = await funding.cancel(
            self._engine, self._ledger, campaign_id=request.campaign_id, actor=_actor()
        )
        await self._index.refresh()
        return pb.CancelCampaignResponse(campaign=store.campaign_message(row), refunded_cents=refunded)

    async def RecordCampaignFunding(
        self, request: pb.RecordCampaignFundingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RecordCampaignFundingResponse:
        campaign, replayed = await self._campaigns.record_funding(request)
        return pb.RecordCampaignFundingResponse(campaign=campaign, replayed=replayed)

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
            grants=page.grants,
            total=page.total,
            count=len(page.grants),
            next_page_token=page_token(offset + size) if more else "",
        )

    async def GetBudget(
        self, request: pb.GetBudgetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetBudgetResponse:
        return await self._campaigns.budget(request.campaign_id, _actor(write=False))

    async def SimulateCampaign(
        self, request: pb.SimulateCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SimulateCampaignResponse:
        return await self._campaigns.simulate(
            request.campaign_id,
            _actor(write=False),
            since=_dt(request.since) if request.HasField("since") else None,
            until=_dt(request.until) if request.HasField("until") else None,
        )

    # --- drivers -------------------------------------------------------------------------------------------

    async def ListDriverCampaigns(
        self, request: pb.ListDriverCampaignsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListDriverCampaignsResponse:
        caller = current_caller()
        assert caller.user_id is not None
        email = await self._granting.driver_email(caller.user_id) if self._index.any_email_allowlist_at_all() else ""
        place = domain.Place(
            lat=request.lat if request.HasField("lat") else None, lng=request.lng if request.HasField("lng") else None
        )
        if request.charger_id:
            place = await self._charger_place(request.charger_id)
        located = place.charger_id or place.lat is not None or place.zone_id or place.network
        now = _now()
        indexed = (
            [
                self._index.get(i)
                for i in self._index.candidate_ids(
                    charger_id=place.charger_id,
                    zone_id=place.zone_id,
                    network=place.network,
                    lat=place.lat,
                    lng=place.lng,
                )
            ]
            if located
            else list(self._index.all())
        )
        live = [
            entry
            for entry in indexed
            if entry is not None
            and domain.is_live(entry.candidate, now)
            and domain.place_admits(entry.candidate.rules, place)
            and domain.allowlist_admits(entry.candidate.rules, caller.user_id, email)
        ]
        live.sort(key=lambda e: (-e.candidate.reward_cents, e.candidate.priority, e.candidate.created_at))
        size = request.page_size or DEFAULT_DRIVER_PAGE
        offset = _offset(request.page_token, 0)
        page = live[offset : offset + size]
        async with self._engine.connect() as conn:
            completed = (
                await conn.execute(
                    sa.select(sa.func.count())
                    .select_from(store.evaluations)
                    .where(store.evaluations.c.driver_id == caller.user_id)
                )
            ).scalar_one()
            usage = await _usage_today(conn, caller.user_id, [e.candidate for e in page], place.charger_id, now)
        campaigns = []
        for entry in page:
            candidate = entry.candidate
            failure = (
                domain.first_failed_driver_rule(
                    candidate.rules, driver_id=caller.user_id, driver_email=email, session_count=completed + 1
                )
                or domain.caps_allow(candidate.caps, usage.get(candidate.campaign_id, domain.DriverUsage()))
                or domain.budget_allows(candidate)
            )
            rules = entry.campaign.rules
            item = pb.DriverCampaign(
                id=candidate.campaign_id,
                name=candidate.name,
                sponsor_name=entry.campaign.sponsor_name,
                sponsor_logo_url=entry.campaign.sponsor_logo_url or None,
                description=entry.campaign.description,
                reward_cents=candidate.reward_cents,
                reward_kind=entry.campaign.reward_kind,
                campaign_type=entry.campaign.campaign_type,
                eligible=failure is None,
                end_date=entry.campaign.end_date if entry.campaign.HasField("end_date") else None,
                min_duration_minutes=rules.min_duration_minutes,
                time_start=rules.time_start,
                time_end=rules.time_end,
                time_zone=entry.campaign.time_zone,
            )
            if failure is not None:
                item.ineligible_reason = failure.rule
            campaigns.append(item)
        more = offset + size < len(live)
        return pb.ListDriverCampaignsResponse(
            campaigns=campaigns, next_page_token=page_token(offset + size) if more else ""
        )

    async def _charger_place(self, charger_id: str) -> domain.Place:
        try:
            charger = await self._sessions.GetCharger(sessions_pb2.GetChargerRequest(charger_id=charger_id))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(
                    Reason.CHARGER_NOT_FOUND, "no charger with that id", {"charger_id": charger_id}
                ) from error
            raise
        return domain.Place(
            charger_id=charger_id,
            network=charger.network_name,
            zone_id=charger.zone_id,
            lat=charger.lat,
            lng=charger.lng,
        )

    async def GetReputation(
        self, request: pb.GetReputationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetReputationResponse:
        caller = current_caller()
        assert caller.user_id is not None
        zone_name = request.time_zone or DEFAULT_STREAK_ZONE
        editing.time_zone(zone_name)
        tz = domain.parse_time_zone(zone_name)
        now = _now()
        async with self._engine.connect() as conn:
            granted = (
                await conn.execute(
                    # Only what the ledger credited: a PENDING grant may still fail, and the driver must not see
                    # reputation rise for a reward that then never comes.
                    sa.select(sa.func.coalesce(sa.func.sum(store.grants.c.amount_cents), 0)).where(
                        store.grants.c.driver_id == caller.user_id, store.grants.c.status == pb.GRANT_STATUS_GRANTED
                    )
                )
            ).scalar_one()
            base = (
                await conn.execute(
                    sa.select(sa.func.coalesce(sa.func.sum(store.evaluations.c.base_points), 0)).where(
                        store.evaluations.c.driver_id == caller.user_id
                    )
                )
            ).scalar_one()
            ends = (
                (
                    await conn.execute(
                        sa.select(store.evaluations.c.session_end).where(
                            store.evaluations.c.driver_id == caller.user_id,
                            store.evaluations.c.duration_minutes >= domain.MIN_EVALUATED_DURATION_MINUTES,
                            store.evaluations.c.session_end >= now - datetime.timedelta(days=STREAK_LOOKBACK_DAYS),
                        )
                    )
                )
                .scalars()
                .all()
            )
        days = {domain.local_day(end, tz) for end in ends}
        return domain.reputation(int(granted) + int(base)).to_proto(domain.streak_days(days, domain.local_day(now, tz)))

    # --- grants --------------------------------------------------------------------------------------------

    async def EvaluateSession(
        self, request: pb.EvaluateSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EvaluateSessionResponse:
        return await self._granting.evaluate(request.session)

    async def ClawbackGrant(
        self, request: pb.ClawbackGrantRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ClawbackGrantResponse:
        caller = current_caller()
        return await self._granting.claw_back(
            parse_uuid(request.grant_id, "grant_id"),
            request.reason,
            parse_uuid(request.request_id, "request_id"),
            caller.user_id or "",
        )

    async def ListChargerRewards(
        self, request: pb.ListChargerRewardsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListChargerRewardsResponse:
        now = _now()
        rewards = []
        for charger in request.chargers:
            place = domain.Place(
                charger_id=charger.charger_id,
                network=charger.network,
                zone_id=charger.zone_id,
                lat=charger.lat,
                lng=charger.lng,
            )
            payable = [
                entry
                for entry in (
                    self._index.get(i)
                    for i in self._index.candidate_ids(
                        charger_id=place.charger_id,
                        zone_id=place.zone_id,
                        network=place.network,
                        lat=place.lat,
                        lng=place.lng,
                    )
                )
                if entry is not None
                and domain.is_live(entry.candidate, now)
                and domain.place_admits(entry.candidate.rules, place)
                and domain.budget_allows(entry.candidate) is None
            ]
            if payable:
                # The reward a driver would see first in ListDriverCampaigns: highest, then priority.
                best = min(
                    payable, key=lambda e: (-e.candidate.reward_cents, e.candidate.priority, e.candidate.created_at)
                )
                rewards.append(
                    pb.ChargerReward(
                        charger_id=charger.charger_id,
                        reward_cents=best.candidate.reward_cents,
                        reward_kind=best.campaign.reward_kind,
                        campaign_id=best.candidate.campaign_id,
                    )
                )
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
        query = (
            # Only what the ledger credited (or a clawback reversed) is shown: a PENDING grant may still fail, and a
            # FAILED one never paid, so to sessions (and so to the driver) both are as if there were none.
            store.GRANT_WITH_CAMPAIGN_NAME.where(
                store.grants.c.session_id.in_(ids),
                store.grants.c.status.notin_([pb.GRANT_STATUS_PENDING, pb.GRANT_STATUS_FAILED]),
            )
            .order_by(store.grants.c.session_id, store.grants.c.end_sequence.desc(), store.grants.c.created_at.desc())
            .ext(distinct_on(store.grants.c.session_id))
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return pb.BatchGetSessionGrantsResponse(grants=[store.grant_message(r, r["campaign_name"]) for r in rows])


async def _usage_today(
    conn: AsyncConnection,
    driver_id: str,
    candidates: list[domain.CampaignCandidate],
    charger_id: str,
    now: datetime.datetime,
) -> dict[str, domain.DriverUsage]:
    """The driver's live grants of these campaigns, for "could I still earn it today" (a session starting now)."""
    capped = [c for c in candidates if c.caps != domain.DriverCaps()]
    if not capped:
        return {}
    rows = (
        await conn.execute(
            sa.select(store.grants.c.campaign_id, store.grants.c.campaign_local_day, store.grants.c.charger_id).where(
                store.grants.c.driver_id == driver_id,
                store.grants.c.campaign_id.in_([uuid.UUID(c.campaign_id) for c in capped]),
                store.LIVE_GRANT,
            )
        )
    ).all()
    by_campaign: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_campaign[str(row.campaign_id)].append(row)
    usage = {}
    for candidate in capped:
        today = domain.local_day(now, candidate.time_zone)
        mine = by_campaign.get(candidate.campaign_id, [])
        usage[candidate.campaign_id] = domain.DriverUsage(
            grants_on_day=sum(1 for r in mine if r.campaign_local_day == today),
            grants_in_campaign=len(mine),
            grants_at_charger=sum(1 for r in mine if charger_id and r.charger_id == charger_id),
        )
    return usage
