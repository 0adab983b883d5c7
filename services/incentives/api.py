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
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import audit
from services.common.context import Caller, current_caller
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.interceptors import BY_AN_ADMIN, OWN_DATA, Access, Owned
from services.common.outbox import DEAD_LETTER_ACCESS, dead_letter_message, dead_letters, replay_dead_letters
from services.common.paging import MAX_OFFSET, page_position, page_token
from services.incentives import domain, editing, funding, store
from services.incentives.adapters.stripe_checkout import StripeCheckout
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

# Exhausted too: a campaign stopped by max_sessions with budget left can raise its cap and resume.
EDITABLE = frozenset({pb.CAMPAIGN_STATUS_DRAFT, pb.CAMPAIGN_STATUS_PAUSED, pb.CAMPAIGN_STATUS_EXHAUSTED})
# DOMAIN (another issue): a new campaign without a minimum quality score gets this one; 0 turns it off.
DEFAULT_MIN_QUALITY_SCORE = 40
DEFAULT_PRIORITY = 100
DEFAULT_PAGE = 50
DEFAULT_DRIVER_PAGE = 20
DEFAULT_STREAK_ZONE = "America/Chicago"
SIMULATION_DEFAULT = datetime.timedelta(days=30)
SIMULATION_MAX = datetime.timedelta(days=90)
SIMULATION_MAX_SESSIONS = 200_000
STREAK_LOOKBACK_DAYS = 400


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _dt(stamp: timestamp_pb2.Timestamp) -> datetime.datetime:
    return stamp.ToDatetime(tzinfo=datetime.UTC)


def _uuid(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise InvalidArgument([(field, "value must be a valid UUID")]) from exc


def _offset(token: str, offset: int) -> int:
    """Where a page starts: after the token's position, else the console's offset."""
    position = page_position(token, maximum=MAX_OFFSET)
    return offset if position is None else position


def _is_admin(caller: Caller, *, write: bool) -> bool:
    return ADMIN in caller.roles or (not write and ADMIN_READONLY in caller.roles)


def _actor() -> funding.Actor:
    caller = current_caller()
    return funding.Actor(caller.user_id or "", _is_admin(caller, write=True))


def _not_found(campaign_id: str) -> NotFound:
    return NotFound(Reason.CAMPAIGN_NOT_FOUND, "no campaign with that id", {"campaign_id": campaign_id})


def _transition(current: int, target: int) -> FailedPrecondition:
    return FailedPrecondition(
        Reason.INVALID_TRANSITION,
        f"a {pb.CampaignStatus.Name(current)} campaign cannot become {pb.CampaignStatus.Name(target)}",
        {"from": pb.CampaignStatus.Name(current), "to": pb.CampaignStatus.Name(target)},
    )


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

    # --- helpers -------------------------------------------------------------------------------------------

    def _fee(self, gross: int) -> tuple[int, int]:
        """(platform fee, net budget) of a gross funding amount; the fee is floored, never more than its share."""
        fee = gross * self._settings.platform_fee_bps // 10_000
        return fee, gross - fee

    async def _owned(
        self, conn: AsyncConnection, campaign_id: str, *, write: bool, lock: bool = False
    ) -> sa.RowMapping:
        caller = current_caller()
        query = sa.select(store.campaigns).where(store.campaigns.c.id == _uuid(campaign_id, "campaign_id"))
        if lock:
            query = query.with_for_update()
        row = (await conn.execute(query)).mappings().first()
        if row is None or (row["created_by_user_id"] != caller.user_id and not _is_admin(caller, write=write)):
            raise _not_found(campaign_id)
        return row

    async def _update_campaign(self, conn: AsyncConnection, campaign_id: uuid.UUID, **values: Any) -> pb.Campaign:
        row = (
            (
                await conn.execute(
                    sa.update(store.campaigns)
                    .where(store.campaigns.c.id == campaign_id)
                    .values(**values)
                    .returning(store.campaigns)
                )
            )
            .mappings()
            .one()
        )
        return store.campaign_message(row)

    # --- campaigns -----------------------------------------------------------------------------------------

    async def CreateCampaign(
        self, request: pb.CreateCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CreateCampaignResponse:
        caller = current_caller()
        assert caller.user_id is not None
        zone = editing.time_zone(request.time_zone)
        start = editing.moment(request.start_date, zone, "start_date")
        end = editing.moment(request.end_date, zone, "end_date", end=True) if request.end_date else None
        editing.check_dates(start, end)
        fee, net = self._fee(request.budget_cents)
        if net < request.cost_per_session_cents:
            raise InvalidArgument(
                [("budget_cents", f"after the platform fee the budget is {net}¢, less than one reward")],
                reason=Reason.BUDGET_TOO_SMALL,
            )
        request_id = uuid.UUID(request.request_id) if request.request_id else None
        values = {
            "id": uuid.uuid4(),
            "created_by_user_id": caller.user_id,
            "create_request_id": request_id,
            "sponsor_name": request.sponsor_name,
            "sponsor_email": request.sponsor_email.lower(),
            "sponsor_logo_url": request.sponsor_logo_url,
            "sponsor_type": request.sponsor_type,
            "name": request.name,
            "description": request.description,
            "campaign_type": request.campaign_type or "custom",
            "status": pb.CAMPAIGN_STATUS_DRAFT,
            "priority": request.priority if request.HasField("priority") else DEFAULT_PRIORITY,
            "reward_kind": request.reward_kind or editing.DEFAULT_REWARD_KIND,
            "cost_per_session_cents": request.cost_per_session_cents,
            "gross_funding_cents": request.budget_cents,
            "platform_fee_cents": fee,
            "budget_cents": net,
            "spent_cents": 0,
            "max_sessions": request.max_sessions if request.HasField("max_sessions") else None,
            "sessions_granted": 0,
            "start_date": start,
            "end_date": end,
            "time_zone": zone,
            "rules": store.rules_to_json(_with_default_quality(request.rules)),
            "cap_per_day": request.caps.per_day if request.caps.HasField("per_day") else None,
            "cap_per_campaign": request.caps.per_campaign if request.caps.HasField("per_campaign") else None,
            "cap_per_charger": request.caps.per_charger if request.caps.HasField("per_charger") else None,
            "funding_status": pb.FUNDING_STATUS_UNFUNDED,
            "pause_reason": "",
        }
        try:
            async with self._engine.begin() as conn:
                row = (
                    (await conn.execute(sa.insert(store.campaigns).values(**values).returning(store.campaigns)))
                    .mappings()
                    .one()
                )
        except IntegrityError:
            if request_id is None:
                raise
            # The same request_id again: the campaign the first call created.
            async with self._engine.connect() as conn:
                row = (
                    (
                        await conn.execute(
                            sa.select(store.campaigns).where(
                                store.campaigns.c.created_by_user_id == caller.user_id,
                                store.campaigns.c.create_request_id == request_id,
                            )
                        )
                    )
                    .mappings()
                    .one()
                )
        return pb.CreateCampaignResponse(campaign=store.campaign_message(row))

    async def GetCampaign(
        self, request: pb.GetCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetCampaignResponse:
        async with self._engine.connect() as conn:
            row = await self._owned(conn, request.campaign_id, write=False)
        return pb.GetCampaignResponse(campaign=store.campaign_message(row))

    async def ListCampaigns(
        self, request: pb.ListCampaignsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListCampaignsResponse:
        caller = current_caller()
        size = request.page_size or request.limit or DEFAULT_PAGE
        offset = _offset(request.page_token, request.offset)
        query = sa.select(store.campaigns)
        if not _is_admin(caller, write=False):
            query = query.where(store.campaigns.c.created_by_user_id == caller.user_id)
        if status := editing.status_filter(request.status):
            query = query.where(store.campaigns.c.status == status)
        if request.sponsor_name:
            query = query.where(sa.func.lower(store.campaigns.c.sponsor_name) == request.sponsor_name.strip().lower())
        query = (
            query.order_by(store.campaigns.c.created_at.desc(), store.campaigns.c.id.desc())
            .offset(offset)
            .limit(size + 1)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        page = [store.campaign_message(row) for row in rows[:size]]
        return pb.ListCampaignsResponse(
            campaigns=page, count=len(page), next_page_token=page_token(offset + size) if len(rows) > size else ""
        )

    async def UpdateCampaign(
        self, request: pb.UpdateCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.UpdateCampaignResponse:
        return pb.UpdateCampaignResponse(campaign=await self._edit(request))

    async def EditCampaign(
        self, request: pb.EditCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EditCampaignResponse:
        edit = editing.console_edit(request.campaign_id, request.http_body.data)
        return pb.EditCampaignResponse(campaign=await self._edit(edit))

    async def _edit(self, request: pb.UpdateCampaignRequest) -> pb.Campaign:
        mask = list(request.update_mask.paths)
        if mask:
            written = set(mask)
        else:
            written = {field.name for field, _ in request.ListFields()} & set(editing.EDITABLE_FIELDS)
        async with self._engine.begin() as conn:
            row = await self._owned(conn, request.campaign_id, write=True, lock=True)
            if row["status"] not in EDITABLE:
                raise FailedPrecondition(
                    Reason.CAMPAIGN_NOT_EDITABLE,
                    "only draft, paused or exhausted campaigns can be edited",
                    {"status": pb.CampaignStatus.Name(row["status"])},
                )
            values = self._edited_values(request, written, row)
            campaign = await self._update_campaign(conn, row["id"], **values) if values else store.campaign_message(row)
        await self._index.refresh()
        return campaign

    def _edited_values(  # noqa: PLR0912 - one branch per editable field reads best
        self, request: pb.UpdateCampaignRequest, written: set[str], row: sa.RowMapping
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        locked = row["funding_status"] != pb.FUNDING_STATUS_UNFUNDED
        for field in ("name", "description"):
            if field in written:
                values[field] = getattr(request, field)
        if "campaign_type" in written:
            values["campaign_type"] = request.campaign_type or "custom"
        if "priority" in written:
            values["priority"] = request.priority if request.HasField("priority") else DEFAULT_PRIORITY
        if "reward_kind" in written and request.reward_kind != row["reward_kind"]:
            if locked:
                # The budget account is in the reward's currency; money paid as cash cannot become points.
                raise FailedPrecondition(
                    Reason.BUDGET_LOCKED,
                    "the reward kind cannot change once a checkout was opened",
                    {"field": "reward_kind"},
                )
            values["reward_kind"] = request.reward_kind
        if "cost_per_session_cents" in written:
            values["cost_per_session_cents"] = request.cost_per_session_cents
        if "budget_cents" in written and request.budget_cents != row["gross_funding_cents"]:
            if locked:
                raise FailedPrecondition(
                    Reason.BUDGET_LOCKED,
                    "the budget cannot change once a checkout was opened",
                    {"field": "budget_cents"},
                )
            fee, net = self._fee(request.budget_cents)
            values.update(gross_funding_cents=request.budget_cents, platform_fee_cents=fee, budget_cents=net)
        if "max_sessions" in written:
            values["max_sessions"] = request.max_sessions if request.HasField("max_sessions") else None
        if "time_zone" in written:
            values["time_zone"] = editing.time_zone(request.time_zone)
        # Days are read in the zone the campaign has after this edit.
        zone = values.get("time_zone", row["time_zone"])
        if "start_date" in written:
            values["start_date"] = editing.moment(request.start_date, zone, "start_date")
        if "end_date" in written:
            values["end_date"] = (
                editing.moment(request.end_date, zone, "end_date", end=True) if request.end_date else None
            )
        if "rules" in written:
            values["rules"] = store.rules_to_json(request.rules)
        if "caps" in written:
            caps = request.caps
            values.update(
                cap_per_day=caps.per_day if caps.HasField("per_day") else None,
                cap_per_campaign=caps.per_campaign if caps.HasField("per_campaign") else None,
                cap_per_charger=caps.per_charger if caps.HasField("per_charger") else None,
            )
        merged = {**row, **values}
        editing.check_dates(merged["start_date"], merged["end_date"])
        # Only an edit of the reward or the budget can leave less than one reward (a paused campaign that spent
        # most of its budget may still be renamed).
        touched = {"cost_per_session_cents", "budget_cents"} & values.keys()
        if touched and funding.remaining(merged) < merged["cost_per_session_cents"]:
            field = "cost_per_session_cents" if "cost_per_session_cents" in touched else "budget_cents"
            raise InvalidArgument(
                [(field, "the remaining budget (after the platform fee) would be less than one reward")],
                reason=Reason.BUDGET_TOO_SMALL,
            )
        if merged["max_sessions"] is not None and merged["max_sessions"] < merged["sessions_granted"]:
            raise InvalidArgument([("max_sessions", f"{merged['sessions_granted']} sessions were already granted")])
        return values

    async def ActivateCampaign(
        self, request: pb.ActivateCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ActivateCampaignResponse:
        async with self._engine.begin() as conn:
            row = await self._owned(conn, request.campaign_id, write=True, lock=True)
            if row["status"] != pb.CAMPAIGN_STATUS_DRAFT:
                raise _transition(row["status"], pb.CAMPAIGN_STATUS_ACTIVE)
            _not_expired(row)
            # No campaign grants without money, whoever activates it: an admin funds it from the platform first.
            if row["funding_status"] != pb.FUNDING_STATUS_FUNDED:
                raise FailedPrecondition(Reason.CAMPAIGN_NOT_FUNDED, "the campaign's budget has not been funded yet")
            campaign = await self._update_campaign(conn, row["id"], status=pb.CAMPAIGN_STATUS_ACTIVE)
            await audit.record(conn, "campaign.activate", f"campaign:{row['id']}")
        await self._index.refresh()
        return pb.ActivateCampaignResponse(campaign=campaign)

    async def PauseCampaign(
        self, request: pb.PauseCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PauseCampaignResponse:
        async with self._engine.begin() as conn:
            row = await self._owned(conn, request.campaign_id, write=True, lock=True)
            if row["status"] != pb.CAMPAIGN_STATUS_ACTIVE:
                raise _transition(row["status"], pb.CAMPAIGN_STATUS_PAUSED)
            campaign = await self._update_campaign(
                conn, row["id"], status=pb.CAMPAIGN_STATUS_PAUSED, pause_reason=request.reason
            )
        await self._index.refresh()
        return pb.PauseCampaignResponse(campaign=campaign)

    async def ResumeCampaign(
        self, request: pb.ResumeCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ResumeCampaignResponse:
        async with self._engine.begin() as conn:
            row = await self._owned(conn, request.campaign_id, write=True, lock=True)
            if row["status"] not in (pb.CAMPAIGN_STATUS_PAUSED, pb.CAMPAIGN_STATUS_EXHAUSTED):
                raise _transition(row["status"], pb.CAMPAIGN_STATUS_ACTIVE)
            _not_expired(row)
            full = row["max_sessions"] is not None and row["sessions_granted"] >= row["max_sessions"]
            if funding.remaining(row) < row["cost_per_session_cents"] or full:
                raise FailedPrecondition(Reason.BUDGET_EXHAUSTED, "the remaining budget cannot pay one more reward")
            campaign = await self._update_campaign(conn, row["id"], status=pb.CAMPAIGN_STATUS_ACTIVE)
        await self._index.refresh()
        return pb.ResumeCampaignResponse(campaign=campaign)

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
        campaign_id = _uuid(request.campaign_id, "campaign_id")
        async with self._engine.begin() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(store.campaigns).where(store.campaigns.c.id == campaign_id).with_for_update()
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                raise _not_found(request.campaign_id)
            if row["funding_status"] == pb.FUNDING_STATUS_FUNDED:
                if row["checkout_session_id"] == request.checkout_session_id:
                    return pb.RecordCampaignFundingResponse(campaign=store.campaign_message(row), replayed=True)
                # The ledger refunds this payment (net and fee) on this answer.
                raise FailedPrecondition(Reason.CAMPAIGN_ALREADY_FUNDED, "the campaign was paid by another checkout")
            if row["status"] in (pb.CAMPAIGN_STATUS_CANCELED, pb.CAMPAIGN_STATUS_ENDED):
                raise FailedPrecondition(
                    Reason.CAMPAIGN_ALREADY_FUNDED, "the campaign is closed; the payment is refunded"
                )
            if request.net_budget_cents < row["spent_cents"]:
                raise FailedPrecondition(Reason.BUDGET_TOO_SMALL, "the payment is less than the campaign already spent")
            values: dict[str, Any] = {
                "funding_status": pb.FUNDING_STATUS_FUNDED,
                "checkout_session_id": request.checkout_session_id,
                "gross_funding_cents": request.gross_cents,
                "platform_fee_cents": request.platform_fee_cents,
                "budget_cents": request.net_budget_cents,
                "funded_at": _dt(request.paid_at),
            }
            expired = row["end_date"] is not None and row["end_date"] <= _now()
            if row["status"] == pb.CAMPAIGN_STATUS_DRAFT and not expired:
                values["status"] = pb.CAMPAIGN_STATUS_ACTIVE
            campaign = await self._update_campaign(conn, campaign_id, **values)
        await self._index.refresh()
        return pb.RecordCampaignFundingResponse(campaign=campaign, replayed=False)

    # --- reports -------------------------------------------------------------------------------------------

    async def ListGrants(
        self, request: pb.ListGrantsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListGrantsResponse:
        size = request.page_size or request.limit or DEFAULT_PAGE
        offset = _offset(request.page_token, request.offset)
        async with self._engine.connect() as conn:
            campaign = await self._owned(conn, request.campaign_id, write=False)
            where = [store.grants.c.campaign_id == campaign["id"]]
            if request.status:
                where.append(store.grants.c.status == request.status)
            total = (
                await conn.execute(sa.select(sa.func.count()).select_from(store.grants).where(*where))
            ).scalar_one()
            rows = (
                (
                    await conn.execute(
                        sa.select(store.grants)
                        .where(*where)
                        .order_by(store.grants.c.created_at.desc(), store.grants.c.id.desc())
                        .offset(offset)
                        .limit(size)
                    )
                )
                .mappings()
                .all()
            )
        grants = [store.grant_message(row, campaign["name"]) for row in rows]
        more = offset + len(grants) < total
        return pb.ListGrantsResponse(
            grants=grants, total=total, count=len(grants), next_page_token=page_token(offset + size) if more else ""
        )

    async def GetBudget(
        self, request: pb.GetBudgetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetBudgetResponse:
        async with self._engine.connect() as conn:
            row = await self._owned(conn, request.campaign_id, write=False)
        budget, spent, cost = int(row["budget_cents"]), int(row["spent_cents"]), row["cost_per_session_cents"]
        remaining = funding.remaining(row)  # what is left to grant: refunded budget is gone
        sessions_left = remaining // cost
        if row["max_sessions"] is not None:
            sessions_left = min(sessions_left, row["max_sessions"] - row["sessions_granted"])
        funded = row["funding_status"] == pb.FUNDING_STATUS_FUNDED
        reply = pb.GetBudgetResponse(
            budget_cents=budget,
            spent_cents=spent,
            remaining_cents=remaining,
            pct_used=domain.percent_used(spent, budget),
            sessions_granted=row["sessions_granted"],
            cost_per_session_cents=cost,
            remaining_sessions=max(0, sessions_left),
            gross_funding_cents=int(row["gross_funding_cents"]) if funded else 0,
            platform_fee_cents=int(row["platform_fee_cents"]) if funded else 0,
        )
        if row["max_sessions"] is not None:
            reply.max_sessions = row["max_sessions"]
        return reply

    async def SimulateCampaign(
        self, request: pb.SimulateCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SimulateCampaignResponse:
        until = _dt(request.until) if request.HasField("until") else _now()
        since = _dt(request.since) if request.HasField("since") else until - SIMULATION_DEFAULT
        if until - since > SIMULATION_MAX:
            raise InvalidArgument([("since", "the window may span at most 90 days")])
        async with self._engine.connect() as conn:
            row = await self._owned(conn, request.campaign_id, write=False)
            snapshots = (
                (
                    await conn.execute(
                        sa.select(store.evaluations.c.snapshot)
                        .where(store.evaluations.c.session_end >= since, store.evaluations.c.session_end < until)
                        .order_by(
                            store.evaluations.c.session_end,
                            store.evaluations.c.session_id,
                            store.evaluations.c.end_sequence,
                        )
                        .limit(SIMULATION_MAX_SESSIONS)
                    )
                )
                .scalars()
                .all()
            )
        campaign = store.campaign_message(row)
        # The campaign alone, with its whole budget and none of it spent, as if it had run in the window.
        campaign.spent_cents, campaign.remaining_cents, campaign.sessions_granted = 0, campaign.budget_cents, 0
        candidate = domain.CampaignCandidate.from_proto(campaign)
        result = domain.simulate(candidate, [pb.EndedSession.FromString(s) for s in snapshots])
        reply = pb.SimulateCampaignResponse(
            sessions_evaluated=result.sessions_evaluated,
            sessions_matched=result.sessions_matched,
            grants=result.grants,
            spend_cents=result.spend_cents,
            unique_drivers=result.unique_drivers,
            budget_exhausted_at=store.timestamp(result.budget_exhausted_at),
            failures=[pb.RuleFailureCount(failure=f, sessions=n) for f, n in result.failures],
            since=store.timestamp(since),
            until=store.timestamp(until),
        )
        return reply

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
            _uuid(request.grant_id, "grant_id"),
            request.reason,
            _uuid(request.request_id, "request_id"),
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
        ids = [_uuid(s, "session_ids") for s in request.session_ids]
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


def _with_default_quality(rules: pb.CampaignRules) -> pb.CampaignRules:
    """A new campaign's rules: the sponsor's, with a minimum quality score of 40 unless they set one (0 too)."""
    if rules.HasField("min_quality_score"):
        return rules
    with_default = pb.CampaignRules()
    with_default.CopyFrom(rules)
    with_default.min_quality_score = DEFAULT_MIN_QUALITY_SCORE
    return with_default


def _not_expired(row: sa.RowMapping) -> None:
    if row["end_date"] is not None and row["end_date"] <= _now():
        raise FailedPrecondition(Reason.CAMPAIGN_EXPIRED, "the campaign's end date has passed")


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
