"""The translation between IncentivesService's messages and the values of its cores, both ways: requests read
into plain values (CampaignDraft, CampaignEdit, the console's words, dates and PUT body, an EndedSession), and the
cores' rows and dataclasses built into answers. No I/O, no rules (those are the cores' and domain.py's). The
readers of CampaignRules and EndedSession (`store.targeting_rules`, `store.session_facts`) are store.py's: those
messages are also stored forms, which the cores below this module read back from their rows.

Beside api.py rather than in it because it is as long as the handlers together (~330 lines): api.py stays the
access table and one short handler per RPC, readable at a glance.
"""

from __future__ import annotations

import datetime
import json
from typing import Any, cast

import protovalidate
from google.protobuf import json_format
from nerava.incentives.v1 import incentives_pb2 as pb

from services.common.errors import InvalidArgument
from services.common.interceptors import _field_path as field_path
from services.common.timestamps import timestamp
from services.incentives import domain, store
from services.incentives.campaigns import (
    EDIT_FIELDS,
    Budget,
    CampaignDraft,
    CampaignEdit,
    DriverOffer,
    DryRun,
    not_a_campaign_date,
    parse_uuid,
)
from services.incentives.granting import EndedSession, SessionEvaluation
from services.incentives.index import IndexedCampaign
from services.incentives.reasons import Reason

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


def driver_caps(caps: pb.CampaignCaps) -> domain.DriverCaps:
    return domain.DriverCaps(
        caps.per_day if caps.HasField("per_day") else None,
        caps.per_campaign if caps.HasField("per_campaign") else None,
        caps.per_charger if caps.HasField("per_charger") else None,
    )


def campaign_candidate(campaign: pb.Campaign) -> domain.CampaignCandidate:
    """A Campaign message as the rules read a campaign (store.campaign_candidate reads the row it is built from)."""

    def given(field: str) -> int | None:
        return int(getattr(campaign, field)) if campaign.HasField(field) else None

    return domain.CampaignCandidate(
        campaign_id=campaign.id,
        name=campaign.name,
        priority=campaign.priority,
        created_at=campaign.created_at.ToDatetime(tzinfo=datetime.UTC),
        time_zone=domain.parse_time_zone(campaign.time_zone),
        reward_cents=campaign.cost_per_session_cents,
        remaining_cents=campaign.remaining_cents,
        rules=store.campaign_rule_set(campaign.rules),
        caps=domain.DriverCaps(
            given("max_grants_per_driver_per_day"),
            given("max_grants_per_driver_per_campaign"),
            given("max_grants_per_driver_per_charger"),
        ),
        max_sessions=given("max_sessions"),
        sessions_granted=campaign.sessions_granted,
        status=campaign.status,
        start_date=campaign.start_date.ToDatetime(tzinfo=datetime.UTC) if campaign.HasField("start_date") else None,
        end_date=campaign.end_date.ToDatetime(tzinfo=datetime.UTC) if campaign.HasField("end_date") else None,
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
        rules=store.targeting_rules(request.rules),
        caps=driver_caps(request.caps),
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
        values["rules"] = store.targeting_rules(request.rules)
    if "caps" in written:
        values["caps"] = driver_caps(request.caps)
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


def ended_session(session: pb.EndedSession) -> EndedSession:
    return EndedSession(
        session_id=session.session_id,
        end_sequence=session.end_sequence,
        facts=store.session_facts(session),
        snapshot=session.SerializeToString(deterministic=True),
    )


# --- the cores' values → answers --------------------------------------------------------------------------------


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


def budget_message(budget: Budget) -> pb.GetBudgetResponse:
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


def rule_failure(rule: int) -> pb.RuleFailure:
    """The contract's RuleFailure named as the rules' `domain.RuleFailure` of that number (the numbers are pinned
    equal too); protoc's stubs type `Value` as a plain int."""
    return cast(pb.RuleFailure, pb.RuleFailure.Value(domain.RuleFailure(rule).name))


def dry_run_message(run: DryRun) -> pb.SimulateCampaignResponse:
    result = run.result
    return pb.SimulateCampaignResponse(
        sessions_evaluated=result.sessions_evaluated,
        sessions_matched=result.sessions_matched,
        grants=result.grants,
        spend_cents=result.spend_cents,
        unique_drivers=result.unique_drivers,
        budget_exhausted_at=timestamp(result.budget_exhausted_at),
        failures=[pb.RuleFailureCount(failure=rule_failure(f), sessions=n) for f, n in result.failures],
        since=timestamp(run.since),
        until=timestamp(run.until),
    )


def evaluation_message(evaluation: SessionEvaluation) -> pb.EvaluateSessionResponse:
    reply = pb.EvaluateSessionResponse(
        outcome=evaluation.outcome,
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
        failure=rule_failure(tried.failure.rule) if tried.failure else pb.RULE_FAILURE_UNSPECIFIED,
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


def driver_campaign(offer: DriverOffer) -> pb.DriverCampaign:
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
        item.ineligible_reason = rule_failure(offer.failure.rule)
    return item


def charger_reward(charger_id: str, best: IndexedCampaign) -> pb.ChargerReward:
    return pb.ChargerReward(
        charger_id=charger_id,
        reward_cents=best.candidate.reward_cents,
        reward_kind=best.row["reward_kind"],
        campaign_id=best.candidate.campaign_id,
    )
