"""The campaign requests read into the cores' values without a server: CreateCampaignRequest → CampaignDraft,
UpdateCampaignRequest and the console's PUT body → CampaignEdit (the update mask, null clearing), the console's
status words, campaign dates (days read later in the campaign's zone, RFC 3339 moments), and the stored form of
the targeting rules (CampaignRules' JSON, as before the rules became a domain value)."""

from __future__ import annotations

import datetime
import json
import uuid
from zoneinfo import ZoneInfo

import pytest
from buf.validate import validate_pb2
from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st
from nerava.incentives.v1 import incentives_pb2 as pb

from services.common.errors import InvalidArgument
from services.incentives import domain, store
from services.incentives.campaigns import EDIT_FIELDS, CampaignEdit
from services.incentives.messages import (
    campaign_date,
    campaign_draft,
    campaign_edit,
    console_update,
    status_filter,
    zone_name,
)

CHICAGO = ZoneInfo("America/Chicago")
CAMPAIGN_ID = "6f1c1f4e-2a43-4c1b-9a0e-3f5d2b7c8e90"


def violations(error: pytest.ExceptionInfo[InvalidArgument]) -> list[tuple[str, str, str]]:
    return error.value.field_violations


# --- dates and zones ---------------------------------------------------------------------------------------


def test_a_day_stays_a_day_and_a_moment_becomes_utc() -> None:
    assert campaign_date("2026-03-08", "start_date") == datetime.date(2026, 3, 8)
    moment = campaign_date("2026-03-08T10:00:00+02:00", "start_date")
    assert moment == datetime.datetime(2026, 3, 8, 8, tzinfo=datetime.UTC)
    assert isinstance(moment, datetime.datetime)
    assert moment.tzinfo is datetime.UTC


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("2026-02-30", "'2026-02-30' is neither a calendar day YYYY-MM-DD nor an RFC 3339 moment"),
        ("", "'' is neither a calendar day YYYY-MM-DD nor an RFC 3339 moment"),
        ("2026-03-08T10:00:00", "an RFC 3339 moment needs its offset (e.g. Z)"),
        (
            "0001-01-01T00:00:00+01:00",
            "'0001-01-01T00:00:00+01:00' is neither a calendar day YYYY-MM-DD nor an RFC 3339 moment",
        ),
    ],
)
def test_a_date_that_is_neither_names_its_field(text: str, why: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        campaign_date(text, "end_date")
    assert violations(error) == [("end_date", why, "")]


def test_a_day_is_read_in_the_campaigns_zone_start_first_moment_end_last_microsecond() -> None:
    day = datetime.date(2026, 3, 8)  # Chicago springs forward that night: a 23-hour day
    assert domain.campaign_start(day, CHICAGO) == datetime.datetime(2026, 3, 8, 6, tzinfo=datetime.UTC)
    assert domain.campaign_end(day, CHICAGO) == datetime.datetime(2026, 3, 9, 4, 59, 59, 999_999, tzinfo=datetime.UTC)
    moment = datetime.datetime(2026, 3, 8, 8, tzinfo=datetime.UTC)
    assert domain.campaign_start(moment, CHICAGO) == domain.campaign_end(moment, CHICAGO) == moment


def test_the_calendars_last_day_has_no_end() -> None:
    with pytest.raises(OverflowError):
        domain.campaign_end(datetime.date(9999, 12, 31), CHICAGO)


def test_a_zone_defaults_to_the_home_market_and_must_exist() -> None:
    assert zone_name("") == "America/Chicago"
    assert zone_name("", "Europe/Paris") == "Europe/Paris"
    assert zone_name("Asia/Tokyo") == "Asia/Tokyo"
    with pytest.raises(InvalidArgument) as error:
        zone_name("Mars/Olympus")
    assert error.value.reason == "UNKNOWN_TIME_ZONE"
    assert violations(error) == [("time_zone", "'Mars/Olympus' is not an IANA time zone", "")]


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("", pb.CAMPAIGN_STATUS_UNSPECIFIED),
        ("active", pb.CAMPAIGN_STATUS_ACTIVE),
        ("completed", pb.CAMPAIGN_STATUS_ENDED),
        ("ended", pb.CAMPAIGN_STATUS_ENDED),
        ("canceled", pb.CAMPAIGN_STATUS_CANCELED),
        ("CAMPAIGN_STATUS_PAUSED", pb.CAMPAIGN_STATUS_PAUSED),
    ],
)
def test_the_consoles_status_words(word: str, status: int) -> None:
    assert status_filter(word) == status


# --- CreateCampaignRequest → CampaignDraft -------------------------------------------------------------------


def test_a_create_request_becomes_a_draft_with_what_it_left_out_as_none() -> None:
    draft = campaign_draft(
        pb.CreateCampaignRequest(
            sponsor_name="Acme",
            sponsor_email="Ops@Acme.example",
            name="Night owls",
            cost_per_session_cents=250,
            budget_cents=10_000,
            start_date="2026-03-08",
            rules=pb.CampaignRules(charger_networks=["Tesla", "EVgo"], min_quality_score=0),
        )
    )
    assert draft.time_zone == "America/Chicago"
    assert draft.start_date == datetime.date(2026, 3, 8)
    assert draft.end_date is None
    assert draft.priority is None
    assert draft.max_sessions is None
    assert draft.reward_kind == pb.REWARD_KIND_UNSPECIFIED
    assert draft.request_id is None
    assert draft.caps == domain.DriverCaps()
    # As given: the core lower-cases the email and applies the defaults.
    assert draft.sponsor_email == "Ops@Acme.example"
    assert draft.rules == domain.TargetingRules(charger_networks=("Tesla", "EVgo"), min_quality_score=0)


def test_a_create_request_keeps_a_zero_it_sets_and_its_caps() -> None:
    request_id = uuid.uuid4()
    draft = campaign_draft(
        pb.CreateCampaignRequest(
            sponsor_name="Acme",
            name="N",
            cost_per_session_cents=250,
            budget_cents=10_000,
            start_date="2026-03-08T00:00:00Z",
            end_date="2026-03-31",
            time_zone="Europe/Paris",
            priority=0,
            max_sessions=0,
            reward_kind=pb.REWARD_KIND_NOVA,
            caps=pb.CampaignCaps(per_day=1, per_charger=0),
            request_id=str(request_id),
        )
    )
    assert (draft.priority, draft.max_sessions, draft.reward_kind) == (0, 0, pb.REWARD_KIND_NOVA)
    assert draft.start_date == datetime.datetime(2026, 3, 8, tzinfo=datetime.UTC)
    assert draft.end_date == datetime.date(2026, 3, 31)
    assert draft.time_zone == "Europe/Paris"
    assert draft.caps == domain.DriverCaps(per_day=1, per_campaign=None, per_charger=0)
    assert draft.request_id == request_id


def test_a_create_request_with_an_unknown_zone_is_refused_before_its_dates() -> None:
    with pytest.raises(InvalidArgument) as error:
        campaign_draft(pb.CreateCampaignRequest(start_date="not a date", time_zone="Mars/Olympus"))
    assert error.value.reason == "UNKNOWN_TIME_ZONE"


# --- UpdateCampaignRequest and the console's body → CampaignEdit ----------------------------------------------


def test_an_update_writes_only_the_masked_fields_and_clears_the_unset_ones() -> None:
    request = pb.UpdateCampaignRequest(
        campaign_id=CAMPAIGN_ID, name="New name", start_date="not read: not in the mask", budget_cents=5
    )
    request.update_mask.paths.extend(["name", "priority", "max_sessions", "end_date", "caps", "rules"])
    edit = campaign_edit(request)
    assert edit == CampaignEdit(
        frozenset({"name", "priority", "max_sessions", "end_date", "caps", "rules"}),
        name="New name",
        priority=None,
        max_sessions=None,
        end_date=None,
        caps=domain.DriverCaps(),
        rules=domain.TargetingRules(),
    )


def test_an_update_without_a_mask_writes_the_fields_it_sets() -> None:
    request = pb.UpdateCampaignRequest(
        campaign_id=CAMPAIGN_ID, priority=0, end_date="2026-12-31", time_zone="Asia/Tokyo", description=""
    )
    edit = campaign_edit(request)
    assert edit.fields == {"priority", "end_date", "time_zone"}
    assert (edit.priority, edit.end_date, edit.time_zone) == (0, datetime.date(2026, 12, 31), "Asia/Tokyo")


def test_an_update_reads_a_masked_zone_and_dates() -> None:
    request = pb.UpdateCampaignRequest(campaign_id=CAMPAIGN_ID, time_zone="Mars/Olympus")
    request.update_mask.paths.append("time_zone")
    with pytest.raises(InvalidArgument) as error:
        campaign_edit(request)
    assert error.value.reason == "UNKNOWN_TIME_ZONE"
    request = pb.UpdateCampaignRequest(campaign_id=CAMPAIGN_ID, start_date="2026-02-30")
    request.update_mask.paths.append("start_date")
    with pytest.raises(InvalidArgument) as error:
        campaign_edit(request)
    assert [v[0] for v in violations(error)] == ["start_date"]


def test_the_consoles_body_masks_its_keys_and_null_clears() -> None:
    body = json.dumps(
        {
            "name": "Renamed",
            "max_sessions": None,
            "end_date": None,
            "caps": {"per_day": 2},
            "budget_cents": 20_000,
            "unknown_key": "ignored",
        }
    ).encode()
    edit = campaign_edit(console_update(CAMPAIGN_ID, body))
    assert edit == CampaignEdit(
        frozenset({"name", "max_sessions", "end_date", "caps", "budget_cents"}),
        name="Renamed",
        max_sessions=None,
        end_date=None,
        caps=domain.DriverCaps(per_day=2),
        budget_cents=20_000,
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"[1, 2]", ""),
        (b"not json", ""),
        (b'{"priority": "high"}', "priority"),
        (b'{"name": null}', ""),  # name cannot be cleared: the contract's rule, checked on the typed request
        (b'{"start_date": null}', ""),
    ],
)
def test_the_consoles_body_is_refused_naming_what_is_wrong(body: bytes, field: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        console_update(CAMPAIGN_ID, body)
    assert violations(error)[0][0] == field


def test_an_edit_cannot_name_a_field_outside_the_mask_vocabulary_nor_clear_the_start() -> None:
    with pytest.raises(ValueError, match="not editable"):
        CampaignEdit(frozenset({"sponsor_name"}))
    with pytest.raises(ValueError, match="start_date"):
        CampaignEdit(frozenset({"start_date"}))


# --- targeting rules: request → domain → stored -------------------------------------------------------------

texts = st.lists(st.sampled_from(["Tesla", "EVgo", "ccs", "A-1", "zone-7", "x@y.example"]), unique=True, max_size=3)
optional_ints = st.none() | st.integers(0, 1440)
campaign_rules = st.builds(
    lambda ints, lists, geo, window, days, power: pb.CampaignRules(
        **{name: value for name, value in ints.items() if value is not None},
        **lists,
        **({"geo_center_lat": geo[0], "geo_center_lng": geo[1], "geo_radius_m": geo[2]} if geo else {}),
        **({"time_start": window[0], "time_end": window[1]} if window else {}),
        days_of_week=days,
        **({"min_power_kw": power} if power is not None else {}),
    ),
    st.fixed_dictionaries(
        {
            name: optional_ints
            for name in (
                "min_duration_minutes",
                "max_duration_minutes",
                "driver_session_count_min",
                "driver_session_count_max",
                "min_quality_score",
            )
        }
    ),
    st.fixed_dictionaries(
        {name: texts for name in ("charger_ids", "charger_networks", "zone_ids", "connector_types", "driver_allowlist")}
    ),
    st.none() | st.tuples(st.floats(-90, 90), st.floats(-180, 180), st.integers(1, 500_000)),
    st.none() | st.sampled_from([("22:00", "06:00"), ("07:30", "09:00")]),
    st.lists(st.integers(1, 7), unique=True, max_size=7),
    st.none() | st.floats(0, 350) | st.integers(1, 350).map(float),
)


@given(rules=campaign_rules)
def test_the_rules_are_stored_as_the_contracts_json_and_read_back_as_given(rules: pb.CampaignRules) -> None:
    stored = store.rules_to_json(store.targeting_rules(rules))
    assert stored == json_format.MessageToDict(rules, preserving_proto_field_name=True)
    back = store.rules_from_json(json.loads(json.dumps(stored)))
    if not rules.HasField("min_duration_minutes"):
        rules.min_duration_minutes = domain.DEFAULT_MIN_DURATION_MINUTES
    assert back == rules


def test_the_edit_vocabulary_is_the_contracts_update_mask() -> None:
    """EDIT_FIELDS is the one copy of the update mask's `in` rule (proto/…/incentives.proto) the core needs."""
    mask = pb.UpdateCampaignRequest.DESCRIPTOR.fields_by_name["update_mask"]
    rules: validate_pb2.FieldRules = mask.GetOptions().Extensions[validate_pb2.field]  # type: ignore[index]
    allowed = getattr(rules.field_mask, "in")  # `in` is a Python keyword
    assert tuple(allowed) == EDIT_FIELDS
