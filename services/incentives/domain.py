"""Pure rules of incentives: which campaign (if any) pays an ended charging session and why the others do not,
the per-driver caps, and reputation (points, tier, streak). No I/O, no clock reads: the time is an argument.

Money is integer cents (Nova points for NOVA campaigns, 1 Nova = 1 cent); floats appear only for positions,
power, energy and the display ratio `progress_to_next`. Consuming the budget and the caps is the caller's
job, in one SQL transaction with the grant (DOMAIN: no check-then-act); here the budget is only a
pre-filter (`remaining ≥ reward`), so the caller must try the next candidate when its atomic update fails.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence, Set
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_MIN_DURATION_MINUTES = 15  # DOMAIN: the one rule every campaign has
MIN_EVALUATED_DURATION_MINUTES = 1  # shorter ended sessions are not evaluated at all (SESSION_TOO_SHORT)
EARTH_RADIUS_M = 6_371_000.0  # mean Earth radius, as the first implementation used
# A position exactly on the circle is inside. GPS is metres off anyway; the millimetre only absorbs the float
# noise of the trigonometry, so that "on the edge" does not depend on the last bit of a sine.
GEO_TOLERANCE_M = 0.001
ISO_DAY_NAMES = {1: "Mon", 2: "Tue", 3: "Wed", 4: "Thu", 5: "Fri", 6: "Sat", 7: "Sun"}
_HH_MM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


# --- the contract's enum values the rules answer with ------------------------------------------------------------
# The same names and numbers as the contract's enums (tests/incentives/test_rules.py pins them), so that the
# handlers translate by name and a "why not" keeps the RuleFailure order; the rules themselves need no message.


class RuleFailure(enum.IntEnum):
    """The first check a session failed for a campaign: rules in the order they are judged, then caps, then
    budget."""

    RULE_FAILURE_MIN_DURATION = 1
    RULE_FAILURE_MAX_DURATION = 2
    RULE_FAILURE_CHARGER = 3
    RULE_FAILURE_NETWORK = 4
    RULE_FAILURE_ZONE = 5
    RULE_FAILURE_GEO_RADIUS = 6
    RULE_FAILURE_TIME_OF_DAY = 7
    RULE_FAILURE_DAY_OF_WEEK = 8
    RULE_FAILURE_MIN_POWER = 9
    RULE_FAILURE_CONNECTOR_TYPE = 10
    RULE_FAILURE_DRIVER_SESSION_COUNT_BELOW_MIN = 11
    RULE_FAILURE_DRIVER_SESSION_COUNT_ABOVE_MAX = 12
    RULE_FAILURE_DRIVER_ALLOWLIST = 13
    RULE_FAILURE_MIN_QUALITY_SCORE = 14
    RULE_FAILURE_CAP_PER_DRIVER_PER_DAY = 15
    RULE_FAILURE_CAP_PER_DRIVER_PER_CAMPAIGN = 16
    RULE_FAILURE_CAP_PER_DRIVER_PER_CHARGER = 17
    RULE_FAILURE_BUDGET_EXHAUSTED = 18
    RULE_FAILURE_MAX_SESSIONS_REACHED = 19


class EvaluationOutcome(enum.IntEnum):
    """What choosing a campaign decided (the contract's other outcomes are the granting core's)."""

    EVALUATION_OUTCOME_GRANTED = 1
    EVALUATION_OUTCOME_NO_MATCH = 2
    EVALUATION_OUTCOME_SESSION_TOO_SHORT = 3


class CampaignStatus(enum.IntEnum):
    """The one campaign status the rules look at: only an active campaign pays."""

    CAMPAIGN_STATUS_ACTIVE = 2


class UnknownTimeZone(ValueError):
    """The name is not in the IANA tz database (UNKNOWN_TIME_ZONE)."""


def parse_time_zone(name: str) -> ZoneInfo:
    """The IANA zone of a campaign (or a driver's streak). Raises UnknownTimeZone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownTimeZone(name) from exc


def zone_name(tz: tzinfo) -> str:
    return getattr(tz, "key", None) or str(tz)


def local_day(moment: datetime, tz: tzinfo) -> date:
    """The calendar day of an aware moment in a time zone (campaign day for caps, driver day for streaks)."""
    return _aware(moment).astimezone(tz).date()


def local_day_bounds(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """[start, end) of a local calendar day, in UTC, for the caller's SQL; 23 or 25 hours across DST."""
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return start, end


# --- campaign dates -----------------------------------------------------------------------------------------

# DOMAIN: the console sends no time zone: its campaigns run in the product's home market.
DEFAULT_TIME_ZONE = "America/Chicago"
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# A campaign's start or end as the sponsor gives it: a calendar day (a `date`, read in the campaign's zone, which an
# edit may leave to the stored one) or a moment (an aware `datetime` in UTC).
CampaignDate = date | datetime


class MomentWithoutOffset(ValueError):
    """A campaign date with a time of day but no offset: which moment it names depends on a zone it does not say."""


def parse_campaign_date(text: str) -> CampaignDate:
    """A day `YYYY-MM-DD`, else an RFC 3339 moment with its offset (as UTC). Raises MomentWithoutOffset for a
    moment without one, ValueError for text that is neither (no such day, a moment past the calendar's ends)."""
    if _DAY.match(text):
        return date.fromisoformat(text)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise MomentWithoutOffset(text)
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(text) from exc


def campaign_start(value: CampaignDate, tz: tzinfo) -> datetime:
    """A start: a day's first moment in the campaign's zone, or the moment itself. Raises OverflowError for
    the calendar's first day east of UTC."""
    if isinstance(value, datetime):
        return value
    return datetime.combine(value, time(), tzinfo=tz).astimezone(UTC)


def campaign_end(value: CampaignDate, tz: tzinfo) -> datetime:
    """An end: a day's last microsecond in the campaign's zone, so that a campaign "until Dec 31" still pays a
    session that ends on the evening of the 31st; or the moment itself. Raises OverflowError on the calendar's
    last day."""
    if isinstance(value, datetime):
        return value
    # The next day's first moment minus one microsecond (DST-safe: the midnight is built in the zone).
    following = datetime.combine(value + timedelta(days=1), time(), tzinfo=tz)
    return following.astimezone(UTC) - timedelta(microseconds=1)


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in metres between two points given in degrees (spherical Earth)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = math.radians(lat2 - lat1)
    dlambda = math.radians(lng2 - lng1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("naive datetime: the incentives rules need aware moments")
    return moment


def _fold(text: str) -> str:
    """How names are compared when the contract says case-insensitive (networks, connectors, emails, ids)."""
    return text.strip().casefold()


# --- inputs -------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SessionFacts:
    """What the rules look at in an ended session (EndedSession, plus the driver's email when an allowlist
    needs it). Empty strings mean unknown/none, as in the proto."""

    driver_id: str
    started_at: datetime  # aware
    ended_at: datetime  # aware; for a stale cleanup the last telemetry
    duration_minutes: int  # floor((end - start) / 60 s)
    charger_id: str = ""
    charger_network: str = ""
    zone_id: str = ""
    lat: float | None = None
    lng: float | None = None
    kwh_delivered: float = 0.0
    max_power_kw: float | None = None  # highest power seen in the session, not the last (tapered) one
    connector_type: str = ""
    quality_score: int = 0
    driver_completed_sessions: int = 1  # this one included
    # Hook for allowlists that name emails: the caller looks the driver's email up (accounts) only when
    # `allowlist_has_emails(rules)` and passes it here; the rules never fetch anything.
    driver_email: str = ""

    def __post_init__(self) -> None:
        _aware(self.started_at)
        _aware(self.ended_at)
        if (self.lat is None) != (self.lng is None):
            raise ValueError("lat and lng must be given together")


@dataclasses.dataclass(frozen=True)
class GeoCircle:
    """The geo rule: a radius always comes with its centre."""

    lat: float
    lng: float
    radius_m: int
    # For the candidate filter (place_admits): the centre as a unit vector and the squared chord of the radius,
    # one metre wider than the rule — the filter may admit a campaign the rule then refuses, never the reverse.
    centre: tuple[float, float, float] = dataclasses.field(init=False, repr=False, compare=False)
    reach_chord2: float = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.radius_m <= 0:
            raise ValueError("geo radius must be positive")
        object.__setattr__(self, "centre", unit_vector(self.lat, self.lng))
        half_angle = min(math.pi / 2, (self.radius_m + GEO_TOLERANCE_M + 1.0) / (2 * EARTH_RADIUS_M))
        object.__setattr__(self, "reach_chord2", 4 * math.sin(half_angle) ** 2)


def unit_vector(lat: float, lng: float) -> tuple[float, float, float]:
    """A point of the sphere as a unit vector: the squared distance between two of them is the squared chord,
    which orders points as the great-circle distance does, without a trigonometric call per comparison."""
    phi, lam = math.radians(lat), math.radians(lng)
    return (math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi))


@dataclasses.dataclass(frozen=True)
class TimeWindow:
    """Time-of-day window, wall clock in the campaign's zone, `start ≤ t < end`; wraps midnight when
    start > end ("22:00"-"06:00" is 22:00 to 05:59:59). end "00:00" means midnight."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError("time_start and time_end must differ")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("a time-of-day window is wall-clock time; the zone is the campaign's")

    @classmethod
    def parse(cls, start: str, end: str) -> TimeWindow:
        return cls(_parse_hh_mm(start), _parse_hh_mm(end))

    def contains(self, wall_clock: time) -> bool:
        t = wall_clock.replace(tzinfo=None, fold=0)
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def _parse_hh_mm(text: str) -> time:
    match = _HH_MM.match(text)
    if match is None:
        raise ValueError(f"not a 24 h HH:MM time: {text!r}")
    return time(int(match[1]), int(match[2]))


@dataclasses.dataclass(frozen=True)
class CampaignRuleSet:
    """A campaign's targeting rules (CampaignRules). None or empty means "does not restrict", except the
    minimum duration. Networks, connectors and the allowlist are kept case-folded."""

    min_duration_minutes: int = DEFAULT_MIN_DURATION_MINUTES
    max_duration_minutes: int | None = None
    charger_ids: frozenset[str] = frozenset()
    charger_networks: frozenset[str] = frozenset()
    zone_ids: frozenset[str] = frozenset()
    geo: GeoCircle | None = None
    time_window: TimeWindow | None = None
    days_of_week: frozenset[int] = frozenset()  # ISO, Mon = 1 … Sun = 7
    min_power_kw: float | None = None
    connector_types: frozenset[str] = frozenset()
    driver_session_count_min: int | None = None
    driver_session_count_max: int | None = None
    driver_allowlist: frozenset[str] = frozenset()  # user ids (UUID) or emails
    min_quality_score: int | None = None

    def __post_init__(self) -> None:
        for name in ("charger_networks", "connector_types", "driver_allowlist"):
            object.__setattr__(self, name, frozenset(_fold(v) for v in getattr(self, name)))
        if not all(1 <= d <= 7 for d in self.days_of_week):
            raise ValueError("days_of_week are ISO weekdays 1-7")


@dataclasses.dataclass(frozen=True)
class TargetingRules:
    """A campaign's targeting rules as its sponsor wrote them (CampaignRules): order and case kept, a field
    left out is None or empty: what is stored and shown back (CampaignRuleSet is what the rules judge)."""

    min_duration_minutes: int | None = None  # None: the default 15
    max_duration_minutes: int | None = None
    charger_ids: tuple[str, ...] = ()
    charger_networks: tuple[str, ...] = ()
    zone_ids: tuple[str, ...] = ()
    geo_center_lat: float | None = None
    geo_center_lng: float | None = None
    geo_radius_m: int | None = None
    time_start: str = ""  # HH:MM, with time_end
    time_end: str = ""
    days_of_week: tuple[int, ...] = ()
    min_power_kw: float | None = None
    connector_types: tuple[str, ...] = ()
    driver_session_count_min: int | None = None
    driver_session_count_max: int | None = None
    driver_allowlist: tuple[str, ...] = ()
    min_quality_score: int | None = None


def rule_set(rules: TargetingRules) -> CampaignRuleSet:
    """A campaign's rules as its sponsor wrote them, as the rules judge them. Raises ValueError for a geo radius
    without its centre (or the reverse) or a half time window; the API's validation refuses those before they
    are stored."""
    geo = None
    if rules.geo_center_lat is not None or rules.geo_center_lng is not None or rules.geo_radius_m is not None:
        if rules.geo_center_lat is None or rules.geo_center_lng is None or rules.geo_radius_m is None:
            raise ValueError("geo_radius_m needs geo_center_lat and geo_center_lng, and the reverse")
        geo = GeoCircle(rules.geo_center_lat, rules.geo_center_lng, rules.geo_radius_m)
    window = None
    if rules.time_start or rules.time_end:
        window = TimeWindow.parse(rules.time_start, rules.time_end)
    return CampaignRuleSet(
        min_duration_minutes=(
            DEFAULT_MIN_DURATION_MINUTES if rules.min_duration_minutes is None else rules.min_duration_minutes
        ),
        max_duration_minutes=rules.max_duration_minutes,
        charger_ids=frozenset(rules.charger_ids),
        charger_networks=frozenset(rules.charger_networks),
        zone_ids=frozenset(rules.zone_ids),
        geo=geo,
        time_window=window,
        days_of_week=frozenset(rules.days_of_week),
        min_power_kw=rules.min_power_kw,
        connector_types=frozenset(rules.connector_types),
        driver_session_count_min=rules.driver_session_count_min,
        driver_session_count_max=rules.driver_session_count_max,
        driver_allowlist=frozenset(rules.driver_allowlist),
        min_quality_score=rules.min_quality_score,
    )


def allowlist_has_emails(rules: CampaignRuleSet) -> bool:
    """Whether the caller must look up the driver's email to judge the allowlist."""
    return any("@" in entry for entry in rules.driver_allowlist)


@dataclasses.dataclass(frozen=True)
class DriverCaps:
    """Per-driver grant caps of a campaign; None = no cap."""

    per_day: int | None = None  # per calendar day in the campaign's time zone
    per_campaign: int | None = None
    per_charger: int | None = None


@dataclasses.dataclass(frozen=True)
class DriverUsage:
    """The driver's existing grants of one campaign, clawed-back grants EXCLUDED (the caller counts only
    pending and granted ones; DOMAIN: clawed-back grants do not count — the first implementation counted
    them 🐞).

    - `grants_on_day`: grants for sessions that started on the same calendar day, in the campaign's zone, as
      the session being evaluated (`local_day(facts.started_at, tz)`, bounds from `local_day_bounds`). The
      session's day, not the processing day: a retried or re-evaluated session then counts against the same
      day, and it is the day the time-of-day and weekday rules look at.
    - `grants_at_charger`: grants at this session's charger; 0 when the session has no charger.
    """

    grants_on_day: int = 0
    grants_in_campaign: int = 0
    grants_at_charger: int = 0


@dataclasses.dataclass(frozen=True)
class CampaignCandidate:
    """What choosing a campaign needs to know about one campaign."""

    campaign_id: str
    name: str
    priority: int  # lower is tried first
    created_at: datetime  # ties in priority: earliest created first
    time_zone: tzinfo
    reward_cents: int  # cost_per_session_cents: what one grant pays and costs the budget
    remaining_cents: int  # budget - spent
    rules: CampaignRuleSet = CampaignRuleSet()
    caps: DriverCaps = DriverCaps()
    max_sessions: int | None = None
    sessions_granted: int = 0
    status: int = CampaignStatus.CAMPAIGN_STATUS_ACTIVE  # the campaigns row's status
    start_date: datetime | None = None
    end_date: datetime | None = None  # None = open-ended


# --- rules --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Failure:
    """The first check a session failed for a campaign, and why in words (CandidateResult.failure/detail)."""

    rule: int  # a RuleFailure
    detail: str


def first_failed_rule(rules: CampaignRuleSet, facts: SessionFacts, tz: tzinfo) -> Failure | None:
    """The first targeting rule the session fails, or None when every rule passes (they are AND-ed).

    Order — the RuleFailure enum's, so a sponsor's "why not" is stable: 1 min duration, 2 max duration,
    3 charger ids, 4 networks (case-insensitive), 5 zones, 6 geo radius, 7 time of day, 8 day of week,
    9 min power, 10 connector (case-insensitive), 11/12 driver's session count min/max, 13 allowlist,
    14 min quality score. Caps and budget come after, in `evaluate_candidate`.

    Time of day and weekday are judged at the session's START, as wall-clock time in the campaign's zone
    `tz`: the contract says so (RULE_FAILURE_TIME_OF_DAY "Session start outside the window"), it is the
    driver's decision the sponsor wants to steer ("plug in off-peak"), it is what ListDriverCampaigns can
    promise before the session ends, and the end is the weakest timestamp (a stale cleanup's end is the last
    telemetry). The first implementation compared UTC clock strings 🐞; wall clock means a 22:00-06:00
    window is 7 real hours on the spring-forward night and 9 on the fall-back night, as sponsors mean it.
    """
    if facts.duration_minutes < rules.min_duration_minutes:
        return Failure(
            RuleFailure.RULE_FAILURE_MIN_DURATION,
            f"duration {facts.duration_minutes} min < minimum {rules.min_duration_minutes} min",
        )
    if rules.max_duration_minutes is not None and facts.duration_minutes > rules.max_duration_minutes:
        return Failure(
            RuleFailure.RULE_FAILURE_MAX_DURATION,
            f"duration {facts.duration_minutes} min > maximum {rules.max_duration_minutes} min",
        )
    if rules.charger_ids and facts.charger_id not in rules.charger_ids:
        what = f"charger {facts.charger_id}" if facts.charger_id else "no charger matched"
        return Failure(RuleFailure.RULE_FAILURE_CHARGER, f"{what}; not one of the campaign's chargers")
    if rules.charger_networks and _fold(facts.charger_network) not in rules.charger_networks:
        what = f"network {facts.charger_network}" if facts.charger_network else "network unknown"
        return Failure(RuleFailure.RULE_FAILURE_NETWORK, f"{what}; not one of {_listing(rules.charger_networks)}")
    if rules.zone_ids and facts.zone_id not in rules.zone_ids:
        what = f"zone {facts.zone_id}" if facts.zone_id else "no zone"
        return Failure(RuleFailure.RULE_FAILURE_ZONE, f"{what}; not one of the campaign's zones")
    if rules.geo is not None and (failure := _geo_failure(rules.geo, facts)) is not None:
        return failure
    # The local start only when a time rule needs it: most campaigns have none.
    started = facts.started_at.astimezone(tz) if rules.time_window is not None or rules.days_of_week else None
    if rules.time_window is not None and started is not None and not rules.time_window.contains(started.time()):
        return Failure(
            RuleFailure.RULE_FAILURE_TIME_OF_DAY,
            f"started {started:%H:%M} {zone_name(tz)}, outside {rules.time_window}",
        )
    if rules.days_of_week and started is not None and started.isoweekday() not in rules.days_of_week:
        days = ", ".join(ISO_DAY_NAMES[d] for d in sorted(rules.days_of_week))
        return Failure(
            RuleFailure.RULE_FAILURE_DAY_OF_WEEK,
            f"started on {ISO_DAY_NAMES[started.isoweekday()]} {zone_name(tz)}; not one of {days}",
        )
    if rules.min_power_kw is not None and (facts.max_power_kw is None or facts.max_power_kw < rules.min_power_kw):
        seen = "power unknown" if facts.max_power_kw is None else f"max power {facts.max_power_kw:g} kW"
        return Failure(RuleFailure.RULE_FAILURE_MIN_POWER, f"{seen} < minimum {rules.min_power_kw:g} kW")
    if rules.connector_types and _fold(facts.connector_type) not in rules.connector_types:
        what = f"connector {facts.connector_type}" if facts.connector_type else "connector unknown"
        return Failure(RuleFailure.RULE_FAILURE_CONNECTOR_TYPE, f"{what}; not one of {_listing(rules.connector_types)}")
    return first_failed_driver_rule(
        rules,
        driver_id=facts.driver_id,
        driver_email=facts.driver_email,
        session_count=facts.driver_completed_sessions,
    ) or _quality_failure(rules, facts)


def first_failed_driver_rule(
    rules: CampaignRuleSet, *, driver_id: str, driver_email: str, session_count: int
) -> Failure | None:
    """The rules about the driver alone (11-13), also for "could this driver earn here" before a session:
    pass the count the next session would have (completed sessions + 1)."""
    if rules.driver_session_count_min is not None and session_count < rules.driver_session_count_min:
        return Failure(
            RuleFailure.RULE_FAILURE_DRIVER_SESSION_COUNT_BELOW_MIN,
            f"driver's session #{session_count} < minimum #{rules.driver_session_count_min}",
        )
    if rules.driver_session_count_max is not None and session_count > rules.driver_session_count_max:
        return Failure(
            RuleFailure.RULE_FAILURE_DRIVER_SESSION_COUNT_ABOVE_MAX,
            f"driver's session #{session_count} > maximum #{rules.driver_session_count_max}",
        )
    if rules.driver_allowlist and not allowlist_admits(rules, driver_id, driver_email):
        # The list itself is never echoed: it holds other drivers' ids and emails.
        return Failure(RuleFailure.RULE_FAILURE_DRIVER_ALLOWLIST, "driver not on the campaign's allowlist")
    return None


def allowlist_admits(rules: CampaignRuleSet, driver_id: str, driver_email: str) -> bool:
    """User ids and emails, both compared case-insensitively; an empty allowlist admits everyone."""
    if not rules.driver_allowlist:
        return True
    candidates = {_fold(driver_id)} | ({_fold(driver_email)} if driver_email.strip() else set())
    return not candidates.isdisjoint(rules.driver_allowlist)


def _quality_failure(rules: CampaignRuleSet, facts: SessionFacts) -> Failure | None:
    if rules.min_quality_score is not None and facts.quality_score < rules.min_quality_score:
        return Failure(
            RuleFailure.RULE_FAILURE_MIN_QUALITY_SCORE,
            f"quality score {facts.quality_score} < minimum {rules.min_quality_score}",
        )
    return None


def _geo_failure(geo: GeoCircle, facts: SessionFacts) -> Failure | None:
    if facts.lat is None or facts.lng is None:
        return Failure(RuleFailure.RULE_FAILURE_GEO_RADIUS, "position unknown")
    distance = haversine_m(geo.lat, geo.lng, facts.lat, facts.lng)
    if distance > geo.radius_m + GEO_TOLERANCE_M:
        return Failure(
            RuleFailure.RULE_FAILURE_GEO_RADIUS, f"{distance:.0f} m from the centre > radius {geo.radius_m} m"
        )
    return None


def _listing(values: Iterable[str], limit: int = 5) -> str:
    ordered = sorted(values)
    shown = ", ".join(ordered[:limit])
    return shown if len(ordered) <= limit else f"{shown} (+{len(ordered) - limit} more)"


def caps_allow(caps: DriverCaps, usage: DriverUsage) -> Failure | None:
    """The first per-driver cap already reached (count ≥ cap), in the order per day, per campaign, per
    charger; None when another grant is allowed. `usage` excludes clawed-back grants (the caller's count)."""
    if caps.per_day is not None and usage.grants_on_day >= caps.per_day:
        return Failure(
            RuleFailure.RULE_FAILURE_CAP_PER_DRIVER_PER_DAY,
            f"driver already has {usage.grants_on_day} grant(s) that day; cap {caps.per_day} per day",
        )
    if caps.per_campaign is not None and usage.grants_in_campaign >= caps.per_campaign:
        return Failure(
            RuleFailure.RULE_FAILURE_CAP_PER_DRIVER_PER_CAMPAIGN,
            f"driver already has {usage.grants_in_campaign} grant(s); cap {caps.per_campaign} per campaign",
        )
    if caps.per_charger is not None and usage.grants_at_charger >= caps.per_charger:
        return Failure(
            RuleFailure.RULE_FAILURE_CAP_PER_DRIVER_PER_CHARGER,
            f"driver already has {usage.grants_at_charger} grant(s) at this charger; cap {caps.per_charger}",
        )
    return None


def budget_allows(candidate: CampaignCandidate) -> Failure | None:
    """Pre-filter only: can the campaign still pay one reward? The caller's SQL decides atomically."""
    if candidate.remaining_cents < candidate.reward_cents:
        return Failure(
            RuleFailure.RULE_FAILURE_BUDGET_EXHAUSTED,
            f"remaining budget {candidate.remaining_cents}¢ < reward {candidate.reward_cents}¢",
        )
    if candidate.max_sessions is not None and candidate.sessions_granted >= candidate.max_sessions:
        return Failure(
            RuleFailure.RULE_FAILURE_MAX_SESSIONS_REACHED,
            f"{candidate.sessions_granted} of at most {candidate.max_sessions} sessions already granted",
        )
    return None


def evaluate_candidate(candidate: CampaignCandidate, facts: SessionFacts, usage: DriverUsage) -> Failure | None:
    """One campaign alone: rules, then caps, then budget (the RuleFailure order). Also the sponsor's dry run,
    which evaluates a campaign as if no other competed."""
    return (
        first_failed_rule(candidate.rules, facts, candidate.time_zone)
        or caps_allow(candidate.caps, usage)
        or budget_allows(candidate)
    )


def is_live(candidate: CampaignCandidate, now: datetime) -> bool:
    """Active and inside its date range at `now` (start ≤ now ≤ end; no end = open-ended)."""
    if candidate.status != CampaignStatus.CAMPAIGN_STATUS_ACTIVE:
        return False
    if candidate.start_date is not None and now < candidate.start_date:
        return False
    return candidate.end_date is None or now <= candidate.end_date


def evaluation_order(candidate: CampaignCandidate) -> tuple[int, datetime, str]:
    """Lowest priority number first, then earliest created, then id (so that the order never depends on the
    database's)."""
    return (candidate.priority, candidate.created_at, candidate.campaign_id)


def rank_candidates(candidates: Iterable[CampaignCandidate], now: datetime) -> list[CampaignCandidate]:
    """The live campaigns in evaluation order (`evaluation_order`)."""
    _aware(now)
    live = (c for c in candidates if is_live(c, now))
    return sorted(live, key=evaluation_order)


@dataclasses.dataclass(frozen=True)
class CandidateOutcome:
    """One campaign tried, and the first check it failed (None for the one that granted)."""

    campaign_id: str
    campaign_name: str
    priority: int
    failure: Failure | None

    @property
    def granted(self) -> bool:
        return self.failure is None


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """The winner (at most one — grants never stack) and every campaign tried, in order, up to and including
    the winner."""

    outcome: int  # an EvaluationOutcome
    winner: CampaignCandidate | None
    candidates: tuple[CandidateOutcome, ...]


def choose_campaign(
    candidates: Sequence[CampaignCandidate],
    facts: SessionFacts,
    usage_by_campaign: Mapping[str, DriverUsage],
    now: datetime,
) -> Evaluation:
    """The campaign that pays this ended session, or why none does. `usage_by_campaign` is keyed by
    campaign id (missing = no grants yet). Campaigns not active or outside their date range at `now` are not
    candidates and are not listed. If the caller's atomic budget/cap update for the winner then fails (a
    concurrent grant won the race), it calls again with that campaign's fresh numbers and the next candidate
    is tried."""
    if facts.duration_minutes < MIN_EVALUATED_DURATION_MINUTES:
        return Evaluation(EvaluationOutcome.EVALUATION_OUTCOME_SESSION_TOO_SHORT, None, ())
    tried: list[CandidateOutcome] = []
    for candidate in rank_candidates(candidates, now):
        usage = usage_by_campaign.get(candidate.campaign_id, DriverUsage())
        failure = evaluate_candidate(candidate, facts, usage)
        tried.append(CandidateOutcome(candidate.campaign_id, candidate.name, candidate.priority, failure))
        if failure is None:
            return Evaluation(EvaluationOutcome.EVALUATION_OUTCOME_GRANTED, candidate, tuple(tried))
    return Evaluation(EvaluationOutcome.EVALUATION_OUTCOME_NO_MATCH, None, tuple(tried))


# --- reputation ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Tier:
    name: str
    min_points: int
    color: str


TIERS = (
    Tier("Bronze", 0, "#78716c"),
    Tier("Silver", 100, "#64748b"),
    Tier("Gold", 300, "#eab308"),
    Tier("Platinum", 700, "#06b6d4"),
)
BASE_SESSION_POINTS = 5  # an ended session that earned no grant
BASE_SESSION_MIN_QUALITY_EXCLUSIVE = 30  # quality must be > 30


@dataclasses.dataclass(frozen=True)
class Reputation:
    points: int
    tier: str
    tier_color: str
    next_tier: str | None  # None at the top tier
    points_to_next: int | None  # None at the top tier
    progress_to_next: float  # ∈ [0, 1]; 1.0 at the top tier. A display ratio, not money.


def reputation(points: int) -> Reputation:
    """Tier and progress for a point total (negative totals count as 0)."""
    points = max(0, points)
    index = max(i for i, tier in enumerate(TIERS) if points >= tier.min_points)
    tier = TIERS[index]
    if index == len(TIERS) - 1:
        return Reputation(points, tier.name, tier.color, None, None, 1.0)
    upper = TIERS[index + 1]
    progress = (points - tier.min_points) / (upper.min_points - tier.min_points)
    return Reputation(
        points, tier.name, tier.color, upper.name, upper.min_points - points, min(1.0, max(0.0, progress))
    )


def reputation_points_for_session(granted_amount: int | None, duration_minutes: int, quality_score: int) -> int:
    """Points one ended session adds: the grant's amount (1 per cent/Nova; every grant counts, unlike the
    first implementation, which gave campaign grants none), or +5 without a grant when it lasted > 0 min and
    its quality score is > 30, else 0."""
    if granted_amount is not None:
        if granted_amount < 0:
            raise ValueError("a grant amount is never negative")
        return granted_amount
    if duration_minutes > 0 and quality_score > BASE_SESSION_MIN_QUALITY_EXCLUSIVE:
        return BASE_SESSION_POINTS
    return 0


def streak_days(session_local_dates: Set[date], today: date) -> int:
    """Consecutive calendar days with a completed session, counting back from today (both in the driver's
    zone, see `local_day`); no session today → 0, and the first gap stops the count."""
    days = 0
    while today - timedelta(days=days) in session_local_dates:
        days += 1
    return days


# --- drivers' "earn here" -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Place:
    """Where a driver looks for campaigns: a charger (with its network and zone when known) and/or a point."""

    charger_id: str = ""
    network: str = ""
    zone_id: str = ""
    lat: float | None = None
    lng: float | None = None

    @functools.cached_property
    def point(self) -> tuple[float, float, float] | None:
        """The point as a unit vector (computed once per place, compared with every geo campaign)."""
        return None if self.lat is None or self.lng is None else unit_vector(self.lat, self.lng)


def place_admits(rules: CampaignRuleSet, place: Place) -> bool:
    """Whether a session at this place could pass the campaign's place rules. A charger rule needs the charger;
    a network, zone or geo rule is judged only when the place says (an unknown network does not hide a
    campaign the driver may well earn at the charger they pick). The geo test errs on the side of admitting
    (a metre wider than the rule): it chooses candidates, the rule decides."""
    if rules.charger_ids and place.charger_id not in rules.charger_ids:
        return False
    if rules.charger_networks and place.network and _fold(place.network) not in rules.charger_networks:
        return False
    if rules.zone_ids and place.zone_id and place.zone_id not in rules.zone_ids:
        return False
    point = place.point
    if rules.geo is not None and point is not None:
        cx, cy, cz = rules.geo.centre
        return (cx - point[0]) ** 2 + (cy - point[1]) ** 2 + (cz - point[2]) ** 2 <= rules.geo.reach_chord2
    return True


def percent_used(spent: int, budget: int) -> float:
    """spent / budget * 100, half-up to one decimal (a display ratio; 0 for an empty budget)."""
    if budget <= 0:
        return 0.0
    tenths = (spent * 1000 * 2 + budget) // (budget * 2)
    return tenths / 10


# --- sponsors' dry run --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Simulation:
    sessions_evaluated: int
    sessions_matched: int
    grants: int
    spend_cents: int
    unique_drivers: int
    budget_exhausted_at: datetime | None
    failures: list[tuple[int, int]]  # (RuleFailure, sessions), most frequent first


def simulate(candidate: CampaignCandidate, sessions: Iterable[SessionFacts]) -> Simulation:
    """The campaign alone over past ended sessions, in the order given (time order): its rules, its caps
    counted from its own simulated grants, its budget and max_sessions. Sessions shorter than a minute are
    not evaluated, as in EvaluateSession."""
    remaining, granted_sessions = candidate.remaining_cents, candidate.sessions_granted
    per_day: dict[tuple[str, date], int] = {}
    per_campaign: dict[str, int] = {}
    per_charger: dict[tuple[str, str], int] = {}
    failures: dict[int, int] = {}
    drivers: set[str] = set()
    evaluated = matched = grants = spend = 0
    exhausted_at: datetime | None = None
    for facts in sessions:
        if facts.duration_minutes < MIN_EVALUATED_DURATION_MINUTES:
            continue
        evaluated += 1
        day = local_day(facts.started_at, candidate.time_zone)
        usage = DriverUsage(
            grants_on_day=per_day.get((facts.driver_id, day), 0),
            grants_in_campaign=per_campaign.get(facts.driver_id, 0),
            grants_at_charger=per_charger.get((facts.driver_id, facts.charger_id), 0) if facts.charger_id else 0,
        )
        state = dataclasses.replace(candidate, remaining_cents=remaining, sessions_granted=granted_sessions)
        rule_failure = first_failed_rule(candidate.rules, facts, candidate.time_zone)
        if rule_failure is None:
            matched += 1
        failure = rule_failure or caps_allow(candidate.caps, usage) or budget_allows(state)
        if failure is not None:
            failures[failure.rule] = failures.get(failure.rule, 0) + 1
            continue
        grants += 1
        spend += candidate.reward_cents
        remaining -= candidate.reward_cents
        granted_sessions += 1
        drivers.add(facts.driver_id)
        per_day[(facts.driver_id, day)] = usage.grants_on_day + 1
        per_campaign[facts.driver_id] = usage.grants_in_campaign + 1
        if facts.charger_id:
            per_charger[(facts.driver_id, facts.charger_id)] = usage.grants_at_charger + 1
        full = candidate.max_sessions is not None and granted_sessions >= candidate.max_sessions
        if exhausted_at is None and (remaining < candidate.reward_cents or full):
            exhausted_at = facts.ended_at
    ranked = sorted(failures.items(), key=lambda item: (-item[1], item[0]))
    return Simulation(evaluated, matched, grants, spend, len(drivers), exhausted_at, ranked)
