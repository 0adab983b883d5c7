"""The IncentivesService servicer: sponsors' campaigns (lifecycle, funding, reports, dry runs), the evaluation
of ended charging sessions (granting.py), drivers' "earn here" list and reputation.

Each handler maps the request to one core call (campaigns.py, granting.py, funding.py) and its answer back. The
ACCESS table says who may call each RPC; ownership of a campaign needs its row, so the cores check it (the caller is
handed to them as a funding.Actor): a campaign the caller may not see answers CAMPAIGN_NOT_FOUND.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import grpc
import protovalidate
from google.protobuf import json_format, timestamp_pb2
from nerava.incentives.v1 import incentives_pb2 as pb
from nerava.incentives.v1 import incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import audit
from services.common.context import Caller, current_caller
from services.common.errors import InvalidArgument
from services.common.interceptors import BY_AN_ADMIN, OWN_DATA, Access, Owned
from services.common.interceptors import _field_path as field_path
from services.common.outbox import DEAD_LETTER_ACCESS, dead_letter_message, dead_letters, replay_dead_letters
from services.common.paging import MAX_OFFSET, page_position, page_token
from services.incentives import domain, funding, store
from services.incentives.adapters.stripe_checkout import StripeCheckout
from services.incentives.campaigns import (
    EDIT_FIELDS,
    Budget,
    CampaignDraft,
    CampaignEdit,
    Campaigns,
    DriverOffer,
    DryRun,
    not_a_campaign_date,
    parse_uuid,
    utc_now,
)
from services.incentives.config import IncentivesSettings
from services.incentives.granting import EndedSession, Granting, SessionEvaluation, reputation, session_grants
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


# The console's words for a ListCampaigns status filter (the contract also takes the enum's names).
STATUS_WORDS = {
    "draft": pb.CAMPAIGN_STATUS_DRAFT,
    "active": pb.CAMPAIGN_STATUS_ACTIVE,
    "paused": pb.CAMPAIGN_STATUS_PAUSED,
    "exhausted": pb.CAMPAIGN_STATUS_EXHAUSTED,
    # The original's word for a campaign whose end date has passed.
    "completed": pb.CAMPAIGN_STATUS_ENDED,
    "ended": pb.CAMPAIGN_STATUS_ENDED,
    "canceled": pb.CAMPAIGN_STATUS_CANCELED,
}
_validator = protovalidate.Validator()


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


# --- requests → the cores' values -------------------------------------------------------------------------------


def status_filter(word: str) -> int:
    """The CampaignStatus a ListCampaigns filter names (the contract restricts the words); 0 for none."""
    if not word:
        return pb.CAMPAIGN_STATUS_UNSPECIFIED
    return STATUS_WORDS.get(word) or pb.CampaignStatus.Value(word)


def zone_name(name: str, default: str = domain.DEFAULT_TIME_ZONE) -> str:
    """A time zone a request names (the default when it names none), checked to exist."""
    name = name or default
    try:
        domain.parse_time_zone(name)
    except domain.UnknownTimeZone as exc:
        raise InvalidArgument(
            [("time_zone", f"{name!r} is not an IANA time zone")], reason=Reason.UNKNOWN_TIME_ZONE
        ) from exc
    return name


def campaign_date(text: str, field: str) -> domain.CampaignDate:
    """A campaign's start or end as sent: a day `YYYY-MM-DD` (read in the campaign's zone by the core) or an
    RFC 3339 moment with its offset."""
    try:
        return domain.parse_campaign_date(text)
    except domain.MomentWithoutOffset as exc:
        raise InvalidArgument([(field, "an RFC 3339 moment needs its offset (e.g. Z)")]) from exc
    except ValueError as exc:  # no such day, or a year at the ends of the calendar
        raise InvalidArgument([(field, not_a_campaign_date(text))]) from exc


def targeting_rules(rules: pb.CampaignRules) -> domain.TargetingRules:
    def given(field: str) -> Any:
        return getattr(rules, field) if rules.HasField(field) else None

    return domain.TargetingRules(
        min_duration_minutes=given("min_duration_minutes"),
        max_duration_minutes=given("max_duration_minutes"),
        charger_ids=tuple(rules.charger_ids),
        charger_networks=tuple(rules.charger_networks),
        zone_ids=tuple(rules.zone_ids),
        geo_center_lat=given("geo_center_lat"),
        geo_center_lng=given("geo_center_lng"),
        geo_radius_m=given("geo_radius_m"),
        time_start=rules.time_start,
        time_end=rules.time_end,
        days_of_week=tuple(rules.days_of_week),
        min_power_kw=given("min_power_kw"),
        connector_types=tuple(rules.connector_types),
        driver_session_count_min=given("driver_session_count_min"),
        driver_session_count_max=given("driver_session_count_max"),
        driver_allowlist=tuple(rules.driver_allowlist),
        min_quality_score=given("min_quality_score"),
    )


def _caps(caps: pb.CampaignCaps) -> domain.DriverCaps:
    return domain.DriverCaps(
        caps.per_day if caps.HasField("per_day") else None,
        caps.per_campaign if caps.HasField("per_campaign") else None,
        caps.per_charger if caps.HasField("per_charger") else None,
    )


def campaign_draft(request: pb.CreateCampaignRequest) -> CampaignDraft:
    zone = zone_name(request.time_zone)
    return CampaignDraft(
        sponsor_name=request.sponsor_name,
        sponsor_email=request.sponsor_email,
        sponsor_logo_url=request.sponsor_logo_url,
        sponsor_type=request.sponsor_type,
        name=request.name,
        description=request.description,
        campaign_type=request.campaign_type,
        priority=request.priority if request.HasField("priority") else None,
        reward_kind=request.reward_kind,
        cost_per_session_cents=request.cost_per_session_cents,
        budget_cents=request.budget_cents,
        max_sessions=request.max_sessions if request.HasField("max_sessions") else None,
        start_date=campaign_date(request.start_date, "start_date"),
        end_date=campaign_date(request.end_date, "end_date") if request.end_date else None,
        time_zone=zone,
        rules=targeting_rules(request.rules),
        caps=_caps(request.caps),
        request_id=parse_uuid(request.request_id, "request_id") if request.request_id else None,
    )


def campaign_edit(request: pb.UpdateCampaignRequest) -> CampaignEdit:
    """The masked fields (without a mask: the editable fields the request sets); a masked field the request
    leaves unset is cleared."""
    if request.update_mask.paths:
        written = frozenset(request.update_mask.paths)
    else:
        written = frozenset(field.name for field, _ in request.ListFields()) & frozenset(EDIT_FIELDS)
    values: dict[str, Any] = {
        field: getattr(request, field)
        for field in ("name", "description", "campaign_type", "reward_kind", "cost_per_session_cents", "budget_cents")
        if field in written
    }
    for field in ("priority", "max_sessions"):
        if field in written:
            values[field] = getattr(request, field) if request.HasField(field) else None
    if "time_zone" in written:
        values["time_zone"] = zone_name(request.time_zone)
    if "start_date" in written:
        values["start_date"] = campaign_date(request.start_date, "start_date")
    if "end_date" in written:
        values["end_date"] = campaign_date(request.end_date, "end_date") if request.end_date else None
    if "rules" in written:
        values["rules"] = targeting_rules(request.rules)
    if "caps" in written:
        values["caps"] = _caps(request.caps)
    return CampaignEdit(written, **values)


def console_update(campaign_id: str, body: bytes) -> pb.UpdateCampaignRequest:
    """The typed edit of the console's PUT body: the keys present form the update mask, and a key sent as
    null is listed in the mask and left unset, which clears it (UpdateCampaign's mask semantics).

    Each key is parsed on its own so a bad value is refused naming its field; the result is checked against
    the contract's rules like any request.
    """
    try:
        document = json.loads(body or b"{}")
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, or nested past the parser's depth
        raise InvalidArgument([("", "the body must be a JSON object", "body.json")]) from exc
    if not isinstance(document, dict):
        raise InvalidArgument([("", "the body must be a JSON object", "body.json")])
    request = pb.UpdateCampaignRequest(campaign_id=campaign_id)
    written: list[str] = []
    for name in EDIT_FIELDS:
        if name not in document:
            continue
        written.append(name)
        value: Any = document[name]
        if value is None:
            continue
        try:
            json_format.ParseDict({name: value}, request, ignore_unknown_fields=True)
        except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
            raise InvalidArgument([(name, f"not a valid {name}: {exc}")]) from exc
    request.update_mask.paths.extend(written)
    violations = _validator.collect_violations(request)
    if violations:
        raise InvalidArgument([(field_path(v.proto.field), v.proto.message, v.proto.rule_id) for v in violations])
    return request


# --- the cores' values → answers --------------------------------------------------------------------------------


def timestamp(value: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def grant_message(row: store.Row, campaign_name: str) -> pb.Grant:
    return pb.Grant(
        id=str(row["id"]),
        session_event_id=str(row["session_id"]),
        campaign_id=str(row["campaign_id"]),
        campaign_name=campaign_name,
        driver_user_id=row["driver_id"],
        amount_cents=row["amount_cents"],
        reward_kind=row["reward_kind"],
        status=row["status"],
        granted_at=timestamp(row["granted_at"]),
        created_at=timestamp(row["created_at"]),
        charger_id=row["charger_id"],
        duration_minutes=row["duration_minutes"],
        clawed_back_at=timestamp(row["clawed_back_at"]),
        clawback_reason=row["clawback_reason"],
    )


def campaign_message(row: store.Row) -> pb.Campaign:
    budget, spent = int(row["budget_cents"]), int(row["spent_cents"])
    refunded = int(row.get("refunded_cents") or 0)
    campaign = pb.Campaign(
        id=str(row["id"]),
        created_by_user_id=row["created_by_user_id"],
        sponsor_name=row["sponsor_name"],
        sponsor_email=row["sponsor_email"],
        sponsor_logo_url=row["sponsor_logo_url"],
        sponsor_type=row["sponsor_type"],
        name=row["name"],
        description=row["description"],
        campaign_type=row["campaign_type"],
        status=row["status"],
        priority=row["priority"],
        reward_kind=row["reward_kind"],
        cost_per_session_cents=row["cost_per_session_cents"],
        budget_cents=budget,
        spent_cents=spent,
        remaining_cents=budget - spent - refunded,
        refunded_cents=refunded,
        gross_funding_cents=int(row["gross_funding_cents"]),
        platform_fee_cents=int(row["platform_fee_cents"]),
        sessions_granted=row["sessions_granted"],
        start_date=timestamp(row["start_date"]),
        end_date=timestamp(row["end_date"]),
        time_zone=row["time_zone"],
        rules=store.rules_from_json(row["rules"]),
        funding_status=row["funding_status"],
        funded_at=timestamp(row["funded_at"]),
        pause_reason=row["pause_reason"],
        created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]),
    )
    for field, column in (
        ("max_sessions", "max_sessions"),
        ("max_grants_per_driver_per_day", "cap_per_day"),
        ("max_grants_per_driver_per_campaign", "cap_per_campaign"),
        ("max_grants_per_driver_per_charger", "cap_per_charger"),
    ):
        if row[column] is not None:
            setattr(campaign, field, row[column])
    return campaign


def _budget_message(budget: Budget) -> pb.GetBudgetResponse:
    reply = pb.GetBudgetResponse(
        budget_cents=budget.budget_cents,
        spent_cents=budget.spent_cents,
        remaining_cents=budget.remaining_cents,
        pct_used=budget.pct_used,
        sessions_granted=budget.sessions_granted,
        cost_per_session_cents=budget.cost_per_session_cents,
        remaining_sessions=budget.remaining_sessions,
        gross_funding_cents=budget.gross_funding_cents,
        platform_fee_cents=budget.platform_fee_cents,
    )
    if budget.max_sessions is not None:
        reply.max_sessions = budget.max_sessions
    return reply


def _dry_run_message(run: DryRun) -> pb.SimulateCampaignResponse:
    result = run.result
    return pb.SimulateCampaignResponse(
        sessions_evaluated=result.sessions_evaluated,
        sessions_matched=result.sessions_matched,
        grants=result.grants,
        spend_cents=result.spend_cents,
        unique_drivers=result.unique_drivers,
        budget_exhausted_at=timestamp(result.budget_exhausted_at),
        failures=[pb.RuleFailureCount(failure=f, sessions=n) for f, n in result.failures],
        since=timestamp(run.since),
        until=timestamp(run.until),
    )


def evaluation_message(evaluation: SessionEvaluation) -> pb.EvaluateSessionResponse:
    reply = pb.EvaluateSessionResponse(
        outcome=evaluation.outcome,  # type: ignore[arg-type]
        reputation_points_awarded=evaluation.reputation_points_awarded,
        replayed=evaluation.replayed,
        candidates=[candidate_result(tried) for tried in evaluation.candidates],
    )
    if evaluation.grant is not None:
        reply.grant.CopyFrom(grant_message(evaluation.grant, evaluation.grant["campaign_name"]))
    return reply


def candidate_result(tried: domain.CandidateOutcome) -> pb.CandidateResult:
    return pb.CandidateResult(
        campaign_id=tried.campaign_id,
        campaign_name=tried.campaign_name,
        priority=tried.priority,
        granted=tried.granted,
        failure=tried.failure.rule if tried.failure else pb.RULE_FAILURE_UNSPECIFIED,
        detail=tried.failure.detail if tried.failure else "",
    )


def reputation_message(reputation: domain.Reputation, streak_days: int) -> pb.GetReputationResponse:
    reply = pb.GetReputationResponse(
        points=reputation.points,
        tier=reputation.tier,
        tier_color=reputation.tier_color,
        progress_to_next=reputation.progress_to_next,
        streak_days=streak_days,
    )
    if reputation.next_tier is not None:
        reply.next_tier = reputation.next_tier
    if reputation.points_to_next is not None:
        reply.points_to_next = reputation.points_to_next
    return reply


def ended_session(session: pb.EndedSession) -> EndedSession:
    return EndedSession(
        session_id=session.session_id,
        end_sequence=session.end_sequence,
        facts=domain.SessionFacts.from_proto(session),
        snapshot=session.SerializeToString(deterministic=True),
    )


def _driver_campaign(offer: DriverOffer) -> pb.DriverCampaign:
    row, candidate = offer.campaign.row, offer.campaign.candidate
    window = candidate.rules.time_window
    item = pb.DriverCampaign(
        id=candidate.campaign_id,
        name=candidate.name,
        sponsor_name=row["sponsor_name"],
        sponsor_logo_url=row["sponsor_logo_url"] or None,
        description=row["description"],
        reward_cents=candidate.reward_cents,
        reward_kind=row["reward_kind"],
        campaign_type=row["campaign_type"],
        eligible=offer.failure is None,
        end_date=timestamp(row["end_date"]),
        min_duration_minutes=candidate.rules.min_duration_minutes,
        time_start=f"{window.start:%H:%M}" if window else "",
        time_end=f"{window.end:%H:%M}" if window else "",
        time_zone=row["time_zone"],
    )
    if offer.failure is not None:
        item.ineligible_reason = offer.failure.rule
    return item


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
        ledger: ledger_pb2_grpc.LedgerServiceAsyncStub,
    ) -> None:
        self._ledger = ledger
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
        row = await self._campaigns.create(campaign_draft(request), caller.user_id)
        return pb.CreateCampaignResponse(campaign=campaign_message(row))

    async def GetCampaign(
        self, request: pb.GetCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetCampaignResponse:
        row = await self._campaigns.get(request.campaign_id, _actor(write=False))
        return pb.GetCampaignResponse(campaign=campaign_message(row))

    async def ListCampaigns(
        self, request: pb.ListCampaignsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListCampaignsResponse:
        size = request.page_size or request.limit or DEFAULT_PAGE
        offset = _offset(request.page_token, request.offset)
        page = await self._campaigns.list_page(
            _actor(write=False),
            status=status_filter(request.status),
            sponsor_name=request.sponsor_name,
            offset=offset,
            size=size,
        )
        return pb.ListCampaignsResponse(
            campaigns=[campaign_message(row) for row in page.campaigns],
            count=len(page.campaigns),
            next_page_token=page_token(offset + size) if page.more else "",
        )

    async def UpdateCampaign(
        self, request: pb.UpdateCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.UpdateCampaignResponse:
        row = await self._campaigns.edit(request.campaign_id, campaign_edit(request), _actor())
        return pb.UpdateCampaignResponse(campaign=campaign_message(row))

    async def EditCampaign(
        self, request: pb.EditCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EditCampaignResponse:
        edit = campaign_edit(console_update(request.campaign_id, request.http_body.data))
        row = await self._campaigns.edit(request.campaign_id, edit, _actor())
        return pb.EditCampaignResponse(campaign=campaign_message(row))

    async def ActivateCampaign(
        self, request: pb.ActivateCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ActivateCampaignResponse:
        row = await self._campaigns.activate(request.campaign_id, _actor())
        return pb.ActivateCampaignResponse(campaign=campaign_message(row))

    async def PauseCampaign(
        self, request: pb.PauseCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PauseCampaignResponse:
        row = await self._campaigns.pause(request.campaign_id, request.reason, _actor())
        return pb.PauseCampaignResponse(campaign=campaign_message(row))

    async def ResumeCampaign(
        self, request: pb.ResumeCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ResumeCampaignResponse:
        row = await self._campaigns.resume(request.campaign_id, _actor())
        return pb.ResumeCampaignResponse(campaign=campaign_message(row))

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
            self._ledger,
            campaign_id=request.campaign_id,
            actor=_actor(),
            reason=request.reason,
            request_id=request.request_id,
            now=utc_now(),
        )
        await self._index.refresh()
        return pb.FundCampaignFromPlatformResponse(campaign=campaign_message(row))

    async def CancelCampaign(
        self, request: pb.CancelCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CancelCampaignResponse:
        row, refunded = await funding.cancel(
            self._engine, self._ledger, campaign_id=request.campaign_id, actor=_actor()
        )
        await self._index.refresh()
        return pb.CancelCampaignResponse(campaign=campaign_message(row), refunded_cents=refunded)

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
        return pb.RecordCampaignFundingResponse(campaign=campaign_message(row), replayed=replayed)

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
            grants=[grant_message(row, page.campaign_name) for row in page.grants],
            total=page.total,
            count=len(page.grants),
            next_page_token=page_token(offset + size) if more else "",
        )

    async def GetBudget(
        self, request: pb.GetBudgetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetBudgetResponse:
        return _budget_message(await self._campaigns.budget(request.campaign_id, _actor(write=False)))

    async def SimulateCampaign(
        self, request: pb.SimulateCampaignRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SimulateCampaignResponse:
        run = await self._campaigns.simulate(
            request.campaign_id,
            _actor(write=False),
            since=_dt(request.since) if request.HasField("since") else None,
            until=_dt(request.until) if request.HasField("until") else None,
        )
        return _dry_run_message(run)

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
            campaigns=[_driver_campaign(offer) for offer in page.offers],
            next_page_token=page_token(offset + size) if page.more else "",
        )

    async def GetReputation(
        self, request: pb.GetReputationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetReputationResponse:
        caller = current_caller()
        assert caller.user_id is not None
        zone = domain.parse_time_zone(zone_name(request.time_zone, DEFAULT_STREAK_ZONE))
        standing = await reputation(self._engine, caller.user_id, zone, utc_now())
        return reputation_message(standing.reputation, standing.streak_days)

    # --- grants --------------------------------------------------------------------------------------------

    async def EvaluateSession(
        self, request: pb.EvaluateSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EvaluateSessionResponse:
        return evaluation_message(await self._granting.evaluate(ended_session(request.session)))

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
            grant=grant_message(clawback.grant, clawback.campaign_name),
            campaign_remaining_cents=clawback.campaign_remaining_cents,
        )

    async def ListChargerRewards(
        self, request: pb.ListChargerRewardsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListChargerRewardsResponse:
        places = [
            domain.Place(charger_id=c.charger_id, network=c.network, zone_id=c.zone_id, lat=c.lat, lng=c.lng)
            for c in request.chargers
        ]
        rewards = []
        for place in places:
            if (best := self._campaigns.charger_reward(place)) is not None:
                reward = pb.ChargerReward(
                    charger_id=place.charger_id,
                    reward_cents=best.candidate.reward_cents,
                    reward_kind=best.row["reward_kind"],
                    campaign_id=best.candidate.campaign_id,
                )
                rewards.append(reward)
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
        return pb.BatchGetSessionGrantsResponse(grants=[grant_message(row, row["campaign_name"]) for row in rows])
