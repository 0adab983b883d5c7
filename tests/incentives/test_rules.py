"""The incentives rules without a database: each targeting rule at its boundaries, the campaign's time zone
(across midnight and both 2026 DST changes in Chicago), caps, choosing at most one campaign, reputation and
streaks. Pure functions of services/incentives/domain.py; the time is always passed in."""

from __future__ import annotations

import dataclasses
import enum
import math
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st
from nerava.incentives.v1 import incentives_pb2 as pb

from services.incentives.domain import (
    DEFAULT_MIN_DURATION_MINUTES,
    EARTH_RADIUS_M,
    CampaignCandidate,
    CampaignRuleSet,
    CampaignStatus,
    DriverCaps,
    DriverUsage,
    EvaluationOutcome,
    Failure,
    GeoCircle,
    Place,
    RuleFailure,
    SessionFacts,
    TimeWindow,
    UnknownTimeZone,
    allowlist_has_emails,
    caps_allow,
    choose_campaign,
    first_failed_rule,
    haversine_m,
    local_day,
    local_day_bounds,
    parse_time_zone,
    percent_used,
    place_admits,
    rank_candidates,
    reputation,
    reputation_points_for_session,
    simulate,
    streak_days,
)
from services.incentives.messages import campaign_candidate, candidate_result, driver_caps, reputation_message
from services.incentives.store import campaign_rule_set, session_facts

RF = pb.RuleFailure
CHICAGO = ZoneInfo("America/Chicago")
DRIVER = "3f2c9a4e-8b1d-4c7e-9a55-0d6e1f2a3b4c"
CENTER = (41.8781, -87.6298)  # downtown Chicago
NOON_WEDNESDAY = datetime(2026, 6, 10, 12, 0, tzinfo=CHICAGO)
NOW = datetime(2026, 6, 10, 18, 0, tzinfo=UTC)


def session(**changes: Any) -> SessionFacts:
    """A 30-minute session that passes every rule `rules_all()` sets."""
    base = SessionFacts(
        driver_id=DRIVER,
        started_at=NOON_WEDNESDAY,
        ended_at=NOON_WEDNESDAY + timedelta(minutes=30),
        duration_minutes=30,
        charger_id="ch-1",
        charger_network="Tesla",
        zone_id="zone-loop",
        lat=CENTER[0],
        lng=CENTER[1],
        kwh_delivered=12.5,
        max_power_kw=150.0,
        connector_type="NACS",
        quality_score=85,
        driver_completed_sessions=5,
    )
    return dataclasses.replace(base, **changes)


def starting(moment: datetime, **changes: Any) -> SessionFacts:
    return session(started_at=moment, ended_at=moment + timedelta(minutes=30), **changes)


def failure(rules: CampaignRuleSet, facts: SessionFacts, tz: Any = CHICAGO) -> int | None:
    found = first_failed_rule(rules, facts, tz)
    return found.rule if found else None


def north_of(lat: float, lng: float, metres: float) -> tuple[float, float]:
    """The point `metres` due north along the meridian (great-circle distance = R * dphi)."""
    return lat + math.degrees(metres / EARTH_RADIUS_M), lng


def campaign(campaign_id: str, **changes: Any) -> CampaignCandidate:
    base = CampaignCandidate(
        campaign_id=campaign_id,
        name=f"Campaign {campaign_id}",
        priority=100,
        created_at=datetime(2026, 5, 1, tzinfo=UTC),
        time_zone=CHICAGO,
        reward_cents=50,
        remaining_cents=10_000,
        start_date=datetime(2026, 5, 1, tzinfo=UTC),
    )
    return dataclasses.replace(base, **changes)


def tried(evaluation: Any) -> list[tuple[str, int | None]]:
    return [(c.campaign_id, c.failure.rule if c.failure else None) for c in evaluation.candidates]


# --- duration --------------------------------------------------------------------------------------------


def test_minimum_duration_defaults_to_15_minutes_and_is_inclusive() -> None:
    rules = CampaignRuleSet()
    assert rules.min_duration_minutes == DEFAULT_MIN_DURATION_MINUTES == 15
    assert campaign_rule_set(pb.CampaignRules()).min_duration_minutes == 15
    assert failure(rules, session(duration_minutes=14)) == RF.RULE_FAILURE_MIN_DURATION
    assert failure(rules, session(duration_minutes=15)) is None
    assert failure(rules, session(duration_minutes=16)) is None


def test_minimum_duration_explains_itself_in_minutes() -> None:
    found = first_failed_rule(CampaignRuleSet(), session(duration_minutes=12), CHICAGO)
    assert found == Failure(RF.RULE_FAILURE_MIN_DURATION, "duration 12 min < minimum 15 min")


def test_maximum_duration_is_inclusive() -> None:
    rules = CampaignRuleSet(max_duration_minutes=120)
    assert failure(rules, session(duration_minutes=119)) is None
    assert failure(rules, session(duration_minutes=120)) is None
    assert failure(rules, session(duration_minutes=121)) == RF.RULE_FAILURE_MAX_DURATION


# --- where -----------------------------------------------------------------------------------------------


def test_charger_rule_needs_one_of_the_listed_chargers() -> None:
    rules = CampaignRuleSet(charger_ids=frozenset({"ch-1", "ch-2"}))
    assert failure(rules, session(charger_id="ch-2")) is None
    assert failure(rules, session(charger_id="ch-3")) == RF.RULE_FAILURE_CHARGER
    assert failure(rules, session(charger_id="")) == RF.RULE_FAILURE_CHARGER  # no charger matched


def test_network_rule_is_case_insensitive() -> None:
    rules = campaign_rule_set(pb.CampaignRules(charger_networks=["tesla", "EVgo"]))
    assert failure(rules, session(charger_network="Tesla")) is None
    assert failure(rules, session(charger_network="EVGO")) is None
    assert failure(rules, session(charger_network="ChargePoint")) == RF.RULE_FAILURE_NETWORK
    assert failure(rules, session(charger_network="")) == RF.RULE_FAILURE_NETWORK


def test_zone_rule_needs_one_of_the_listed_zones() -> None:
    rules = CampaignRuleSet(zone_ids=frozenset({"zone-loop"}))
    assert failure(rules, session(zone_id="zone-loop")) is None
    assert failure(rules, session(zone_id="zone-ohare")) == RF.RULE_FAILURE_ZONE
    assert failure(rules, session(zone_id="")) == RF.RULE_FAILURE_ZONE


@pytest.mark.parametrize(("metres", "inside"), [(0, True), (499, True), (500, True), (501, False)])
def test_geo_radius_500_m_includes_499_and_500_but_not_501(metres: int, inside: bool) -> None:
    rules = CampaignRuleSet(geo=GeoCircle(CENTER[0], CENTER[1], 500))
    lat, lng = north_of(*CENTER, metres)
    assert haversine_m(*CENTER, lat, lng) == pytest.approx(metres, abs=1e-6)
    assert (failure(rules, session(lat=lat, lng=lng)) is None) is inside


def destination(lat: float, lng: float, bearing_deg: float, metres: float) -> tuple[float, float]:
    """The point `metres` away from (lat, lng) on the initial bearing, on the same sphere (direct problem)."""
    d = metres / EARTH_RADIUS_M
    phi1, lambda1, theta = math.radians(lat), math.radians(lng), math.radians(bearing_deg)
    phi2 = math.asin(math.sin(phi1) * math.cos(d) + math.cos(phi1) * math.sin(d) * math.cos(theta))
    lambda2 = lambda1 + math.atan2(
        math.sin(theta) * math.sin(d) * math.cos(phi1), math.cos(d) - math.sin(phi1) * math.sin(phi2)
    )
    return math.degrees(phi2), math.degrees(lambda2)


@given(
    st.floats(min_value=-80, max_value=80),
    st.floats(min_value=-180, max_value=180),
    st.floats(min_value=0, max_value=360),
    st.integers(min_value=10, max_value=500_000),
)
def test_a_point_exactly_on_the_circle_is_inside_and_one_metre_beyond_is_not(
    lat: float, lng: float, bearing: float, radius: int
) -> None:
    """Half of the points placed exactly on the edge come out a few nanometres beyond it in floating point;
    the rule still admits them, and still refuses a metre more."""
    rules = CampaignRuleSet(geo=GeoCircle(lat, lng, radius))
    on_edge = destination(lat, lng, bearing, radius)
    beyond = destination(lat, lng, bearing, radius + 1)
    assert failure(rules, session(lat=on_edge[0], lng=on_edge[1])) is None
    assert failure(rules, session(lat=beyond[0], lng=beyond[1])) == RF.RULE_FAILURE_GEO_RADIUS


def test_geo_radius_fails_when_the_position_is_unknown() -> None:
    rules = CampaignRuleSet(geo=GeoCircle(CENTER[0], CENTER[1], 500))
    found = first_failed_rule(rules, session(lat=None, lng=None), CHICAGO)
    assert found == Failure(RF.RULE_FAILURE_GEO_RADIUS, "position unknown")


def test_geo_radius_needs_a_centre() -> None:
    with pytest.raises(ValueError, match="geo_radius_m"):
        campaign_rule_set(pb.CampaignRules(geo_radius_m=500))
    with pytest.raises(ValueError, match="geo_radius_m"):
        campaign_rule_set(pb.CampaignRules(geo_center_lat=41.0, geo_center_lng=-87.0))
    rules = campaign_rule_set(pb.CampaignRules(geo_center_lat=41.0, geo_center_lng=-87.0, geo_radius_m=10))
    assert rules.geo == GeoCircle(41.0, -87.0, 10)


def test_haversine_one_degree_of_latitude_is_about_111_km() -> None:
    assert haversine_m(0.0, 0.0, 1.0, 0.0) == pytest.approx(EARTH_RADIUS_M * math.pi / 180)
    assert haversine_m(0.0, 0.0, 0.0, 180.0) == pytest.approx(EARTH_RADIUS_M * math.pi)
    # Chicago Loop to O'Hare, about 25.3 km as the crow flies
    assert haversine_m(41.8781, -87.6298, 41.9742, -87.9073) == pytest.approx(25_323, abs=1)


latitudes = st.floats(min_value=-90, max_value=90, allow_nan=False)
longitudes = st.floats(min_value=-180, max_value=180, allow_nan=False)


@given(latitudes, longitudes, latitudes, longitudes)
def test_haversine_is_symmetric_non_negative_and_at_most_half_the_circumference(
    lat1: float, lng1: float, lat2: float, lng2: float
) -> None:
    there = haversine_m(lat1, lng1, lat2, lng2)
    assert there == haversine_m(lat2, lng2, lat1, lng1)
    assert 0 <= there <= EARTH_RADIUS_M * math.pi + 1e-6
    assert haversine_m(lat1, lng1, lat1, lng1) == 0


@given(latitudes, longitudes, latitudes, longitudes, latitudes, longitudes)
def test_haversine_obeys_the_triangle_inequality(
    lat1: float, lng1: float, lat2: float, lng2: float, lat3: float, lng3: float
) -> None:
    direct = haversine_m(lat1, lng1, lat3, lng3)
    assert direct <= haversine_m(lat1, lng1, lat2, lng2) + haversine_m(lat2, lng2, lat3, lng3) + 1e-3


# --- when ------------------------------------------------------------------------------------------------

OFF_PEAK = CampaignRuleSet(time_window=TimeWindow.parse("22:00", "06:00"))


def chicago(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=CHICAGO)


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_window_22_to_06_in_chicago_includes_23h_and_05h_but_not_06h() -> None:
    assert failure(OFF_PEAK, starting(chicago(2026, 6, 10, 23))) is None
    assert failure(OFF_PEAK, starting(chicago(2026, 6, 11, 5))) is None
    assert failure(OFF_PEAK, starting(chicago(2026, 6, 11, 6))) == RF.RULE_FAILURE_TIME_OF_DAY


def test_window_22_to_06_edges_start_inclusive_end_exclusive() -> None:
    assert failure(OFF_PEAK, starting(chicago(2026, 6, 10, 21, 59, 59))) == RF.RULE_FAILURE_TIME_OF_DAY
    assert failure(OFF_PEAK, starting(chicago(2026, 6, 10, 22))) is None
    assert failure(OFF_PEAK, starting(chicago(2026, 6, 11, 0))) is None
    assert failure(OFF_PEAK, starting(chicago(2026, 6, 11, 5, 59, 59))) is None
    assert failure(OFF_PEAK, starting(chicago(2026, 6, 11, 6))) == RF.RULE_FAILURE_TIME_OF_DAY
    assert failure(OFF_PEAK, starting(chicago(2026, 6, 11, 12))) == RF.RULE_FAILURE_TIME_OF_DAY


def test_daytime_window_9_to_17_includes_9h_but_not_17h() -> None:
    rules = CampaignRuleSet(time_window=TimeWindow.parse("09:00", "17:00"))
    assert failure(rules, starting(chicago(2026, 6, 10, 8, 59))) == RF.RULE_FAILURE_TIME_OF_DAY
    assert failure(rules, starting(chicago(2026, 6, 10, 9))) is None
    assert failure(rules, starting(chicago(2026, 6, 10, 16, 59, 59))) is None
    assert failure(rules, starting(chicago(2026, 6, 10, 17))) == RF.RULE_FAILURE_TIME_OF_DAY


def test_window_ending_at_00_00_runs_to_midnight() -> None:
    rules = CampaignRuleSet(time_window=TimeWindow.parse("22:00", "00:00"))
    assert failure(rules, starting(chicago(2026, 6, 10, 23, 59))) is None
    assert failure(rules, starting(chicago(2026, 6, 11, 0))) == RF.RULE_FAILURE_TIME_OF_DAY


def test_window_is_read_in_the_campaign_time_zone_not_utc() -> None:
    five_am_in_chicago = starting(utc(2026, 6, 11, 10))  # 10:00 UTC = 05:00 CDT
    assert failure(OFF_PEAK, five_am_in_chicago, CHICAGO) is None
    assert failure(OFF_PEAK, five_am_in_chicago, UTC) == RF.RULE_FAILURE_TIME_OF_DAY
    found = first_failed_rule(OFF_PEAK, starting(utc(2026, 6, 10, 23)), CHICAGO)  # 18:00 CDT
    assert found == Failure(RF.RULE_FAILURE_TIME_OF_DAY, "started 18:00 America/Chicago, outside 22:00-06:00")


def test_window_22_to_06_on_the_spring_forward_night_in_chicago() -> None:
    # 2026-03-08: at 02:00 CST the clocks jump to 03:00 CDT.
    assert failure(OFF_PEAK, starting(utc(2026, 3, 8, 3, 59))) == RF.RULE_FAILURE_TIME_OF_DAY  # 21:59 CST
    assert failure(OFF_PEAK, starting(utc(2026, 3, 8, 4))) is None  # 22:00 CST
    assert failure(OFF_PEAK, starting(utc(2026, 3, 8, 7, 59))) is None  # 01:59 CST
    assert failure(OFF_PEAK, starting(utc(2026, 3, 8, 8))) is None  # 03:00 CDT
    assert failure(OFF_PEAK, starting(utc(2026, 3, 8, 10, 59))) is None  # 05:59 CDT
    # 06:00 CDT; a fixed UTC-6 offset would call it 05:00 and grant it
    assert failure(OFF_PEAK, starting(utc(2026, 3, 8, 11))) == RF.RULE_FAILURE_TIME_OF_DAY


def test_window_22_to_06_on_the_fall_back_night_in_chicago() -> None:
    # 2026-11-01: at 02:00 CDT the clocks go back to 01:00 CST; 01:30 happens twice.
    first_0130 = utc(2026, 11, 1, 6, 30)
    second_0130 = utc(2026, 11, 1, 7, 30)
    assert first_0130.astimezone(CHICAGO).time() == second_0130.astimezone(CHICAGO).time() == time(1, 30)
    assert failure(OFF_PEAK, starting(first_0130)) is None
    assert failure(OFF_PEAK, starting(second_0130)) is None
    assert failure(OFF_PEAK, starting(utc(2026, 11, 1, 11, 59))) is None  # 05:59 CST
    # 06:00 CST; a fixed UTC-5 offset would call it 07:00 too, but 11:00 UTC (05:00 CST) would be refused
    assert failure(OFF_PEAK, starting(utc(2026, 11, 1, 12))) == RF.RULE_FAILURE_TIME_OF_DAY
    assert failure(OFF_PEAK, starting(utc(2026, 11, 1, 11))) is None


def test_window_over_the_repeated_hour_admits_both_of_its_passes() -> None:
    rules = CampaignRuleSet(time_window=TimeWindow.parse("01:00", "02:00"))
    assert failure(rules, starting(utc(2026, 11, 1, 6, 15))) is None  # 01:15 CDT
    assert failure(rules, starting(utc(2026, 11, 1, 7, 15))) is None  # 01:15 CST
    assert failure(rules, starting(utc(2026, 11, 1, 8))) == RF.RULE_FAILURE_TIME_OF_DAY  # 02:00 CST


def minutes_in_window(rules: CampaignRuleSet, since: datetime, until: datetime) -> int:
    """Real minutes, walked in UTC, whose start the window admits."""
    count, moment = 0, since.astimezone(UTC)
    while moment < until:
        count += failure(rules, starting(moment)) is None
        moment += timedelta(minutes=1)
    return count


def test_off_peak_night_is_7_real_hours_in_spring_and_9_in_autumn() -> None:
    spring = minutes_in_window(OFF_PEAK, chicago(2026, 3, 7, 12), chicago(2026, 3, 8, 12))
    ordinary = minutes_in_window(OFF_PEAK, chicago(2026, 6, 10, 12), chicago(2026, 6, 11, 12))
    autumn = minutes_in_window(OFF_PEAK, chicago(2026, 10, 31, 12), chicago(2026, 11, 1, 12))
    assert (spring, ordinary, autumn) == (7 * 60, 8 * 60, 9 * 60)


minutes_of_day = st.integers(min_value=0, max_value=24 * 60 - 1)


def clock(minute_of_day: int) -> time:
    return time(minute_of_day // 60, minute_of_day % 60)


@given(minutes_of_day, minutes_of_day, minutes_of_day)
def test_window_agrees_with_a_minute_by_minute_walk_from_start_to_end(start: int, end: int, probe: int) -> None:
    if start == end:
        with pytest.raises(ValueError, match="differ"):
            TimeWindow(clock(start), clock(end))
        return
    walked = {(start + step) % 1440 for step in range((end - start) % 1440)}
    assert TimeWindow(clock(start), clock(end)).contains(clock(probe)) is (probe in walked)


@given(
    minutes_of_day,
    minutes_of_day,
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)),
)
def test_time_rule_judges_the_chicago_wall_clock_of_any_instant(start: int, end: int, started: datetime) -> None:
    if start == end:
        return
    rules = CampaignRuleSet(time_window=TimeWindow(clock(start), clock(end)))
    local = started.astimezone(CHICAGO)
    walked = {(start + step) % 1440 for step in range((end - start) % 1440)}
    inside = local.hour * 60 + local.minute in walked
    assert (failure(rules, starting(started)) is None) is inside


def test_time_window_needs_hh_mm_and_two_different_ends() -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        TimeWindow.parse("24:00", "06:00")
    with pytest.raises(ValueError, match="HH:MM"):
        TimeWindow.parse("7:00", "09:00")
    with pytest.raises(ValueError, match="differ"):
        TimeWindow.parse("06:00", "06:00")
    assert campaign_rule_set(pb.CampaignRules()).time_window is None


def test_monday_2330_chicago_session_is_a_monday_though_it_is_tuesday_in_utc() -> None:
    monday_night = starting(chicago(2026, 6, 8, 23, 30))
    assert monday_night.started_at.astimezone(UTC).isoweekday() == 2
    mondays = CampaignRuleSet(days_of_week=frozenset({1}))
    tuesdays = CampaignRuleSet(days_of_week=frozenset({2}))
    assert failure(mondays, monday_night) is None
    assert failure(tuesdays, monday_night) == RF.RULE_FAILURE_DAY_OF_WEEK
    assert failure(tuesdays, monday_night, UTC) is None


@pytest.mark.parametrize(("day", "iso"), [(8, 1), (9, 2), (10, 3), (11, 4), (12, 5), (13, 6), (14, 7)])
def test_days_of_week_are_iso_monday_1_to_sunday_7(day: int, iso: int) -> None:
    only = CampaignRuleSet(days_of_week=frozenset({iso}))
    others = CampaignRuleSet(days_of_week=frozenset(set(range(1, 8)) - {iso}))
    assert failure(only, starting(chicago(2026, 6, day, 12))) is None
    assert failure(others, starting(chicago(2026, 6, day, 12))) == RF.RULE_FAILURE_DAY_OF_WEEK


def test_weekend_rule_reads_the_day_at_midnight_edges_in_chicago() -> None:
    weekend = CampaignRuleSet(days_of_week=frozenset({6, 7}))
    assert failure(weekend, starting(chicago(2026, 6, 12, 23, 59))) == RF.RULE_FAILURE_DAY_OF_WEEK  # Fri
    assert failure(weekend, starting(chicago(2026, 6, 13, 0))) is None  # Sat 00:00
    assert failure(weekend, starting(chicago(2026, 6, 14, 23, 59))) is None  # Sun
    assert failure(weekend, starting(chicago(2026, 6, 15, 0))) == RF.RULE_FAILURE_DAY_OF_WEEK  # Mon 00:00


# --- what ------------------------------------------------------------------------------------------------


def test_minimum_power_uses_the_highest_power_seen_and_is_inclusive() -> None:
    rules = CampaignRuleSet(min_power_kw=50.0)
    assert failure(rules, session(max_power_kw=49.9)) == RF.RULE_FAILURE_MIN_POWER
    assert failure(rules, session(max_power_kw=50.0)) is None
    assert failure(rules, session(max_power_kw=50.1)) is None
    assert failure(rules, session(max_power_kw=None)) == RF.RULE_FAILURE_MIN_POWER


def test_connector_rule_is_case_insensitive() -> None:
    rules = campaign_rule_set(pb.CampaignRules(connector_types=["CCS1", "nacs"]))
    assert failure(rules, session(connector_type="NACS")) is None
    assert failure(rules, session(connector_type="ccs1")) is None
    assert failure(rules, session(connector_type="J1772")) == RF.RULE_FAILURE_CONNECTOR_TYPE
    assert failure(rules, session(connector_type="")) == RF.RULE_FAILURE_CONNECTOR_TYPE


# --- who -------------------------------------------------------------------------------------------------


def test_new_driver_campaign_pays_only_the_first_session() -> None:
    first_only = CampaignRuleSet(driver_session_count_min=1, driver_session_count_max=1)
    assert failure(first_only, session(driver_completed_sessions=1)) is None
    assert failure(first_only, session(driver_completed_sessions=2)) == RF.RULE_FAILURE_DRIVER_SESSION_COUNT_ABOVE_MAX


def test_loyalty_campaign_counts_this_session_toward_its_minimum() -> None:
    third_onwards = CampaignRuleSet(driver_session_count_min=3)
    assert (
        failure(third_onwards, session(driver_completed_sessions=2)) == RF.RULE_FAILURE_DRIVER_SESSION_COUNT_BELOW_MIN
    )
    assert failure(third_onwards, session(driver_completed_sessions=3)) is None
    assert failure(third_onwards, session(driver_completed_sessions=4000)) is None


def test_allowlist_admits_user_ids_case_insensitively() -> None:
    rules = CampaignRuleSet(driver_allowlist=frozenset({DRIVER.upper()}))
    assert not allowlist_has_emails(rules)
    assert failure(rules, session()) is None
    assert failure(rules, session(driver_id="0b9f6a52-1c1e-4a49-8d7e-5f3a2b1c0d9e")) == RF.RULE_FAILURE_DRIVER_ALLOWLIST


def test_allowlist_admits_emails_the_caller_looked_up() -> None:
    rules = campaign_rule_set(pb.CampaignRules(driver_allowlist=["Ada@Example.com"]))
    assert allowlist_has_emails(rules)
    assert failure(rules, session(driver_email="ada@example.COM")) is None
    assert failure(rules, session(driver_email="")) == RF.RULE_FAILURE_DRIVER_ALLOWLIST
    found = first_failed_rule(rules, session(driver_email="bob@example.com"), CHICAGO)
    assert found is not None
    assert "ada" not in found.detail.lower()  # the list is never echoed to another driver


def test_minimum_quality_score_is_inclusive() -> None:
    rules = CampaignRuleSet(min_quality_score=40)
    assert failure(rules, session(quality_score=39)) == RF.RULE_FAILURE_MIN_QUALITY_SCORE
    assert failure(rules, session(quality_score=40)) is None
    assert failure(rules, session(quality_score=100)) is None


def test_a_campaign_without_rules_pays_any_session_of_15_minutes() -> None:
    assert (
        failure(CampaignRuleSet(), session(charger_id="", charger_network="", zone_id="", lat=None, lng=None)) is None
    )


# --- order -----------------------------------------------------------------------------------------------


def rules_all() -> CampaignRuleSet:
    return CampaignRuleSet(
        min_duration_minutes=20,
        max_duration_minutes=60,
        charger_ids=frozenset({"ch-1"}),
        charger_networks=frozenset({"Tesla"}),
        zone_ids=frozenset({"zone-loop"}),
        geo=GeoCircle(CENTER[0], CENTER[1], 500),
        time_window=TimeWindow.parse("09:00", "17:00"),
        days_of_week=frozenset({3}),
        min_power_kw=50.0,
        connector_types=frozenset({"NACS"}),
        driver_session_count_min=3,
        driver_session_count_max=10,
        driver_allowlist=frozenset({DRIVER}),
        min_quality_score=60,
    )


def test_rules_are_reported_in_the_documented_order() -> None:
    """A session failing every rule; fixing one at a time walks through the RuleFailure enum's order."""
    rules = rules_all()
    far = north_of(*CENTER, 5_000)
    bad = starting(
        chicago(2026, 6, 11, 20),  # a Thursday evening
        duration_minutes=10,
        charger_id="ch-9",
        charger_network="EVgo",
        zone_id="zone-ohare",
        lat=far[0],
        lng=far[1],
        max_power_kw=7.0,
        connector_type="J1772",
        driver_completed_sessions=1,
        driver_id="0b9f6a52-1c1e-4a49-8d7e-5f3a2b1c0d9e",
        quality_score=10,
    )
    fixes: list[tuple[pb.RuleFailure, dict[str, Any]]] = [
        (RF.RULE_FAILURE_MIN_DURATION, {"duration_minutes": 90}),
        (RF.RULE_FAILURE_MAX_DURATION, {"duration_minutes": 30}),
        (RF.RULE_FAILURE_CHARGER, {"charger_id": "ch-1"}),
        (RF.RULE_FAILURE_NETWORK, {"charger_network": "TESLA"}),
        (RF.RULE_FAILURE_ZONE, {"zone_id": "zone-loop"}),
        (RF.RULE_FAILURE_GEO_RADIUS, {"lat": CENTER[0], "lng": CENTER[1]}),
        (RF.RULE_FAILURE_TIME_OF_DAY, {"started_at": chicago(2026, 6, 11, 10)}),
        (RF.RULE_FAILURE_DAY_OF_WEEK, {"started_at": chicago(2026, 6, 10, 10)}),
        (RF.RULE_FAILURE_MIN_POWER, {"max_power_kw": 120.0}),
        (RF.RULE_FAILURE_CONNECTOR_TYPE, {"connector_type": "nacs"}),
        (RF.RULE_FAILURE_DRIVER_SESSION_COUNT_BELOW_MIN, {"driver_completed_sessions": 11}),
        (RF.RULE_FAILURE_DRIVER_SESSION_COUNT_ABOVE_MAX, {"driver_completed_sessions": 5}),
        (RF.RULE_FAILURE_DRIVER_ALLOWLIST, {"driver_id": DRIVER}),
        (RF.RULE_FAILURE_MIN_QUALITY_SCORE, {"quality_score": 60}),
    ]
    facts = bad
    for expected, fix in fixes:
        assert failure(rules, facts) == expected
        facts = dataclasses.replace(facts, **fix)
    assert failure(rules, facts) is None
    assert [f for f, _ in fixes] == sorted(f for f, _ in fixes)


def test_rules_then_caps_then_budget() -> None:
    broke_and_capped = campaign(
        "a", remaining_cents=0, caps=DriverCaps(per_campaign=1), rules=CampaignRuleSet(min_quality_score=90)
    )
    usage = {"a": DriverUsage(grants_in_campaign=1)}
    assert tried(choose_campaign([broke_and_capped], session(), usage, NOW)) == [
        ("a", RF.RULE_FAILURE_MIN_QUALITY_SCORE)
    ]
    capped_and_broke = dataclasses.replace(broke_and_capped, rules=CampaignRuleSet())
    assert tried(choose_campaign([capped_and_broke], session(), usage, NOW)) == [
        ("a", RF.RULE_FAILURE_CAP_PER_DRIVER_PER_CAMPAIGN)
    ]
    assert tried(choose_campaign([capped_and_broke], session(), {}, NOW)) == [("a", RF.RULE_FAILURE_BUDGET_EXHAUSTED)]


# --- caps ------------------------------------------------------------------------------------------------


def test_caps_block_once_the_count_reaches_the_cap() -> None:
    caps = DriverCaps(per_day=1, per_campaign=3, per_charger=2)
    assert caps_allow(caps, DriverUsage()) is None
    assert caps_allow(caps, DriverUsage(grants_on_day=0, grants_in_campaign=2, grants_at_charger=1)) is None
    assert caps_allow(caps, DriverUsage(grants_on_day=1)) == Failure(
        RF.RULE_FAILURE_CAP_PER_DRIVER_PER_DAY, "driver already has 1 grant(s) that day; cap 1 per day"
    )
    day_cap = caps_allow(caps, DriverUsage(grants_in_campaign=3))
    charger_cap = caps_allow(caps, DriverUsage(grants_at_charger=2))
    assert day_cap is not None
    assert day_cap.rule == RF.RULE_FAILURE_CAP_PER_DRIVER_PER_CAMPAIGN
    assert charger_cap is not None
    assert charger_cap.rule == RF.RULE_FAILURE_CAP_PER_DRIVER_PER_CHARGER


def test_caps_are_checked_per_day_then_per_campaign_then_per_charger() -> None:
    caps = DriverCaps(per_day=1, per_campaign=1, per_charger=1)
    everything = DriverUsage(grants_on_day=1, grants_in_campaign=1, grants_at_charger=1)
    assert caps_allow(caps, everything) == caps_allow(caps, DriverUsage(grants_on_day=1))
    found = caps_allow(caps, DriverUsage(grants_in_campaign=1, grants_at_charger=1))
    assert found is not None
    assert found.rule == RF.RULE_FAILURE_CAP_PER_DRIVER_PER_CAMPAIGN


def test_no_caps_never_block() -> None:
    assert caps_allow(DriverCaps(), DriverUsage(10**6, 10**6, 10**6)) is None


def test_caps_come_from_the_proto_and_unset_means_no_cap() -> None:
    assert driver_caps(pb.CampaignCaps(per_day=2)) == DriverCaps(per_day=2)
    assert driver_caps(pb.CampaignCaps()) == DriverCaps()


def test_cap_day_is_the_campaign_time_zone_day_of_the_session_start() -> None:
    monday_night = chicago(2026, 6, 8, 23, 30)  # Tuesday 04:30 UTC
    tuesday_early = chicago(2026, 6, 9, 0, 30)  # Tuesday 05:30 UTC: same UTC day, next Chicago day
    assert monday_night.astimezone(UTC).date() == tuesday_early.astimezone(UTC).date()
    assert local_day(monday_night, CHICAGO) == date(2026, 6, 8)
    assert local_day(tuesday_early, CHICAGO) == date(2026, 6, 9)
    assert local_day_bounds(date(2026, 6, 8), CHICAGO) == (utc(2026, 6, 8, 5), utc(2026, 6, 9, 5))


def test_cap_days_are_23_and_25_hours_long_on_the_dst_sundays() -> None:
    lengths = {}
    for day in (date(2026, 3, 8), date(2026, 6, 14), date(2026, 11, 1)):
        start, end = local_day_bounds(day, CHICAGO)
        lengths[day] = end - start
    assert lengths == {
        date(2026, 3, 8): timedelta(hours=23),
        date(2026, 6, 14): timedelta(hours=24),
        date(2026, 11, 1): timedelta(hours=25),
    }


def test_per_day_cap_lets_the_driver_earn_again_the_next_chicago_day() -> None:
    """The caller counts a day's grants with local_day_bounds; yesterday's grant is not in today's count."""
    capped = campaign("a", caps=DriverCaps(per_day=1))
    today = session(started_at=chicago(2026, 6, 9, 0, 30), ended_at=chicago(2026, 6, 9, 1, 0))
    grant_at = chicago(2026, 6, 8, 23, 30)
    start, end = local_day_bounds(local_day(today.started_at, CHICAGO), CHICAGO)
    grants_on_day = int(start <= grant_at < end)
    evaluation = choose_campaign([capped], today, {"a": DriverUsage(grants_on_day=grants_on_day)}, NOW)
    assert evaluation.outcome == pb.EVALUATION_OUTCOME_GRANTED


# --- choosing one campaign -------------------------------------------------------------------------------


def test_lowest_priority_number_wins() -> None:
    evaluation = choose_campaign([campaign("later", priority=200), campaign("first", priority=10)], session(), {}, NOW)
    assert evaluation.outcome == pb.EVALUATION_OUTCOME_GRANTED
    assert evaluation.winner is not None
    assert evaluation.winner.campaign_id == "first"
    assert tried(evaluation) == [("first", None)]


def test_equal_priority_goes_to_the_earliest_created() -> None:
    older = campaign("older", created_at=datetime(2026, 5, 1, 9, tzinfo=UTC))
    newer = campaign("newer", created_at=datetime(2026, 5, 1, 10, tzinfo=UTC))
    for order in ([older, newer], [newer, older]):
        evaluation = choose_campaign(order, session(), {}, NOW)
        assert evaluation.winner is not None
        assert evaluation.winner.campaign_id == "older"


def test_ranking_is_deterministic_even_for_identical_priority_and_creation() -> None:
    a, b = campaign("a"), campaign("b")
    assert [c.campaign_id for c in rank_candidates([b, a], NOW)] == ["a", "b"]


def test_grants_never_stack_only_one_campaign_pays() -> None:
    many = [campaign(str(i), priority=i) for i in range(5)]
    evaluation = choose_campaign(many, session(), {}, NOW)
    assert evaluation.winner is not None
    assert evaluation.winner.campaign_id == "0"
    assert [c.granted for c in evaluation.candidates] == [True]


def test_second_campaign_is_tried_when_the_first_is_out_of_budget() -> None:
    broke = campaign("broke", priority=1, reward_cents=50, remaining_cents=49)
    funded = campaign("funded", priority=2)
    evaluation = choose_campaign([funded, broke], session(), {}, NOW)
    assert tried(evaluation) == [("broke", RF.RULE_FAILURE_BUDGET_EXHAUSTED), ("funded", None)]
    assert evaluation.candidates[0].failure == Failure(
        RF.RULE_FAILURE_BUDGET_EXHAUSTED, "remaining budget 49¢ < reward 50¢"
    )


def test_exactly_one_reward_left_still_pays() -> None:
    last = campaign("last", reward_cents=50, remaining_cents=50)
    assert choose_campaign([last], session(), {}, NOW).outcome == pb.EVALUATION_OUTCOME_GRANTED


def test_second_campaign_is_tried_when_the_first_reached_max_sessions() -> None:
    full = campaign("full", priority=1, max_sessions=100, sessions_granted=100)
    open_ = campaign("open", priority=2, max_sessions=100, sessions_granted=99)
    assert tried(choose_campaign([full, open_], session(), {}, NOW)) == [
        ("full", RF.RULE_FAILURE_MAX_SESSIONS_REACHED),
        ("open", None),
    ]


def test_second_campaign_is_tried_when_the_driver_is_capped_in_the_first() -> None:
    capped = campaign("capped", priority=1, caps=DriverCaps(per_day=1))
    other = campaign("other", priority=2, caps=DriverCaps(per_day=1))
    usage = {"capped": DriverUsage(grants_on_day=1)}
    evaluation = choose_campaign([capped, other], session(), usage, NOW)
    assert tried(evaluation) == [("capped", RF.RULE_FAILURE_CAP_PER_DRIVER_PER_DAY), ("other", None)]


def test_second_campaign_is_tried_when_the_first_rules_do_not_match() -> None:
    night = campaign("night", priority=1, rules=OFF_PEAK)
    anytime = campaign("anytime", priority=2)
    evaluation = choose_campaign([night, anytime], session(), {}, NOW)
    assert tried(evaluation) == [("night", RF.RULE_FAILURE_TIME_OF_DAY), ("anytime", None)]
    results = [candidate_result(c) for c in evaluation.candidates]
    assert results[0].failure == RF.RULE_FAILURE_TIME_OF_DAY
    assert not results[0].granted
    assert results[0].detail == "started 12:00 America/Chicago, outside 22:00-06:00"
    assert results[1] == pb.CandidateResult(
        campaign_id="anytime", campaign_name="Campaign anytime", priority=2, granted=True
    )


def test_each_campaign_reads_the_window_in_its_own_time_zone() -> None:
    # 21:30 in Chicago is 22:30 in New York: only the New York campaign's off-peak has begun.
    started = chicago(2026, 6, 10, 21, 30)
    chicago_night = campaign("chi", priority=1, rules=OFF_PEAK)
    new_york_night = campaign("nyc", priority=2, rules=OFF_PEAK, time_zone=ZoneInfo("America/New_York"))
    evaluation = choose_campaign([chicago_night, new_york_night], starting(started), {}, NOW)
    assert tried(evaluation) == [("chi", RF.RULE_FAILURE_TIME_OF_DAY), ("nyc", None)]


def test_no_campaign_matches_and_every_reason_is_listed() -> None:
    evaluation = choose_campaign(
        [campaign("a", priority=1, rules=OFF_PEAK), campaign("b", priority=2, remaining_cents=0)], session(), {}, NOW
    )
    assert evaluation.outcome == pb.EVALUATION_OUTCOME_NO_MATCH
    assert evaluation.winner is None
    assert tried(evaluation) == [("a", RF.RULE_FAILURE_TIME_OF_DAY), ("b", RF.RULE_FAILURE_BUDGET_EXHAUSTED)]


def test_no_active_campaign_is_a_no_match_without_candidates() -> None:
    evaluation = choose_campaign([], session(), {}, NOW)
    assert (evaluation.outcome, evaluation.winner, evaluation.candidates) == (pb.EVALUATION_OUTCOME_NO_MATCH, None, ())


def test_sessions_under_one_minute_are_not_evaluated() -> None:
    evaluation = choose_campaign(
        [campaign("a", rules=CampaignRuleSet(min_duration_minutes=1))], session(duration_minutes=0), {}, NOW
    )
    assert evaluation.outcome == pb.EVALUATION_OUTCOME_SESSION_TOO_SHORT
    assert evaluation.candidates == ()
    one_minute = choose_campaign(
        [campaign("a", rules=CampaignRuleSet(min_duration_minutes=1))], session(duration_minutes=1), {}, NOW
    )
    assert one_minute.outcome == pb.EVALUATION_OUTCOME_GRANTED


def test_only_active_campaigns_inside_their_dates_are_candidates() -> None:
    paused = campaign("paused", priority=1, status=pb.CAMPAIGN_STATUS_PAUSED)
    draft = campaign("draft", priority=1, status=pb.CAMPAIGN_STATUS_DRAFT)
    not_yet = campaign("not-yet", priority=1, start_date=NOW + timedelta(seconds=1))
    over = campaign("over", priority=1, end_date=NOW - timedelta(seconds=1))
    ends_now = campaign("ends-now", priority=2, end_date=NOW)
    starts_now = campaign("starts-now", priority=3, start_date=NOW)
    ranked = rank_candidates([paused, draft, not_yet, over, starts_now, ends_now], NOW)
    assert [c.campaign_id for c in ranked] == ["ends-now", "starts-now"]
    evaluation = choose_campaign([paused, draft, not_yet, over, ends_now], session(), {}, NOW)
    assert tried(evaluation) == [("ends-now", None)]


def test_candidate_from_the_campaign_proto() -> None:
    message = pb.Campaign(
        id="c-1",
        name="Off-peak Loop",
        status=pb.CAMPAIGN_STATUS_ACTIVE,
        priority=5,
        cost_per_session_cents=75,
        remaining_cents=7_500,
        max_sessions=100,
        sessions_granted=3,
        time_zone="America/Chicago",
        max_grants_per_driver_per_day=1,
        rules=pb.CampaignRules(time_start="22:00", time_end="06:00", charger_networks=["Tesla"]),
    )
    message.created_at.CopyFrom(Timestamp(seconds=1_780_000_000))
    message.start_date.CopyFrom(Timestamp(seconds=1_780_000_000))
    candidate = campaign_candidate(message)
    assert candidate.time_zone == CHICAGO
    assert candidate.reward_cents == 75
    assert candidate.caps == DriverCaps(per_day=1)
    assert candidate.end_date is None
    assert candidate.rules.time_window == TimeWindow(time(22), time(6))
    assert candidate.rules.charger_networks == frozenset({"tesla"})
    assert candidate.rules.min_duration_minutes == 15


def test_unknown_time_zones_are_refused() -> None:
    assert parse_time_zone("America/Chicago") == CHICAGO
    for name in ("Mars/Olympus_Mons", "", "../etc/passwd"):
        with pytest.raises(UnknownTimeZone):
            parse_time_zone(name)


def test_session_facts_come_from_the_ended_session_and_must_be_aware() -> None:
    ended = pb.EndedSession(
        session_id="5d1f0c38-9e0b-4b8e-9a1c-0f2b3c4d5e6f",
        end_sequence=1,
        driver_id=DRIVER,
        charger_id="ch-1",
        duration_minutes=42,
        lat=41.0,
        lng=-87.0,
        quality_score=70,
        driver_completed_sessions=2,
    )
    ended.session_start.FromDatetime(datetime(2026, 6, 10, 17, tzinfo=UTC))
    ended.session_end.FromDatetime(datetime(2026, 6, 10, 17, 42, tzinfo=UTC))
    facts = session_facts(ended, driver_email="ada@example.com")
    assert facts.started_at == utc(2026, 6, 10, 17)
    assert facts.max_power_kw is None
    assert (facts.lat, facts.lng, facts.driver_email) == (41.0, -87.0, "ada@example.com")
    with pytest.raises(ValueError, match="naive"):
        session(started_at=datetime(2026, 6, 10, 12))


# --- reputation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("points", "tier", "color", "next_tier", "to_next"),
    [
        (0, "Bronze", "#78716c", "Silver", 100),
        (99, "Bronze", "#78716c", "Silver", 1),
        (100, "Silver", "#64748b", "Gold", 200),
        (299, "Silver", "#64748b", "Gold", 1),
        (300, "Gold", "#eab308", "Platinum", 400),
        (699, "Gold", "#eab308", "Platinum", 1),
        (700, "Platinum", "#06b6d4", None, None),
        (25_000, "Platinum", "#06b6d4", None, None),
    ],
)
def test_reputation_tiers_at_their_edges(
    points: int, tier: str, color: str, next_tier: str | None, to_next: int | None
) -> None:
    found = reputation(points)
    assert (found.points, found.tier, found.tier_color, found.next_tier, found.points_to_next) == (
        points,
        tier,
        color,
        next_tier,
        to_next,
    )


@pytest.mark.parametrize(
    ("points", "progress"),
    [(0, 0.0), (50, 0.5), (99, 0.99), (100, 0.0), (200, 0.5), (299, 0.995), (300, 0.0), (500, 0.5), (700, 1.0)],
)
def test_progress_runs_from_the_tier_floor_to_the_next(points: int, progress: float) -> None:
    assert reputation(points).progress_to_next == pytest.approx(progress)


def test_negative_points_count_as_zero() -> None:
    assert reputation(-5) == reputation(0)


@given(st.integers(min_value=0, max_value=10**7))
def test_progress_stays_between_0_and_1_and_points_add_up_to_the_next_tier(points: int) -> None:
    found = reputation(points)
    assert 0.0 <= found.progress_to_next <= 1.0
    if found.next_tier is None:
        assert (found.tier, found.points_to_next, found.progress_to_next) == ("Platinum", None, 1.0)
    else:
        assert found.points_to_next is not None
        assert found.points_to_next > 0
        assert found.progress_to_next < 1.0
        floors = {"Silver": 100, "Gold": 300, "Platinum": 700}
        assert points + found.points_to_next == floors[found.next_tier]


def test_reputation_reply_leaves_next_tier_absent_at_platinum() -> None:
    top = reputation_message(reputation(700), streak_days=3)
    assert not top.HasField("next_tier")
    assert not top.HasField("points_to_next")
    assert (top.progress_to_next, top.streak_days) == (1.0, 3)
    silver = reputation_message(reputation(150), streak_days=0)
    assert (silver.next_tier, silver.points_to_next, silver.progress_to_next) == ("Gold", 150, 0.25)


def test_a_grant_earns_one_point_per_cent_whatever_the_quality() -> None:
    assert reputation_points_for_session(250, duration_minutes=30, quality_score=85) == 250
    assert reputation_points_for_session(75, duration_minutes=30, quality_score=0) == 75


def test_plus_five_needs_quality_above_30() -> None:
    assert reputation_points_for_session(None, duration_minutes=20, quality_score=30) == 0
    assert reputation_points_for_session(None, duration_minutes=20, quality_score=31) == 5


def test_plus_five_needs_a_duration_above_zero() -> None:
    assert reputation_points_for_session(None, duration_minutes=0, quality_score=90) == 0
    assert reputation_points_for_session(None, duration_minutes=1, quality_score=90) == 5


# --- streak ----------------------------------------------------------------------------------------------

TODAY = date(2026, 6, 10)


def days_ago(*offsets: int) -> set[date]:
    return {TODAY - timedelta(days=n) for n in offsets}


def test_no_session_today_means_no_streak_even_after_a_long_run() -> None:
    assert streak_days(days_ago(1, 2, 3, 4), TODAY) == 0
    assert streak_days(set(), TODAY) == 0


def test_streak_counts_consecutive_days_back_from_today() -> None:
    assert streak_days(days_ago(0), TODAY) == 1
    assert streak_days(days_ago(0, 1, 2), TODAY) == 3


def test_a_gap_ends_the_streak() -> None:
    assert streak_days(days_ago(0, 1, 3, 4, 5), TODAY) == 2


def test_future_sessions_do_not_count() -> None:
    assert streak_days(days_ago(-1, 0), TODAY) == 1


def test_streak_crosses_month_and_year_boundaries() -> None:
    new_year = date(2027, 1, 1)
    assert streak_days({date(2026, 12, 30), date(2026, 12, 31), new_year}, new_year) == 3


def test_streak_days_are_the_drivers_local_days() -> None:
    late_monday = utc(2026, 6, 9, 3)  # Monday 22:00 in Chicago, Tuesday in UTC
    tuesday = utc(2026, 6, 9, 20)
    dates = {local_day(late_monday, CHICAGO), local_day(tuesday, CHICAGO)}
    assert streak_days(dates, date(2026, 6, 9)) == 2
    assert streak_days({late_monday.date(), tuesday.date()}, date(2026, 6, 9)) == 1


# --- the sponsor's dry run ----------------------------------------------------------------------------------


def ended(driver: str, start: datetime, minutes: int, charger: str = "c1") -> pb.EndedSession:
    begin, end = Timestamp(), Timestamp()
    begin.FromDatetime(start)
    end.FromDatetime(start + timedelta(minutes=minutes))
    return pb.EndedSession(
        session_id="00000000-0000-4000-8000-000000000001",
        end_sequence=1,
        driver_id=driver,
        charger_id=charger,
        session_start=begin,
        session_end=end,
        duration_minutes=minutes,
        quality_score=80,
        driver_completed_sessions=1,
    )


def test_dry_run_applies_rules_caps_and_budget_in_time_order() -> None:
    draft = campaign("draft", reward_cents=100, remaining_cents=300, caps=DriverCaps(per_day=1))
    day = datetime(2026, 6, 10, 15, 0, tzinfo=UTC)
    history = [
        ended("a", day, 30),
        ended("a", day + timedelta(hours=1), 30),  # a's second that Chicago day: capped
        ended("b", day + timedelta(hours=2), 10),  # too short for the 15-minute default
        ended("b", day + timedelta(hours=3), 30),
        ended("c", day + timedelta(hours=4), 30),  # third grant: the 300¢ budget is spent
        ended("d", day + timedelta(hours=5), 30),  # nothing left
        ended("e", day + timedelta(hours=6), 0),  # under a minute: not evaluated at all
    ]
    result = simulate(draft, [session_facts(ended) for ended in history])
    assert (result.sessions_evaluated, result.sessions_matched, result.grants) == (6, 5, 3)
    assert (result.spend_cents, result.unique_drivers) == (300, 3)
    assert result.budget_exhausted_at == day + timedelta(hours=4, minutes=30)
    assert result.failures == [
        (RF.RULE_FAILURE_MIN_DURATION, 1),
        (RF.RULE_FAILURE_CAP_PER_DRIVER_PER_DAY, 1),
        (RF.RULE_FAILURE_BUDGET_EXHAUSTED, 1),
    ]


def test_percent_used_rounds_half_up_to_one_decimal() -> None:
    assert percent_used(0, 0) == 0.0
    assert percent_used(1, 3) == 33.3
    assert percent_used(2, 3) == 66.7
    assert percent_used(1, 8) == 12.5
    assert percent_used(1, 16) == 6.3  # 6.25 → half up
    assert percent_used(10_000, 10_000) == 100.0


@given(
    st.floats(min_value=-80, max_value=80),
    st.floats(min_value=-179, max_value=179),
    st.integers(min_value=1, max_value=200_000),
    st.floats(min_value=0, max_value=360),
    st.floats(min_value=0, max_value=1.5),
)
def test_the_candidate_filter_never_hides_a_campaign_whose_radius_admits_the_session(
    lat: float, lng: float, radius_m: int, bearing: float, fraction: float
) -> None:
    """place_admits compares squared chords instead of great-circle distances: it must admit every point the
    rule admits (within the radius, edge included) and refuse points clearly outside (2 m and more)."""
    geo = GeoCircle(lat, lng, radius_m)
    theta = radius_m * fraction / EARTH_RADIUS_M
    phi1, lam1, b = math.radians(lat), math.radians(lng), math.radians(bearing)
    phi2 = math.asin(math.sin(phi1) * math.cos(theta) + math.cos(phi1) * math.sin(theta) * math.cos(b))
    lam2 = lam1 + math.atan2(
        math.sin(b) * math.sin(theta) * math.cos(phi1), math.cos(theta) - math.sin(phi1) * math.sin(phi2)
    )
    point = (math.degrees(phi2), (math.degrees(lam2) + 540) % 360 - 180)
    admitted = place_admits(CampaignRuleSet(geo=geo), Place(lat=point[0], lng=point[1]))
    distance = haversine_m(lat, lng, *point)
    if distance <= radius_m + 0.001:
        assert admitted
    elif distance > radius_m + 2:
        assert not admitted


@pytest.mark.parametrize(
    ("ours", "contracts"),
    [(RuleFailure, pb.RuleFailure), (EvaluationOutcome, pb.EvaluationOutcome), (CampaignStatus, pb.CampaignStatus)],
)
def test_the_rules_enum_values_are_the_contracts(ours: type[enum.IntEnum], contracts: Any) -> None:
    """domain.py declares the values it answers with, so it needs no message of the contract; they must stay the
    contract's, name for number, or a renumbering in the .proto would change what a stored "why not" means."""
    assert {member.name: member.value for member in ours} == {name: contracts.Value(name) for name in ours.__members__}
    if ours is RuleFailure:  # every failure the contract names is one the rules can answer
        assert set(ours.__members__) == set(contracts.keys()) - {"RULE_FAILURE_UNSPECIFIED"}
