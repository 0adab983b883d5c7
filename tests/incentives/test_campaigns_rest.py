"""Campaigns, their reports and drivers' incentives over REST/JSON through the real Envoy, as the sponsor
console, the admin tools and the driver app call them: who may do what, bad input, the lifecycle, funding
through the fake Stripe, "earn here" and reputation.

The database and the service are shared by every test: campaigns here either pay only at this test's own
charger (`incentives.charger`) or are drawn around a random point no other test uses."""

from __future__ import annotations

import datetime
import random
import uuid
import zoneinfo
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from nerava.incentives.v1 import incentives_pb2 as pb

from fakes.stripe import FakeStripe
from fakes.twilio_verify import FakeTwilioVerify
from tests.incentives.helpers import Incentives
from tests.support.eventually import eventually
from tests.support.people import NewPerson, Person

JsonObject = dict[str, Any]
CHICAGO = zoneinfo.ZoneInfo("America/Chicago")

CAMPAIGN_NOT_FOUND = "CAMPAIGN_NOT_FOUND"
GRPC_INVALID_ARGUMENT, GRPC_NOT_FOUND, GRPC_FAILED_PRECONDITION = 3, 5, 9
GRPC_PERMISSION_DENIED, GRPC_UNAUTHENTICATED = 7, 16


# --- REST plumbing ---------------------------------------------------------------------------------------------


def _auth(who: Person) -> dict[str, str]:
    return {"Authorization": f"Bearer {who.token}"}


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def _an_hour_ago() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)


def _campaign_body(charger: str, **overrides: Any) -> JsonObject:
    """What the console posts: $1 cash per session, $100 gross (80 net), paying only at `charger`."""
    body: JsonObject = {
        "sponsor_name": "Volta Test",
        "name": "REST campaign",
        "reward_kind": "REWARD_KIND_CASH",
        "cost_per_session_cents": 100,
        "budget_cents": 10_000,
        "start_date": _rfc3339(_an_hour_ago()),
        "time_zone": "America/Chicago",
        "rules": {"charger_ids": [charger]},
    }
    body.update(overrides)
    return body


def _details(body: Mapping[str, Any], kind: str) -> list[JsonObject]:
    return [d for d in body.get("details", []) if str(d.get("@type", "")).endswith(f"google.rpc.{kind}")]


def _reason(body: Mapping[str, Any]) -> str:
    infos = _details(body, "ErrorInfo")
    return str(infos[0]["reason"]) if infos else ""


def _error_metadata(body: Mapping[str, Any]) -> dict[str, str]:
    infos = _details(body, "ErrorInfo")
    return dict(infos[0].get("metadata", {})) if infos else {}


def _violations(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, rule id) of each BadRequest field violation."""
    return [(v["field"], v.get("reason", "")) for d in _details(body, "BadRequest") for v in d["field_violations"]]


def _refused(reply: httpx.Response, http_status: int, grpc_code: int, reason: str | None = None) -> JsonObject:
    """Asserts a JSON google.rpc.Status refusal and returns its body."""
    assert reply.status_code == http_status, f"{reply.request.method} {reply.request.url}: {reply.text}"
    assert reply.headers["content-type"].startswith("application/json")
    body: JsonObject = reply.json()
    assert body["code"] == grpc_code, body
    if reason is not None:
        assert _reason(body) == reason, body
    return body


def _ok(reply: httpx.Response) -> JsonObject:
    assert reply.status_code == 200, f"{reply.request.method} {reply.request.url}: {reply.text}"
    body: JsonObject = reply.json()
    return body


async def _create(rest: httpx.AsyncClient, who: Person, charger: str, **overrides: Any) -> JsonObject:
    campaign: JsonObject = _ok(
        await rest.post("/v1/campaigns", json=_campaign_body(charger, **overrides), headers=_auth(who))
    )["campaign"]
    return campaign


async def _fund_from_platform(rest: httpx.AsyncClient, admin: Person, campaign_id: str) -> JsonObject:
    """An admin pays the campaign's budget from the platform (no Stripe payment), so it may be activated."""
    body = {"reason": "test campaign paid by the platform", "request_id": str(uuid.uuid4())}
    funded: JsonObject = _ok(
        await rest.post(f"/v1/admin/campaigns/{campaign_id}:fundFromPlatform", json=body, headers=_auth(admin))
    )["campaign"]
    return funded


async def _get(rest: httpx.AsyncClient, who: Person, campaign_id: str) -> JsonObject:
    campaign: JsonObject = _ok(await rest.get(f"/v1/campaigns/{campaign_id}", headers=_auth(who)))["campaign"]
    return campaign


async def _listed_ids(rest: httpx.AsyncClient, who: Person, path: str = "/v1/campaigns") -> list[str]:
    body = _ok(await rest.get(path, headers=_auth(who)))
    assert body["count"] == len(body["campaigns"])
    return [c["id"] for c in body["campaigns"]]


async def _call(
    rest: httpx.AsyncClient, method: str, path: str, who: Person | None, json: JsonObject | None = None
) -> httpx.Response:
    headers = _auth(who) if who is not None else {}
    return await rest.request(method, path, json=json, headers=headers)


# --- 1. who may do what ----------------------------------------------------------------------------------------

# (name, method, path under /v1/campaigns/{id}, body, status the campaign must have for the owner's call to make
# sense: "draft", "active" or "paused")
INTRUSIONS: list[tuple[str, str, str, JsonObject | None, str]] = [
    ("get", "GET", "", None, "draft"),
    ("patch", "PATCH", "", {"name": "Hijacked"}, "draft"),
    ("put", "PUT", "", {"name": "Hijacked"}, "draft"),
    ("activate", "POST", "/activate", {}, "draft"),
    ("pause", "POST", "/pause?reason=mine", None, "active"),
    ("resume", "POST", "/resume", {}, "paused"),
    ("checkout", "POST", "/checkout", {}, "draft"),
    ("grants", "GET", "/grants", None, "active"),
    ("budget", "GET", "/budget", None, "active"),
    ("simulate", "POST", ":simulate", {}, "draft"),
]


@pytest.mark.parametrize(
    ("method", "suffix", "payload", "state"), [i[1:] for i in INTRUSIONS], ids=[i[0] for i in INTRUSIONS]
)
async def test_a_sponsor_cannot_reach_another_sponsors_campaign(
    rest: httpx.AsyncClient,
    incentives: Incentives,
    sponsor: Person,
    person: NewPerson,
    admin: Person,
    method: str,
    suffix: str,
    payload: JsonObject | None,
    state: str,
) -> None:
    intruder = await person("sponsor")
    campaign = await _create(rest, sponsor, incentives.charger, name="Owned by someone else")
    if state in ("active", "paused"):
        await _fund_from_platform(rest, admin, campaign["id"])
        _ok(await rest.post(f"/v1/campaigns/{campaign['id']}/activate", headers=_auth(admin)))
    if state == "paused":
        _ok(await rest.post(f"/v1/campaigns/{campaign['id']}/pause", headers=_auth(admin)))
    before = await _get(rest, sponsor, campaign["id"])
    path = f"/v1/campaigns/{campaign['id']}{suffix}"

    refused = _refused(await _call(rest, method, path, intruder, payload), 404, GRPC_NOT_FOUND, CAMPAIGN_NOT_FOUND)
    # Exactly what an id that does not exist answers: the other sponsor's campaign is not even confirmed.
    missing = f"/v1/campaigns/{uuid.uuid4()}{suffix}"
    unknown = _refused(await _call(rest, method, missing, intruder, payload), 404, GRPC_NOT_FOUND, CAMPAIGN_NOT_FOUND)
    assert refused["message"] == unknown["message"]

    after = await _get(rest, sponsor, campaign["id"])
    assert after == before  # nothing changed: status, name, funding, updated_at
    # The owner's same call is not a 404: the refusal above was about ownership, not the campaign's state.
    own = await _call(rest, method, path, sponsor, payload)
    assert own.status_code != 404, own.text


async def test_sponsors_list_only_their_own_campaigns_and_admins_see_all(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person, person: NewPerson, admin: Person
) -> None:
    other = await person("sponsor")
    brand = f"Brand {uuid.uuid4().hex[:10]}"
    first = await _create(rest, sponsor, incentives.charger, sponsor_name=brand, name="Mine 1")
    second = await _create(rest, sponsor, incentives.charger, sponsor_name=brand, name="Mine 2")
    theirs = await _create(rest, other, incentives.charger, sponsor_name=brand, name="Theirs")

    mine = [second["id"], first["id"]]  # newest first
    assert await _listed_ids(rest, sponsor) == mine
    assert await _listed_ids(rest, sponsor, "/v1/campaigns/") == mine  # the console's trailing slash
    assert await _listed_ids(rest, sponsor, f"/v1/campaigns/?sponsor_name={brand}") == mine
    assert await _listed_ids(rest, other) == [theirs["id"]]
    # An admin sees every sponsor's campaigns (filtered to this test's brand; the database is shared).
    assert await _listed_ids(rest, admin, f"/v1/campaigns?sponsor_name={brand.upper()}") == [
        theirs["id"],
        second["id"],
        first["id"],
    ]
    assert (await _get(rest, admin, theirs["id"]))["created_by_user_id"] == other.user_id
    budget = _ok(await rest.get(f"/v1/campaigns/{theirs['id']}/budget", headers=_auth(admin)))
    assert budget["budget_cents"] == 8_000


SPONSOR_CALLS: list[tuple[str, str, str, JsonObject | None]] = [
    ("list", "GET", "/v1/campaigns", None),
    ("list-slash", "GET", "/v1/campaigns/", None),
    ("create", "POST", "/v1/campaigns", {}),  # body filled in by the test
    ("get", "GET", "/v1/campaigns/{id}", None),
    ("patch", "PATCH", "/v1/campaigns/{id}", {"name": "Driver was here"}),
    ("put", "PUT", "/v1/campaigns/{id}", {"name": "Driver was here"}),
    ("activate", "POST", "/v1/campaigns/{id}/activate", {}),
    ("pause", "POST", "/v1/campaigns/{id}/pause", None),
    ("resume", "POST", "/v1/campaigns/{id}/resume", {}),
    ("checkout", "POST", "/v1/campaigns/{id}/checkout", {}),
    ("grants", "GET", "/v1/campaigns/{id}/grants", None),
    ("budget", "GET", "/v1/campaigns/{id}/budget", None),
    ("simulate", "POST", "/v1/campaigns/{id}:simulate", {}),
]


async def test_a_driver_is_refused_every_sponsor_method(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person, driver: Person
) -> None:
    campaign = await _create(rest, sponsor, incentives.charger)
    before = await _get(rest, sponsor, campaign["id"])
    for name, method, template, payload in SPONSOR_CALLS:
        body = _campaign_body(incentives.charger) if name == "create" else payload
        reply = await _call(rest, method, template.format(id=campaign["id"]), driver, body)
        refused = _refused(reply, 403, GRPC_PERMISSION_DENIED, "PERMISSION_DENIED")
        assert refused["message"], name
    assert await _get(rest, sponsor, campaign["id"]) == before
    assert await _listed_ids(rest, sponsor) == [campaign["id"]]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/campaigns"),
        ("GET", "/v1/campaigns/"),
        ("POST", "/v1/campaigns"),
        ("GET", "/v1/campaigns/{id}"),
        ("PATCH", "/v1/campaigns/{id}"),
        ("POST", "/v1/campaigns/{id}/activate"),
        ("POST", "/v1/campaigns/{id}/checkout"),
        ("GET", "/v1/campaigns/{id}/budget"),
        ("GET", "/v1/campaigns/driver/active"),
        ("GET", "/v1/charging-sessions/reputation"),
        ("POST", "/v1/internal/incentives/evaluate-session"),
        ("POST", "/v1/admin/grants/{id}:clawback"),
    ],
)
async def test_without_a_token_is_401(rest: httpx.AsyncClient, method: str, path: str) -> None:
    reply = await rest.request(method, path.format(id=uuid.uuid4()), json={} if method != "GET" else None)
    _refused(reply, 401, GRPC_UNAUTHENTICATED)


def _ended_session_json(driver_id: str, charger: str) -> JsonObject:
    end = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    return {
        "session": {
            "session_id": str(uuid.uuid4()),
            "end_sequence": 1,
            "driver_id": driver_id,
            "charger_id": charger,
            "session_start": _rfc3339(end - datetime.timedelta(minutes=30)),
            "session_end": _rfc3339(end),
            "duration_minutes": 30,
            "quality_score": 90,
            "driver_completed_sessions": 1,
        }
    }


async def test_internal_methods_are_refused_to_every_user(
    rest: httpx.AsyncClient,
    incentives: Incentives,
    sponsor: Person,
    admin: Person,
    driver: Person,
) -> None:
    campaign = await _create(rest, sponsor, incentives.charger)
    evaluate = _ended_session_json(driver.user_id, incentives.charger)
    funding = {
        "campaign_id": campaign["id"],
        "checkout_session_id": f"cs_test_{uuid.uuid4().hex}",
        "gross_cents": 10_000,
        "platform_fee_cents": 2_000,
        "net_budget_cents": 8_000,
        "paid_at": _rfc3339(datetime.datetime.now(datetime.UTC)),
    }
    batch = {"session_ids": [evaluate["session"]["session_id"]]}
    for who in (driver, sponsor, admin):
        for path, body in (
            ("/v1/internal/incentives/evaluate-session", evaluate),
            ("/v1/internal/incentives/evaluate-session", {}),  # refused before its input is even looked at
            ("/v1/internal/incentives/campaign-funding", funding),
            ("/v1/internal/incentives/session-grants:batchGet", batch),
        ):
            _refused(await _call(rest, "POST", path, who, body), 403, GRPC_PERMISSION_DENIED, "PERMISSION_DENIED")
    # Nothing happened: the sponsor did not fund their own campaign, the driver earned no points.
    after = await _get(rest, sponsor, campaign["id"])
    assert (after["funding_status"], after["status"]) == ("FUNDING_STATUS_UNFUNDED", "CAMPAIGN_STATUS_DRAFT")
    reputation = _ok(await rest.get("/v1/charging-sessions/reputation", headers=_auth(driver)))
    assert reputation["points"] == 0


async def test_only_an_admin_claws_a_grant_back(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person, admin: Person, driver: Person
) -> None:
    campaign = await incentives.active(sponsor)
    granted = await incentives.evaluate(incentives.session(driver.user_id))
    assert granted.outcome == pb.EVALUATION_OUTCOME_GRANTED, granted
    path = f"/v1/admin/grants/{granted.grant.id}:clawback"
    body = {"reason": "charger was offline", "request_id": str(uuid.uuid4())}
    for who in (sponsor, driver):
        _refused(await _call(rest, "POST", path, who, body), 403, GRPC_PERMISSION_DENIED, "PERMISSION_DENIED")
    budget = _ok(await rest.get(f"/v1/campaigns/{campaign.id}/budget", headers=_auth(sponsor)))
    assert (budget["spent_cents"], budget["sessions_granted"]) == (100, 1)

    clawed = _ok(await _call(rest, "POST", path, admin, body))
    assert clawed["grant"]["status"] == "GRANT_STATUS_CLAWED_BACK"
    assert clawed["grant"]["clawback_reason"] == "charger was offline"
    assert clawed["campaign_remaining_cents"] == 8_000
    again = _ok(await _call(rest, "POST", path, admin, body))
    assert again["grant"]["id"] == granted.grant.id
    assert again["campaign_remaining_cents"] == 8_000
    budget = _ok(await rest.get(f"/v1/campaigns/{campaign.id}/budget", headers=_auth(sponsor)))
    assert (budget["spent_cents"], budget["sessions_granted"], budget["remaining_cents"]) == (0, 0, 8_000)
    clawed_back = _ok(
        await rest.get(f"/v1/campaigns/{campaign.id}/grants?status=GRANT_STATUS_CLAWED_BACK", headers=_auth(sponsor))
    )
    assert (clawed_back["total"], clawed_back["grants"][0]["id"]) == (1, granted.grant.id)
    assert clawed_back["grants"][0]["clawed_back_at"].endswith("Z")
    # A clawed-back grant no longer counts toward the driver's reputation.
    assert (await _reputation(rest, driver))["points"] == 0
    missing = f"/v1/admin/grants/{uuid.uuid4()}:clawback"
    _refused(await _call(rest, "POST", missing, admin, body), 404, GRPC_NOT_FOUND, "GRANT_NOT_FOUND")


# --- 2. bad input --------------------------------------------------------------------------------------------


def _rules(charger: str, **rules: Any) -> JsonObject:
    return {"charger_ids": [charger], **rules}


# (id, fields replacing the valid campaign's (rules are merged with the charger restriction), ErrorInfo reason,
# (field, rule id) the BadRequest must name)
BAD_CREATES: list[tuple[str, JsonObject, str, tuple[str, str]]] = [
    ("negative-budget", {"budget_cents": -100}, "INVALID_ARGUMENT", ("budget_cents", "int32.gt_lte")),
    ("zero-budget", {"budget_cents": 0}, "INVALID_ARGUMENT", ("budget_cents", "int32.gt_lte")),
    ("zero-reward", {"cost_per_session_cents": 0}, "INVALID_ARGUMENT", ("cost_per_session_cents", "int32.gt_lte")),
    (
        "reward-too-big",
        {"cost_per_session_cents": 100_001},
        "INVALID_ARGUMENT",
        ("cost_per_session_cents", "int32.gt_lte"),
    ),
    ("end-before-start", {"end_date": "start-1d"}, "INVALID_ARGUMENT", ("end_date", "end_date_after_start_date")),
    ("end-equals-start", {"end_date": "start"}, "INVALID_ARGUMENT", ("end_date", "end_date_after_start_date")),
    ("start-not-a-date", {"start_date": "next tuesday"}, "INVALID_ARGUMENT", ("start_date", "string.pattern")),
    ("start-no-such-day", {"start_date": "2027-02-30"}, "INVALID_ARGUMENT", ("start_date", "")),
    ("start-without-offset", {"start_date": "2027-02-03T10:00:00"}, "INVALID_ARGUMENT", ("start_date", "")),
    ("end-not-a-date", {"end_date": "2027-13-01"}, "INVALID_ARGUMENT", ("end_date", "")),
    ("end-at-the-calendars-end", {"end_date": "9999-12-31"}, "INVALID_ARGUMENT", ("end_date", "")),
    ("unknown-reward-kind", {"reward_kind": 7}, "INVALID_ARGUMENT", ("reward_kind", "enum.defined_only")),
    ("unknown-time-zone", {"time_zone": "Mars/Olympus"}, "UNKNOWN_TIME_ZONE", ("time_zone", "")),
    (
        "geo-radius-without-centre",
        {"rules": {"geo_radius_m": 500}},
        "INVALID_ARGUMENT",
        ("rules", "geo_radius_requires_center"),
    ),
    (
        "geo-centre-without-radius",
        {"rules": {"geo_center_lat": 41.0, "geo_center_lng": -98.0}},
        "INVALID_ARGUMENT",
        ("rules", "geo_center_requires_radius"),
    ),
    ("day-0", {"rules": {"days_of_week": [0]}}, "INVALID_ARGUMENT", ("rules.days_of_week[0]", "int32.gte_lte")),
    ("day-8", {"rules": {"days_of_week": [1, 8]}}, "INVALID_ARGUMENT", ("rules.days_of_week[1]", "int32.gte_lte")),
    ("window-start-only", {"rules": {"time_start": "22:00"}}, "INVALID_ARGUMENT", ("rules", "time_window_complete")),
    ("window-end-only", {"rules": {"time_end": "06:00"}}, "INVALID_ARGUMENT", ("rules", "time_window_complete")),
    (
        "window-empty",
        {"rules": {"time_start": "08:00", "time_end": "08:00"}},
        "INVALID_ARGUMENT",
        ("rules", "time_window_complete"),
    ),
    (
        "window-24h",
        {"rules": {"time_start": "22:00", "time_end": "24:00"}},
        "INVALID_ARGUMENT",
        ("rules.time_end", "string.pattern"),
    ),
    # 123¢ gross: the 20 % fee (floored) is 24¢, leaving 99¢ for a 100¢ reward.
    ("budget-too-small-after-fee", {"budget_cents": 123}, "BUDGET_TOO_SMALL", ("budget_cents", "")),
    ("budget-below-one-reward", {"budget_cents": 99}, "INVALID_ARGUMENT", ("", "budget_cents_covers_one_reward")),
]


@pytest.mark.parametrize(
    ("overrides", "reason", "violation"), [c[1:] for c in BAD_CREATES], ids=[c[0] for c in BAD_CREATES]
)
async def test_a_bad_campaign_is_400_naming_the_field_and_writes_nothing(
    rest: httpx.AsyncClient,
    incentives: Incentives,
    sponsor: Person,
    overrides: JsonObject,
    reason: str,
    violation: tuple[str, str],
) -> None:
    existing = await _create(rest, sponsor, incentives.charger, name="Already there")
    start = _an_hour_ago()
    body = _campaign_body(incentives.charger, start_date=_rfc3339(start))
    for key, value in overrides.items():
        if key == "rules":
            body["rules"] = _rules(incentives.charger, **value)
        elif value == "start-1d":
            body[key] = _rfc3339(start - datetime.timedelta(days=1))
        elif value == "start":
            body[key] = _rfc3339(start)
        else:
            body[key] = value

    for path in ("/v1/campaigns", "/v1/campaigns/"):
        refused = _refused(await rest.post(path, json=body, headers=_auth(sponsor)), 400, GRPC_INVALID_ARGUMENT, reason)
        assert violation in _violations(refused), refused
    assert await _listed_ids(rest, sponsor) == [existing["id"]]  # nothing was written


async def test_the_smallest_budget_after_the_fee_is_accepted(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person
) -> None:
    campaign = await _create(rest, sponsor, incentives.charger, budget_cents=124)  # fee floor(24.8) = 24
    assert (campaign["gross_funding_cents"], campaign["platform_fee_cents"], campaign["budget_cents"]) == (124, 24, 100)


async def test_a_bad_edit_is_400_and_changes_nothing(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person
) -> None:
    campaign = await _create(rest, sponsor, incentives.charger)
    path = f"/v1/campaigns/{campaign['id']}"
    cases: list[tuple[JsonObject, str, tuple[str, str]]] = [
        ({"time_zone": "Mars/Olympus"}, "UNKNOWN_TIME_ZONE", ("time_zone", "")),
        ({"cost_per_session_cents": -5}, "INVALID_ARGUMENT", ("cost_per_session_cents", "int32.gt_lte")),
        (
            {"rules": _rules(incentives.charger, days_of_week=[8])},
            "INVALID_ARGUMENT",
            ("rules.days_of_week[0]", "int32.gte_lte"),
        ),
        (
            {"rules": _rules(incentives.charger, geo_radius_m=100)},
            "INVALID_ARGUMENT",
            ("rules", "geo_radius_requires_center"),
        ),
        (
            {"end_date": _rfc3339(_an_hour_ago() - datetime.timedelta(days=1))},
            "INVALID_ARGUMENT",
            ("end_date", "end_date_after_start_date"),
        ),
        ({"budget_cents": 123}, "BUDGET_TOO_SMALL", ("budget_cents", "")),
        ({"update_mask": "name"}, "INVALID_ARGUMENT", ("", "name_not_clearable")),
    ]
    before = await _get(rest, sponsor, campaign["id"])
    for body, reason, violation in cases:
        refused = _refused(
            await rest.patch(path, json=body, headers=_auth(sponsor)), 400, GRPC_INVALID_ARGUMENT, reason
        )
        assert violation in _violations(refused), (body, refused)
    assert await _get(rest, sponsor, campaign["id"]) == before


# --- 3. lifecycle and reports ----------------------------------------------------------------------------------


async def test_create_answers_a_draft_with_the_net_budget_in_the_consoles_shape(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person
) -> None:
    reply = await rest.post(
        "/v1/campaigns/",  # the console posts with a trailing slash
        json=_campaign_body(
            incentives.charger,
            sponsor_email="Ops@Volta.example",
            description="Charge at night",
            max_sessions=40,
            caps={"per_day": 1},
            rules=_rules(incentives.charger, time_start="22:00", time_end="06:00", days_of_week=[1, 2, 3]),
        ),
        headers=_auth(sponsor),
    )
    campaign = _ok(reply)["campaign"]
    assert campaign["created_by_user_id"] == sponsor.user_id
    assert (campaign["status"], campaign["funding_status"]) == ("CAMPAIGN_STATUS_DRAFT", "FUNDING_STATUS_UNFUNDED")
    assert campaign["reward_kind"] == "REWARD_KIND_CASH"
    # The sponsor pays the gross; the campaign's budget is what is left after the 20 % platform fee.
    assert (campaign["gross_funding_cents"], campaign["platform_fee_cents"]) == (10_000, 2_000)
    assert (campaign["budget_cents"], campaign["spent_cents"], campaign["remaining_cents"]) == (8_000, 0, 8_000)
    assert isinstance(campaign["budget_cents"], int)  # a number, not a proto3 int64 string
    assert (campaign["priority"], campaign["campaign_type"], campaign["sessions_granted"]) == (100, "custom", 0)
    assert (campaign["max_sessions"], campaign["max_grants_per_driver_per_day"]) == (40, 1)
    assert campaign["sponsor_email"] == "ops@volta.example"
    assert campaign["pause_reason"] == ""
    rules = campaign["rules"]
    assert rules["min_duration_minutes"] == 15  # the default, always present in answers
    assert (rules["time_start"], rules["time_end"], rules["days_of_week"]) == ("22:00", "06:00", [1, 2, 3])
    assert rules["charger_ids"] == [incentives.charger]
    for absent in ("end_date", "funded_at", "max_grants_per_driver_per_campaign", "max_grants_per_driver_per_charger"):
        assert absent not in campaign, absent  # the original's nulls: unset optionals are not printed
    assert campaign["created_at"].endswith("Z")
    assert await _get(rest, sponsor, campaign["id"]) == campaign


def _console_day(days_ahead: int) -> datetime.date:
    """A day the console's date picker could show, counted from today in the campaign's default zone."""
    return datetime.datetime.now(CHICAGO).date() + datetime.timedelta(days=days_ahead)


def _chicago(day: datetime.date, *, end: bool = False) -> str:
    """The moment a console day means in America/Chicago: its first moment, or its last microsecond."""
    if end:
        following = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time(), tzinfo=CHICAGO)
        return _rfc3339(following - datetime.timedelta(microseconds=1))
    return _rfc3339(datetime.datetime.combine(day, datetime.time(), tzinfo=CHICAGO))


async def test_the_consoles_create_edit_clear_activate_sequence_as_it_sends_it(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person, admin: Person
) -> None:
    """Byte for byte the console's calls: no reward kind, no time zone, days as YYYY-MM-DD, every optional key
    sent as null, a trailing slash on the collection, lower-case status words, `null` to clear, and a
    body-less POST with a JSON content type to activate."""
    console = {**_auth(sponsor), "Content-Type": "application/json"}
    start, end, later = _console_day(3), _console_day(33), _console_day(63)
    create = {
        "sponsor_name": "Volta Test",
        "sponsor_email": None,
        "sponsor_logo_url": None,
        "sponsor_type": None,
        "name": "Console campaign",
        "description": "Charge with us",
        "campaign_type": "utilization_boost",
        "priority": None,
        "budget_cents": 10_000,
        "cost_per_session_cents": 200,
        "max_sessions": None,
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
        "auto_renew": False,
        "auto_renew_budget_cents": None,
        "rules": {
            "charger_ids": [incentives.charger],
            "charger_networks": None,
            "zone_ids": None,
            "geo_center_lat": None,
            "geo_center_lng": None,
            "geo_radius_m": None,
            "time_start": None,
            "time_end": None,
            "days_of_week": None,
            "min_duration_minutes": 20,
            "max_duration_minutes": None,
            "min_power_kw": None,
            "connector_types": None,
            "driver_session_count_min": None,
            "driver_session_count_max": None,
            "driver_allowlist": None,
        },
        "caps": {"per_day": 1, "per_campaign": None, "per_charger": None},
    }
    created = _ok(await rest.post("/v1/campaigns/", json=create, headers=console))["campaign"]
    # The documented defaults of the keys the console never sends.
    assert (created["reward_kind"], created["time_zone"]) == ("REWARD_KIND_CASH", "America/Chicago")
    # Days are read in the campaign's zone: from the first moment of the start day to the end of the end day.
    assert (created["start_date"], created["end_date"]) == (_chicago(start), _chicago(end, end=True))
    assert (
        created["priority"],
        created["rules"]["min_duration_minutes"],
        created["max_grants_per_driver_per_day"],
    ) == (
        100,
        20,
        1,
    )
    assert "max_sessions" not in created
    campaign_id = created["id"]
    path = f"/v1/campaigns/{campaign_id}"
    assert await _listed_ids(rest, sponsor, "/v1/campaigns/?status=draft") == [campaign_id]

    # Edit: a later end, a session cap; the console sends the whole form, sponsor keys included.
    edit = {**create, "end_date": later.isoformat(), "max_sessions": 30, "name": "Console campaign v2"}
    edited = _ok(await rest.put(path, json=edit, headers=console))["campaign"]
    assert (edited["end_date"], edited["max_sessions"], edited["name"]) == (
        _chicago(later, end=True),
        30,
        "Console campaign v2",
    )
    assert edited["start_date"] == created["start_date"]

    # Clear: null empties exactly the keys sent as null; the others keep their values.
    cleared = _ok(
        await rest.put(path, json={"end_date": None, "max_sessions": None, "description": None}, headers=console)
    )["campaign"]
    assert "end_date" not in cleared
    assert "max_sessions" not in cleared
    assert (cleared["description"], cleared["name"], cleared["max_grants_per_driver_per_day"]) == (
        "",
        "Console campaign v2",
        1,
    )
    assert await _get(rest, sponsor, campaign_id) == cleared
    # A field that cannot be empty is refused when sent as null, and nothing changes.
    refused = _refused(await rest.put(path, json={"name": None}, headers=console), 400, GRPC_INVALID_ARGUMENT)
    assert ("", "name_not_clearable") in _violations(refused)
    refused = _refused(await rest.put(path, json={"end_date": "soon"}, headers=console), 400, GRPC_INVALID_ARGUMENT)
    assert ("end_date", "string.pattern") in _violations(refused)
    refused = _refused(await rest.put(path, json={"max_sessions": "many"}, headers=console), 400, GRPC_INVALID_ARGUMENT)
    assert [field for field, _ in _violations(refused)] == ["max_sessions"]
    assert await _get(rest, sponsor, campaign_id) == cleared

    # Activate: funded first (here by the platform; the console's Stripe path is covered by the checkout tests),
    # then the console's body-less POST.
    await _fund_from_platform(rest, admin, campaign_id)
    active = _ok(await rest.post(f"{path}/activate", headers=console))["campaign"]
    assert active["status"] == "CAMPAIGN_STATUS_ACTIVE"
    assert await _listed_ids(rest, sponsor, "/v1/campaigns/?status=active") == [campaign_id]
    assert await _listed_ids(rest, sponsor, "/v1/campaigns/?status=draft") == []


async def test_the_lifecycle_over_rest(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person, admin: Person
) -> None:
    campaign = await _create(rest, sponsor, incentives.charger)
    base = f"/v1/campaigns/{campaign['id']}"

    # A sponsor cannot activate before paying (the console posts with no body).
    _refused(
        await rest.post(f"{base}/activate", headers=_auth(sponsor)),
        400,
        GRPC_FAILED_PRECONDITION,
        "CAMPAIGN_NOT_FUNDED",
    )
    paused_draft = _refused(
        await rest.post(f"{base}/pause?reason=why", headers=_auth(sponsor)),
        400,
        GRPC_FAILED_PRECONDITION,
        "INVALID_TRANSITION",
    )
    assert _error_metadata(paused_draft) == {"from": "CAMPAIGN_STATUS_DRAFT", "to": "CAMPAIGN_STATUS_PAUSED"}
    resumed_draft = _refused(
        await rest.post(f"{base}/resume", json={}, headers=_auth(sponsor)),
        400,
        GRPC_FAILED_PRECONDITION,
        "INVALID_TRANSITION",
    )
    assert _error_metadata(resumed_draft) == {"from": "CAMPAIGN_STATUS_DRAFT", "to": "CAMPAIGN_STATUS_ACTIVE"}
    assert (await _get(rest, sponsor, campaign["id"]))["status"] == "CAMPAIGN_STATUS_DRAFT"

    # Nor can an admin: no campaign grants without money. The admin funds it from the platform first.
    _refused(
        await rest.post(f"{base}/activate", json={}, headers=_auth(admin)),
        400,
        GRPC_FAILED_PRECONDITION,
        "CAMPAIGN_NOT_FUNDED",
    )
    await _fund_from_platform(rest, admin, campaign["id"])
    active = _ok(await rest.post(f"{base}/activate", json={}, headers=_auth(admin)))["campaign"]
    assert (active["status"], active["funding_status"]) == ("CAMPAIGN_STATUS_ACTIVE", "FUNDING_STATUS_FUNDED")
    twice = _refused(
        await rest.post(f"{base}/activate", headers=_auth(admin)), 400, GRPC_FAILED_PRECONDITION, "INVALID_TRANSITION"
    )
    assert _error_metadata(twice) == {"from": "CAMPAIGN_STATUS_ACTIVE", "to": "CAMPAIGN_STATUS_ACTIVE"}

    # No edits while active.
    for method in ("PATCH", "PUT"):
        locked = _refused(
            await rest.request(method, base, json={"name": "Edited live"}, headers=_auth(sponsor)),
            400,
            GRPC_FAILED_PRECONDITION,
            "CAMPAIGN_NOT_EDITABLE",
        )
        assert _error_metadata(locked) == {"status": "CAMPAIGN_STATUS_ACTIVE"}
    assert (await _get(rest, sponsor, campaign["id"]))["name"] == "REST campaign"

    # Pause with the console's query parameter (URLSearchParams encodes a space as '+').
    paused = _ok(await rest.post(f"{base}/pause?reason=Holiday+weekend%21", headers=_auth(sponsor)))["campaign"]
    assert (paused["status"], paused["pause_reason"]) == ("CAMPAIGN_STATUS_PAUSED", "Holiday weekend!")
    _refused(
        await rest.post(f"{base}/pause", headers=_auth(sponsor)), 400, GRPC_FAILED_PRECONDITION, "INVALID_TRANSITION"
    )
    edited = _ok(await rest.patch(base, json={"name": "Edited while paused"}, headers=_auth(sponsor)))["campaign"]
    assert (edited["name"], edited["status"]) == ("Edited while paused", "CAMPAIGN_STATUS_PAUSED")

    resumed = _ok(await rest.post(f"{base}/resume", json={}, headers=_auth(sponsor)))["campaign"]
    assert resumed["status"] == "CAMPAIGN_STATUS_ACTIVE"
    assert resumed["pause_reason"] == "Holiday weekend!"  # the reason of the last pause is kept
    again = _refused(
        await rest.post(f"{base}/resume", headers=_auth(sponsor)), 400, GRPC_FAILED_PRECONDITION, "INVALID_TRANSITION"
    )
    assert _error_metadata(again) == {"from": "CAMPAIGN_STATUS_ACTIVE", "to": "CAMPAIGN_STATUS_ACTIVE"}
    assert await _get(rest, sponsor, campaign["id"]) == resumed


async def test_an_update_mask_clears_fields_and_put_is_an_alias(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person
) -> None:
    end = _rfc3339(datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30))
    campaign = await _create(
        rest, sponsor, incentives.charger, end_date=end, max_sessions=50, description="Night owls", priority=7
    )
    assert (campaign["end_date"], campaign["max_sessions"]) == (end, 50)
    path = f"/v1/campaigns/{campaign['id']}"

    # Without a mask, what is sent is written and nothing is cleared.
    renamed = _ok(await rest.patch(path, json={"name": "Renamed"}, headers=_auth(sponsor)))["campaign"]
    assert (renamed["name"], renamed["end_date"], renamed["max_sessions"]) == ("Renamed", end, 50)
    assert (renamed["description"], renamed["priority"]) == ("Night owls", 7)

    # With a mask, a listed field left unset is cleared: open-ended, unlimited.
    cleared = _ok(await rest.patch(path, json={"update_mask": "end_date,max_sessions"}, headers=_auth(sponsor)))[
        "campaign"
    ]
    assert "end_date" not in cleared
    assert "max_sessions" not in cleared
    assert (cleared["name"], cleared["description"], cleared["priority"]) == ("Renamed", "Night owls", 7)

    # The mask as a query parameter: clears the description and the priority (→ 100); also in lowerCamelCase.
    reset = _ok(await rest.patch(f"{path}?update_mask=description,priority", json={}, headers=_auth(sponsor)))
    assert (reset["campaign"]["description"], reset["campaign"]["priority"]) == ("", 100)
    camel = _ok(await rest.patch(f"{path}?update_mask=maxSessions", json={"max_sessions": 9}, headers=_auth(sponsor)))[
        "campaign"
    ]
    assert camel["max_sessions"] == 9

    # PUT, as the console sends it; a new budget is re-split into fee and net.
    put = _ok(
        await rest.put(path, json={"budget_cents": 20_000, "cost_per_session_cents": 250}, headers=_auth(sponsor))
    )["campaign"]
    assert (put["gross_funding_cents"], put["platform_fee_cents"], put["budget_cents"]) == (20_000, 4_000, 16_000)
    assert (put["cost_per_session_cents"], put["name"], put["max_sessions"]) == (250, "Renamed", 9)
    # The sponsor's identity is not editable: UpdateCampaignRequest has no sponsor_* field, so EditCampaign
    # ignores the key and it stays what it was.
    ignored = _ok(await rest.put(path, json={"sponsor_name": "Someone else"}, headers=_auth(sponsor)))["campaign"]
    assert ignored["sponsor_name"] == "Volta Test"
    after = await _get(rest, sponsor, campaign["id"])
    assert {k: v for k, v in after.items() if k != "updated_at"} == {k: v for k, v in put.items() if k != "updated_at"}


async def test_list_campaigns_pages_and_filters_by_status(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person, admin: Person
) -> None:
    oldest = await _create(rest, sponsor, incentives.charger, name="One")
    middle = await _create(rest, sponsor, incentives.charger, name="Two")
    newest = await _create(rest, sponsor, incentives.charger, name="Three")
    await _fund_from_platform(rest, admin, middle["id"])
    _ok(await rest.post(f"/v1/campaigns/{middle['id']}/activate", headers=_auth(admin)))

    first = _ok(await rest.get("/v1/campaigns/?limit=2", headers=_auth(sponsor)))
    assert [c["id"] for c in first["campaigns"]] == [newest["id"], middle["id"]]
    assert first["count"] == 2
    assert first["next_page_token"] != ""
    by_token = _ok(
        await rest.get(f"/v1/campaigns?page_size=2&page_token={first['next_page_token']}", headers=_auth(sponsor))
    )
    assert ([c["id"] for c in by_token["campaigns"]], by_token["count"]) == ([oldest["id"]], 1)
    assert by_token["next_page_token"] == ""
    by_offset = _ok(await rest.get("/v1/campaigns?limit=2&offset=2", headers=_auth(sponsor)))
    assert ([c["id"] for c in by_offset["campaigns"]], by_offset["next_page_token"]) == ([oldest["id"]], "")
    skipped = _ok(await rest.get("/v1/campaigns?limit=1&offset=1", headers=_auth(sponsor)))
    assert [c["id"] for c in skipped["campaigns"]] == [middle["id"]]
    assert skipped["next_page_token"] != ""
    both = f"/v1/campaigns?offset=1&page_token={first['next_page_token']}"
    _refused(await rest.get(both, headers=_auth(sponsor)), 400, GRPC_INVALID_ARGUMENT, "INVALID_ARGUMENT")
    _refused(await rest.get("/v1/campaigns?page_token=bogus", headers=_auth(sponsor)), 400, GRPC_INVALID_ARGUMENT)
    _refused(await rest.get("/v1/campaigns?limit=101", headers=_auth(sponsor)), 400, GRPC_INVALID_ARGUMENT)

    assert await _listed_ids(rest, sponsor, "/v1/campaigns/?status=CAMPAIGN_STATUS_ACTIVE") == [middle["id"]]
    assert await _listed_ids(rest, sponsor, "/v1/campaigns?status=CAMPAIGN_STATUS_DRAFT") == [
        newest["id"],
        oldest["id"],
    ]
    assert await _listed_ids(rest, sponsor, "/v1/campaigns?status=CAMPAIGN_STATUS_PAUSED") == []
    empty = _ok(await rest.get("/v1/campaigns?status=CAMPAIGN_STATUS_PAUSED", headers=_auth(sponsor)))
    assert empty == {"campaigns": [], "count": 0, "next_page_token": ""}  # zero and empty values are printed
    # The console's lower-case words.
    assert await _listed_ids(rest, sponsor, "/v1/campaigns/?status=active") == [middle["id"]]
    assert await _listed_ids(rest, sponsor, "/v1/campaigns/?status=draft") == [newest["id"], oldest["id"]]
    assert await _listed_ids(rest, sponsor, "/v1/campaigns/?status=completed") == []
    refused = _refused(await rest.get("/v1/campaigns/?status=live", headers=_auth(sponsor)), 400, GRPC_INVALID_ARGUMENT)
    assert ("status", "string.in") in _violations(refused)


async def test_budget_and_grants_report_what_was_paid(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person, person: NewPerson
) -> None:
    # 123¢ per session out of 8 000¢ net, at most 70 sessions.
    campaign = await incentives.active(sponsor, cost_per_session_cents=123, max_sessions=70, name="Reported")
    drivers = [await person(), await person()]
    sessions = [incentives.session(d.user_id) for d in drivers]
    for session in sessions:
        reply = await incentives.evaluate(session)
        assert reply.outcome == pb.EVALUATION_OUTCOME_GRANTED, reply
        assert reply.grant.campaign_id == campaign.id
    base = f"/v1/campaigns/{campaign.id}"

    budget = _ok(await rest.get(f"{base}/budget", headers=_auth(sponsor)))
    assert budget == {
        "budget_cents": 8_000,
        "spent_cents": 246,
        "remaining_cents": 7_754,
        "pct_used": 3.1,  # 3.075 % rounded half-up to one decimal
        "sessions_granted": 2,
        "max_sessions": 70,
        "cost_per_session_cents": 123,
        "remaining_sessions": 63,  # floor(7 754 / 123); max_sessions would still allow 68
        "gross_funding_cents": 10_000,
        "platform_fee_cents": 2_000,
    }

    grants = _ok(await rest.get(f"{base}/grants", headers=_auth(sponsor)))
    assert (grants["total"], grants["count"], grants["next_page_token"]) == (2, 2, "")
    listed = grants["grants"]
    assert [g["session_event_id"] for g in listed] == [sessions[1].session_id, sessions[0].session_id]  # newest first
    assert [g["driver_user_id"] for g in listed] == [drivers[1].user_id, drivers[0].user_id]
    for grant in listed:
        assert (grant["campaign_id"], grant["campaign_name"], grant["amount_cents"]) == (campaign.id, "Reported", 123)
        assert (grant["charger_id"], grant["duration_minutes"], grant["reward_kind"]) == (
            incentives.charger,
            30,
            "REWARD_KIND_CASH",
        )
        assert grant["status"] in ("GRANT_STATUS_PENDING", "GRANT_STATUS_GRANTED")  # the ledger credit is async
        assert "clawed_back_at" not in grant

    page = _ok(await rest.get(f"{base}/grants?limit=1", headers=_auth(sponsor)))
    assert (page["total"], page["count"], [g["id"] for g in page["grants"]]) == (2, 1, [listed[0]["id"]])
    rest_of = _ok(
        await rest.get(f"{base}/grants?page_size=1&page_token={page['next_page_token']}", headers=_auth(sponsor))
    )
    assert ([g["id"] for g in rest_of["grants"]], rest_of["next_page_token"]) == ([listed[1]["id"]], "")
    offset = _ok(await rest.get(f"{base}/grants?limit=5&offset=1", headers=_auth(sponsor)))
    assert (offset["total"], offset["count"]) == (2, 1)
    none = _ok(await rest.get(f"{base}/grants?status=GRANT_STATUS_CLAWED_BACK", headers=_auth(sponsor)))
    assert none == {"grants": [], "total": 0, "count": 0, "next_page_token": ""}

    # Pause, lift the session limit with a mask, and the report follows.
    _ok(await rest.post(f"{base}/pause?reason=review", headers=_auth(sponsor)))
    _ok(await rest.patch(base, json={"update_mask": "max_sessions"}, headers=_auth(sponsor)))
    unlimited = _ok(await rest.get(f"{base}/budget", headers=_auth(sponsor)))
    assert "max_sessions" not in unlimited
    assert unlimited["remaining_sessions"] == 63
    _ok(await rest.patch(base, json={"max_sessions": 3}, headers=_auth(sponsor)))
    capped = _ok(await rest.get(f"{base}/budget", headers=_auth(sponsor)))
    assert (capped["max_sessions"], capped["remaining_sessions"]) == (3, 1)


async def test_an_unfunded_campaigns_budget_shows_no_payment_yet(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person
) -> None:
    campaign = await _create(rest, sponsor, incentives.charger, cost_per_session_cents=300)
    budget = _ok(await rest.get(f"/v1/campaigns/{campaign['id']}/budget", headers=_auth(sponsor)))
    assert budget == {
        "budget_cents": 8_000,
        "spent_cents": 0,
        "remaining_cents": 8_000,
        "pct_used": 0,
        "sessions_granted": 0,
        "cost_per_session_cents": 300,
        "remaining_sessions": 26,
        "gross_funding_cents": 0,
        "platform_fee_cents": 0,
    }


async def test_checkout_opens_one_stripe_session_and_returns_it_again(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person, stripe_fake: FakeStripe
) -> None:
    campaign = await _create(rest, sponsor, incentives.charger, budget_cents=25_000)
    path = f"/v1/campaigns/{campaign['id']}/checkout"

    opened = _ok(await rest.post(path, json={}, headers=_auth(sponsor)))
    assert opened["status"] == "CHECKOUT_STATUS_CREATED"
    assert opened["session_id"].startswith("cs_test_")
    assert opened["checkout_url"] == f"{stripe_fake.base_url}/c/pay/{opened['session_id']}"
    assert (opened["gross_cents"], opened["platform_fee_cents"], opened["net_budget_cents"]) == (25_000, 5_000, 20_000)
    stripe_session = stripe_fake.checkout_session(opened["session_id"])
    assert stripe_session["amount_total"] == 25_000
    assert stripe_session["metadata"]["campaign_id"] == campaign["id"]
    assert stripe_session["success_url"].endswith(f"/campaigns/{campaign['id']}?funded=true")

    again = _ok(await rest.post(path, headers=_auth(sponsor)))  # no body, as the console sends it
    assert again["status"] == "CHECKOUT_STATUS_ALREADY_PENDING"
    assert (again["checkout_url"], again["session_id"]) == (opened["checkout_url"], opened["session_id"])
    assert again["gross_cents"] == 25_000
    mine = [s for s in stripe_fake.checkout_sessions if s["metadata"].get("campaign_id") == campaign["id"]]
    assert len(mine) == 1

    pending = await _get(rest, sponsor, campaign["id"])
    assert (pending["status"], pending["funding_status"]) == ("CAMPAIGN_STATUS_DRAFT", "FUNDING_STATUS_PENDING")
    # The amount being paid can no longer change, and paying is still required to activate.
    locked = _refused(
        await rest.patch(f"/v1/campaigns/{campaign['id']}", json={"budget_cents": 30_000}, headers=_auth(sponsor)),
        400,
        GRPC_FAILED_PRECONDITION,
        "BUDGET_LOCKED",
    )
    assert _error_metadata(locked) == {"field": "budget_cents"}
    kind = _refused(
        await rest.patch(
            f"/v1/campaigns/{campaign['id']}", json={"reward_kind": "REWARD_KIND_NOVA"}, headers=_auth(sponsor)
        ),
        400,
        GRPC_FAILED_PRECONDITION,
        "BUDGET_LOCKED",
    )
    assert _error_metadata(kind) == {"field": "reward_kind"}
    _refused(
        await rest.post(f"/v1/campaigns/{campaign['id']}/activate", headers=_auth(sponsor)),
        400,
        GRPC_FAILED_PRECONDITION,
        "CAMPAIGN_NOT_FUNDED",
    )
    assert await _get(rest, sponsor, campaign["id"]) == pending


async def _pay_checkout(rest: httpx.AsyncClient, stripe_fake: FakeStripe, session_id: str) -> JsonObject:
    """The sponsor pays at (the fake) Stripe, and Stripe posts its signed webhook to the gateway."""
    completed = stripe_fake.complete_checkout_session(session_id)
    payload, signature = stripe_fake.signed_event("checkout.session.completed", completed)
    reply = await rest.post(
        "/v1/wallet/stripe/webhook",
        content=payload,
        headers={"Content-Type": "application/json", "Stripe-Signature": signature},
    )
    return _ok(reply)


async def _once_funded(rest: httpx.AsyncClient, who: Person, campaign_id: str) -> JsonObject:
    """The campaign once the ledger has told incentives about the payment (through its outbox)."""

    async def funded() -> JsonObject:
        campaign = await _get(rest, who, campaign_id)
        assert campaign["funding_status"] == "FUNDING_STATUS_FUNDED", campaign
        return campaign

    funded_campaign: JsonObject = await eventually(funded)
    return funded_campaign


async def test_paying_the_checkout_funds_and_activates_the_campaign(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person, stripe_fake: FakeStripe
) -> None:
    campaign = await _create(rest, sponsor, incentives.charger, budget_cents=25_000)
    opened = _ok(await rest.post(f"/v1/campaigns/{campaign['id']}/checkout", json={}, headers=_auth(sponsor)))
    webhook = await _pay_checkout(rest, stripe_fake, opened["session_id"])
    assert webhook["outcome"] == "WEBHOOK_OUTCOME_PROCESSED"

    funded = await _once_funded(rest, sponsor, campaign["id"])
    assert (funded["status"], funded["funding_status"]) == ("CAMPAIGN_STATUS_ACTIVE", "FUNDING_STATUS_FUNDED")
    assert (funded["gross_funding_cents"], funded["platform_fee_cents"], funded["budget_cents"]) == (
        25_000,
        5_000,
        20_000,
    )
    assert funded["funded_at"].endswith("Z")
    budget = _ok(await rest.get(f"/v1/campaigns/{campaign['id']}/budget", headers=_auth(sponsor)))
    assert (budget["gross_funding_cents"], budget["platform_fee_cents"], budget["budget_cents"]) == (
        25_000,
        5_000,
        20_000,
    )
    again = await rest.post(f"/v1/campaigns/{campaign['id']}/checkout", json={}, headers=_auth(sponsor))
    _refused(again, 400, GRPC_FAILED_PRECONDITION, "CAMPAIGN_ALREADY_FUNDED")


async def test_raising_the_reward_above_the_budget_of_a_pending_checkout_is_refused(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person
) -> None:
    campaign = await _create(rest, sponsor, incentives.charger)  # 8 000¢ net
    path = f"/v1/campaigns/{campaign['id']}"
    _ok(await rest.post(f"{path}/checkout", json={}, headers=_auth(sponsor)))
    unpayable = await rest.patch(path, json={"cost_per_session_cents": 9_000}, headers=_auth(sponsor))
    refused = _refused(unpayable, 400, GRPC_INVALID_ARGUMENT, "BUDGET_TOO_SMALL")
    assert ("cost_per_session_cents", "") in _violations(refused) or ("budget_cents", "") in _violations(refused)
    assert (await _get(rest, sponsor, campaign["id"]))["cost_per_session_cents"] == 100


async def test_checkout_of_a_funded_campaign_is_refused(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person
) -> None:
    funded = await incentives.active(sponsor)
    reply = await rest.post(f"/v1/campaigns/{funded.id}/checkout", json={}, headers=_auth(sponsor))
    _refused(reply, 400, GRPC_FAILED_PRECONDITION, "CAMPAIGN_ALREADY_FUNDED")
    # Funding activated the draft: the sponsor's own activate now has nothing to do.
    after = await _get(rest, sponsor, funded.id)
    assert (after["status"], after["funding_status"]) == ("CAMPAIGN_STATUS_ACTIVE", "FUNDING_STATUS_FUNDED")
    assert after["funded_at"].endswith("Z")
    _refused(
        await rest.post(f"/v1/campaigns/{funded.id}/activate", headers=_auth(sponsor)),
        400,
        GRPC_FAILED_PRECONDITION,
        "INVALID_TRANSITION",
    )


# --- 4. the driver's side ------------------------------------------------------------------------------------


async def _driver_campaign(rest: httpx.AsyncClient, driver: Person, query: str, campaign_id: str) -> JsonObject | None:
    """The campaign as the driver's "earn here" list shows it at that place, following every page."""
    token = ""
    for _ in range(50):
        suffix = f"&page_token={token}" if token else ""
        page = _ok(await rest.get(f"/v1/campaigns/driver/active?{query}&page_size=100{suffix}", headers=_auth(driver)))
        for item in page["campaigns"]:
            if item["id"] == campaign_id:
                found: JsonObject = item
                return found
        token = page["next_page_token"]
        if not token:
            return None
    raise AssertionError("more than 50 pages of driver campaigns")


def _a_lonely_point() -> tuple[float, float]:
    """A random point in the plains (Nebraska, Kansas), far from every other test's sessions and campaigns."""
    return 40.0 + random.uniform(0, 3), -100.0 + random.uniform(0, 3)


async def test_a_driver_sees_a_geo_campaign_only_near_it(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person, driver: Person, person: NewPerson
) -> None:
    lat, lng = _a_lonely_point()
    campaign = await incentives.active(
        sponsor,
        name="Plains bonus",
        sponsor_name="Prairie Power",
        description="Charge here, earn $2.50",
        cost_per_session_cents=250,
        rules=pb.CampaignRules(geo_center_lat=lat, geo_center_lng=lng, geo_radius_m=2_000),
        caps=pb.CampaignCaps(per_campaign=1),
    )
    near = f"lat={lat + 0.009}&lng={lng}"  # ~1 km north of the centre
    far = f"lat={lat + 0.1}&lng={lng}"  # ~11 km north

    seen = await _driver_campaign(rest, driver, near, campaign.id)
    assert seen is not None
    assert (seen["name"], seen["sponsor_name"], seen["description"]) == (
        "Plains bonus",
        "Prairie Power",
        "Charge here, earn $2.50",
    )
    assert (seen["reward_cents"], seen["reward_kind"], seen["campaign_type"]) == (250, "REWARD_KIND_CASH", "custom")
    assert (seen["eligible"], seen["min_duration_minutes"], seen["time_zone"]) == (True, 15, "America/Chicago")
    assert (seen["time_start"], seen["time_end"]) == ("", "")
    assert "ineligible_reason" not in seen
    assert "end_date" not in seen
    assert await _driver_campaign(rest, driver, far, campaign.id) is None
    _refused(
        await rest.get(f"/v1/campaigns/driver/active?lat={lat}", headers=_auth(driver)), 400, GRPC_INVALID_ARGUMENT
    )

    # One grant per driver: after it, this driver still sees the campaign, no longer eligible; others are.
    granted = await incentives.evaluate(incentives.session(driver.user_id, lat=lat, lng=lng))
    assert granted.outcome == pb.EVALUATION_OUTCOME_GRANTED, granted
    assert granted.grant.campaign_id == campaign.id
    capped = await _driver_campaign(rest, driver, near, campaign.id)
    assert capped is not None
    assert (capped["eligible"], capped["ineligible_reason"]) == (False, "RULE_FAILURE_CAP_PER_DRIVER_PER_CAMPAIGN")
    newcomer = await _driver_campaign(rest, await person(), near, campaign.id)
    assert newcomer is not None and newcomer["eligible"] is True

    # A paused campaign is not offered.
    _ok(await rest.post(f"/v1/campaigns/{campaign.id}/pause?reason=done", headers=_auth(sponsor)))
    assert await _driver_campaign(rest, driver, near, campaign.id) is None


async def test_sponsors_are_refused_the_drivers_methods(rest: httpx.AsyncClient, sponsor: Person) -> None:
    for path in ("/v1/campaigns/driver/active", "/v1/charging-sessions/reputation"):
        _refused(await rest.get(path, headers=_auth(sponsor)), 403, GRPC_PERMISSION_DENIED, "PERMISSION_DENIED")


async def _reputation(rest: httpx.AsyncClient, driver: Person) -> JsonObject:
    return _ok(await rest.get("/v1/charging-sessions/reputation", headers=_auth(driver)))


async def _reputation_once_credited(rest: httpx.AsyncClient, driver: Person, points: int) -> JsonObject:
    """The driver's reputation once it holds `points`: a grant counts when the ledger has credited it."""

    async def credited() -> JsonObject:
        reputation = await _reputation(rest, driver)
        assert reputation["points"] == points, reputation
        return reputation

    return await eventually(credited)


async def test_reputation_grows_with_grants_and_unrewarded_sessions(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person, driver: Person
) -> None:
    assert await _reputation(rest, driver) == {
        "points": 0,
        "tier": "Bronze",
        "tier_color": "#78716c",
        "next_tier": "Silver",
        "points_to_next": 100,
        "progress_to_next": 0,
        "streak_days": 0,
    }

    await incentives.active(sponsor, cost_per_session_cents=120)
    granted = await incentives.evaluate(incentives.session(driver.user_id))
    assert granted.outcome == pb.EVALUATION_OUTCOME_GRANTED, granted
    after_grant = await _reputation_once_credited(rest, driver, 120)
    assert (after_grant["points"], after_grant["tier"], after_grant["tier_color"]) == (120, "Silver", "#64748b")
    assert (after_grant["next_tier"], after_grant["points_to_next"]) == ("Gold", 180)
    assert after_grant["progress_to_next"] == pytest.approx(0.1)  # (120 - 100) / (300 - 100)

    # A session no campaign pays (another charger): +5 when its quality score is above 30, else nothing.
    elsewhere = f"charger-none-{uuid.uuid4().hex[:12]}"
    last = incentives.session(driver.user_id, charger_id=elsewhere, quality_score=31)
    unrewarded = await incentives.evaluate(last)
    assert unrewarded.outcome == pb.EVALUATION_OUTCOME_NO_MATCH, unrewarded
    assert (await _reputation(rest, driver))["points"] == 125
    poor = await incentives.evaluate(incentives.session(driver.user_id, charger_id=elsewhere, quality_score=30))
    assert poor.outcome == pb.EVALUATION_OUTCOME_NO_MATCH, poor
    final = await _reputation(rest, driver)
    today = datetime.datetime.now(CHICAGO).date()
    assert (final["points"], final["tier"], final["points_to_next"]) == (125, "Silver", 175)
    assert final["progress_to_next"] == pytest.approx(0.125)
    # Sessions ended today (the driver's default zone, America/Chicago): a one-day streak. (Had they ended just
    # before local midnight, today has none: 0.)
    ended = last.session_end.ToDatetime(tzinfo=datetime.UTC).astimezone(CHICAGO).date()
    assert final["streak_days"] == (1 if ended == today else 0)
    _refused(
        await rest.get("/v1/charging-sessions/reputation?time_zone=Mars/Olympus", headers=_auth(driver)),
        400,
        GRPC_INVALID_ARGUMENT,
        "UNKNOWN_TIME_ZONE",
    )


async def test_reputation_reaches_platinum(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person, driver: Person
) -> None:
    await incentives.active(sponsor, cost_per_session_cents=700)
    granted = await incentives.evaluate(incentives.session(driver.user_id))
    assert granted.outcome == pb.EVALUATION_OUTCOME_GRANTED, granted
    top = await _reputation_once_credited(rest, driver, 700)
    assert (top["points"], top["tier"], top["tier_color"], top["progress_to_next"]) == (700, "Platinum", "#06b6d4", 1)
    assert "next_tier" not in top
    assert "points_to_next" not in top


# --- more of the lifecycle -------------------------------------------------------------------------------------


async def test_a_campaign_past_its_end_date_cannot_be_funded_or_activated(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person, admin: Person, stripe_fake: FakeStripe
) -> None:
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2)
    campaign = await _create(
        rest,
        sponsor,
        incentives.charger,
        start_date=_rfc3339(start),
        end_date=_rfc3339(start + datetime.timedelta(days=1)),
    )
    base = f"/v1/campaigns/{campaign['id']}"
    sessions_before = len(stripe_fake.checkout_sessions)
    _refused(
        await rest.post(f"{base}/checkout", json={}, headers=_auth(sponsor)),
        400,
        GRPC_FAILED_PRECONDITION,
        "CAMPAIGN_EXPIRED",
    )
    _refused(
        await rest.post(f"{base}/activate", json={}, headers=_auth(admin)),
        400,
        GRPC_FAILED_PRECONDITION,
        "CAMPAIGN_EXPIRED",
    )
    assert len(stripe_fake.checkout_sessions) == sessions_before  # no payment was offered
    after = await _get(rest, sponsor, campaign["id"])
    assert (after["status"], after["funding_status"]) == ("CAMPAIGN_STATUS_DRAFT", "FUNDING_STATUS_UNFUNDED")


async def test_a_campaign_that_spent_its_budget_is_exhausted(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person, person: NewPerson
) -> None:
    # 250¢ gross → 200¢ net: two rewards of 100¢.
    campaign = await incentives.active(sponsor, budget_cents=250)
    for _ in range(2):
        reply = await incentives.evaluate(incentives.session((await person()).user_id))
        assert reply.outcome == pb.EVALUATION_OUTCOME_GRANTED, reply
    base = f"/v1/campaigns/{campaign.id}"
    after = await _get(rest, sponsor, campaign.id)
    assert (after["status"], after["spent_cents"], after["remaining_cents"]) == ("CAMPAIGN_STATUS_EXHAUSTED", 200, 0)
    budget = _ok(await rest.get(f"{base}/budget", headers=_auth(sponsor)))
    assert (budget["pct_used"], budget["remaining_sessions"], budget["sessions_granted"]) == (100, 0, 2)
    paused = _refused(
        await rest.post(f"{base}/pause", headers=_auth(sponsor)), 400, GRPC_FAILED_PRECONDITION, "INVALID_TRANSITION"
    )
    assert _error_metadata(paused) == {"from": "CAMPAIGN_STATUS_EXHAUSTED", "to": "CAMPAIGN_STATUS_PAUSED"}
    # An exhausted campaign may be edited (e.g. a higher max_sessions), but no budget means no resume.
    edited = _ok(await rest.patch(base, json={"name": "More"}, headers=_auth(sponsor)))["campaign"]
    assert (edited["name"], edited["status"]) == ("More", "CAMPAIGN_STATUS_EXHAUSTED")
    _refused(
        await rest.post(f"{base}/resume", json={}, headers=_auth(sponsor)),
        400,
        GRPC_FAILED_PRECONDITION,
        "BUDGET_EXHAUSTED",
    )


async def test_a_campaign_exhausted_by_max_sessions_raises_its_cap_and_resumes(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person, person: NewPerson
) -> None:
    # 10,000¢ gross → 8,000¢ net, one session allowed: exhausted by the cap with 7,900¢ left.
    campaign = await incentives.active(sponsor, max_sessions=1)
    assert (await incentives.evaluate(incentives.session((await person()).user_id))).outcome == (
        pb.EVALUATION_OUTCOME_GRANTED
    )
    base = f"/v1/campaigns/{campaign.id}"
    after = await _get(rest, sponsor, campaign.id)
    assert (after["status"], after["remaining_cents"]) == ("CAMPAIGN_STATUS_EXHAUSTED", 7_900)
    _refused(
        await rest.post(f"{base}/resume", json={}, headers=_auth(sponsor)),
        400,
        GRPC_FAILED_PRECONDITION,
        "BUDGET_EXHAUSTED",
    )
    raised = _ok(await rest.patch(base, json={"max_sessions": 3}, headers=_auth(sponsor)))["campaign"]
    assert (raised["max_sessions"], raised["status"]) == (3, "CAMPAIGN_STATUS_EXHAUSTED")
    resumed = _ok(await rest.post(f"{base}/resume", json={}, headers=_auth(sponsor)))["campaign"]
    assert resumed["status"] == "CAMPAIGN_STATUS_ACTIVE"
    granted = await incentives.evaluate(incentives.session((await person()).user_id))
    assert (granted.outcome, granted.grant.campaign_id) == (pb.EVALUATION_OUTCOME_GRANTED, campaign.id)


async def test_resume_needs_room_for_one_more_grant(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person, driver: Person
) -> None:
    campaign = await incentives.active(sponsor, max_sessions=2)
    granted = await incentives.evaluate(incentives.session(driver.user_id))
    assert granted.outcome == pb.EVALUATION_OUTCOME_GRANTED, granted
    base = f"/v1/campaigns/{campaign.id}"
    _ok(await rest.post(f"{base}/pause?reason=trim", headers=_auth(sponsor)))
    _refused(await rest.patch(base, json={"max_sessions": 0}, headers=_auth(sponsor)), 400, GRPC_INVALID_ARGUMENT)
    trimmed = _ok(await rest.patch(base, json={"max_sessions": 1}, headers=_auth(sponsor)))["campaign"]
    assert (trimmed["max_sessions"], trimmed["sessions_granted"]) == (1, 1)
    _refused(
        await rest.post(f"{base}/resume", json={}, headers=_auth(sponsor)),
        400,
        GRPC_FAILED_PRECONDITION,
        "BUDGET_EXHAUSTED",
    )
    assert (await _get(rest, sponsor, campaign.id))["status"] == "CAMPAIGN_STATUS_PAUSED"
    _ok(await rest.patch(base, json={"update_mask": "max_sessions"}, headers=_auth(sponsor)))
    resumed = _ok(await rest.post(f"{base}/resume", json={}, headers=_auth(sponsor)))["campaign"]
    assert resumed["status"] == "CAMPAIGN_STATUS_ACTIVE"


async def test_create_is_idempotent_on_request_id(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person
) -> None:
    body = _campaign_body(incentives.charger, request_id=str(uuid.uuid4()))
    first = _ok(await rest.post("/v1/campaigns/", json=body, headers=_auth(sponsor)))["campaign"]
    again = _ok(await rest.post("/v1/campaigns/", json=body, headers=_auth(sponsor)))["campaign"]
    assert again == first
    assert await _listed_ids(rest, sponsor) == [first["id"]]


async def test_malformed_ids_and_reasons_are_400_naming_the_field(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person, admin: Person
) -> None:
    for method, path in (("GET", "/v1/campaigns/not-a-uuid"), ("GET", "/v1/campaigns/42/budget")):
        refused = _refused(await _call(rest, method, path, sponsor), 400, GRPC_INVALID_ARGUMENT, "INVALID_ARGUMENT")
        assert [field for field, _ in _violations(refused)] == ["campaign_id"]
    campaign = await _create(rest, sponsor, incentives.charger)
    await _fund_from_platform(rest, admin, campaign["id"])
    _ok(await rest.post(f"/v1/campaigns/{campaign['id']}/activate", headers=_auth(admin)))
    too_long = await rest.post(f"/v1/campaigns/{campaign['id']}/pause?reason={'x' * 501}", headers=_auth(sponsor))
    refused = _refused(too_long, 400, GRPC_INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert [field for field, _ in _violations(refused)] == ["reason"]
    assert (await _get(rest, sponsor, campaign["id"]))["status"] == "CAMPAIGN_STATUS_ACTIVE"


# --- allowlists in the driver's "earn here" list ------------------------------------------------------------


async def _email_driver(rest: httpx.AsyncClient, twilio: FakeTwilioVerify, email: str) -> Person:
    """A driver who signs in with an email code, as the driver app does."""
    _ok(await rest.post("/v1/auth/email-otp/start", json={"email": email}))
    login = _ok(
        await rest.post("/v1/auth/email-otp/verify", json={"email": email, "code": twilio.last_code_sent_to(email)})
    )
    return Person(user_id=login["user"]["public_id"], token=login["access_token"])


async def test_a_campaign_allowlisting_driver_ids_is_listed_only_for_them(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person, driver: Person, person: NewPerson
) -> None:
    lat, lng = _a_lonely_point()
    campaign = await incentives.active(
        sponsor,
        rules=pb.CampaignRules(
            geo_center_lat=lat, geo_center_lng=lng, geo_radius_m=1_000, driver_allowlist=[driver.user_id.upper()]
        ),
    )
    here = f"lat={lat}&lng={lng}"
    listed = await _driver_campaign(rest, driver, here, campaign.id)
    assert listed is not None and listed["eligible"] is True
    assert await _driver_campaign(rest, await person(), here, campaign.id) is None
    _ok(await rest.post(f"/v1/campaigns/{campaign.id}/pause?reason=done", headers=_auth(sponsor)))


async def _email_allowlisted(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person, twilio: FakeTwilioVerify
) -> tuple[Person, pb.Campaign, float, float]:
    """A driver who signed in by email, and a geo campaign around a lonely point whose allowlist names that
    email (in capitals: emails compare case-insensitively)."""
    email = f"ev-{uuid.uuid4().hex[:10]}@example.com"
    driver = await _email_driver(rest, twilio, email)
    lat, lng = _a_lonely_point()
    campaign = await incentives.active(
        sponsor,
        rules=pb.CampaignRules(
            geo_center_lat=lat, geo_center_lng=lng, geo_radius_m=1_000, driver_allowlist=[email.upper()]
        ),
    )
    return driver, campaign, lat, lng


async def test_a_campaign_allowlisting_an_email_pays_that_driver(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person, twilio: FakeTwilioVerify, driver: Person
) -> None:
    allowed, campaign, lat, lng = await _email_allowlisted(rest, incentives, sponsor, twilio)
    try:
        stranger = await incentives.evaluate(incentives.session(driver.user_id, lat=lat, lng=lng))
        assert stranger.outcome == pb.EVALUATION_OUTCOME_NO_MATCH, stranger
        granted = await incentives.evaluate(incentives.session(allowed.user_id, lat=lat, lng=lng))
        assert granted.outcome == pb.EVALUATION_OUTCOME_GRANTED, granted
        assert granted.grant.campaign_id == campaign.id
        await _reputation_once_credited(rest, allowed, 100)
    finally:
        _ok(await rest.post(f"/v1/campaigns/{campaign.id}/pause?reason=done", headers=_auth(sponsor)))


async def test_a_driver_allowlisted_by_email_is_offered_the_campaign(
    rest: httpx.AsyncClient, incentives: Incentives, sponsor: Person, twilio: FakeTwilioVerify
) -> None:
    allowed, campaign, lat, lng = await _email_allowlisted(rest, incentives, sponsor, twilio)
    try:
        listed = await _driver_campaign(rest, allowed, f"lat={lat}&lng={lng}", campaign.id)
        assert listed is not None, "the driver allowlisted by email is not offered the campaign"
        assert listed["eligible"] is True
    finally:
        _ok(await rest.post(f"/v1/campaigns/{campaign.id}/pause?reason=done", headers=_auth(sponsor)))
