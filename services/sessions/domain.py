"""Pure rules of charging sessions: what a vehicle reading does to the driver's session, the quality score, how
soon the app should poll again, the location trail, stale sessions, EV verification codes. No I/O and no
clock reads: the time is an argument.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

CHARGING_STATES = frozenset({"Charging", "Starting"})  # DOMAIN: charging ⇔ the vehicle reports one of these
POLL_WINDOW = timedelta(seconds=30)  # at most one vehicle-API read per driver per window
CHARGER_MATCH_RADIUS_M = 500.0  # nearest charger within this great-circle distance
REOPEN_WITHIN = timedelta(minutes=30)  # a car that resumes charging this soon after these ends reopens it
REOPENABLE_END_REASONS = frozenset({"stale_cleanup", "manual"})
STALE_AFTER = timedelta(minutes=15)  # no vehicle data for this long ends the session
WATCH_INTERVAL = timedelta(minutes=2)  # the session watcher reads every active session at least this often
TRAIL_MAX_POINTS = 120
EV_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # A-Z without I and O, plus 2-9: 32 symbols
EV_CODE_LENGTH = 4
EV_CODE_VALIDITY = timedelta(hours=2)


def is_charging(charging_state: str | None) -> bool:
    return charging_state in CHARGING_STATES


def duration_minutes(start: datetime, end: datetime) -> int:
    """Whole minutes, floor((end - start) / 60 s); never negative."""
    return max(0, math.floor((end - start).total_seconds() / 60))


# Plausibility (anti-fraud, on top of DOMAIN's score): what a real charge cannot look like.
NO_ENERGY_AFTER_MIN = 10  # this long at a real power and nothing delivered …
NO_ENERGY_FROM_KW = 7.0  # … while reporting at least this power
ENERGY_TOLERANCE = 1.15  # kWh may exceed power x time by this factor (+ ENERGY_SLACK_KWH) for rounding and ramps
ENERGY_SLACK_KWH = 0.5
FLAT_BATTERY_AFTER_MIN = 30  # a "charge" this long whose battery did not rise
FAR_FROM_CHARGER_M = 1_000.0  # the car this far from the matched charger while the session ran
RATING_TOLERANCE = 1.10  # power above the charger's rating by more than this factor
PENALTY_NO_ENERGY = 45
PENALTY_TOO_MUCH_ENERGY = 45
PENALTY_FLAT_BATTERY = 20
PENALTY_FAR_FROM_CHARGER = 45
PENALTY_ABOVE_RATING = 30


@dataclasses.dataclass(frozen=True)
class Plausibility:
    """What the session's readings say besides duration and energy, for the plausibility penalties."""

    max_power_kw: float | None = None  # the highest power the vehicle reported
    charger_rating_kw: float | None = None  # the matched charger's rated power (catalog)
    farthest_from_charger_m: float | None = None  # the car's farthest reported position from the matched charger


def plausibility_penalties(
    minutes: int,
    kwh_delivered: float,
    *,
    battery_start: float | None,
    battery_end: float | None,
    seen: Plausibility,
) -> dict[str, int]:
    """The penalties a session earns, by name (empty for a plausible one)."""
    penalties: dict[str, int] = {}
    power = seen.max_power_kw
    if power is not None and power >= NO_ENERGY_FROM_KW and minutes >= NO_ENERGY_AFTER_MIN and kwh_delivered <= 0:
        penalties["no_energy"] = PENALTY_NO_ENERGY
    ceiling_kw = power if power else seen.charger_rating_kw
    if ceiling_kw and kwh_delivered > ceiling_kw * minutes / 60 * ENERGY_TOLERANCE + ENERGY_SLACK_KWH:
        penalties["too_much_energy"] = PENALTY_TOO_MUCH_ENERGY
    if (
        minutes >= FLAT_BATTERY_AFTER_MIN
        and battery_start is not None
        and battery_end is not None
        and battery_end <= battery_start
    ):
        penalties["flat_battery"] = PENALTY_FLAT_BATTERY
    if seen.farthest_from_charger_m is not None and seen.farthest_from_charger_m > FAR_FROM_CHARGER_M:
        penalties["far_from_charger"] = PENALTY_FAR_FROM_CHARGER
    if power is not None and seen.charger_rating_kw and power > seen.charger_rating_kw * RATING_TOLERANCE:
        penalties["above_rating"] = PENALTY_ABOVE_RATING
    return penalties


def quality_score(
    minutes: int,
    kwh_delivered: float,
    *,
    verified: bool,
    battery_start: float | None,
    battery_end: float | None,
    seen: Plausibility | None = None,
) -> int:
    """The anti-fraud score of an ended session, 0-100 (DOMAIN, Charging sessions). Duration rules apply only
    to a non-zero duration; over a day is 0 outright. Then the plausibility penalties (`seen`)."""
    if minutes > 1440:
        return 0
    score = 50
    if 240 < minutes <= 1440:
        score -= 50
    elif 15 <= minutes <= 240:
        score += 20
    elif 5 <= minutes < 15:
        score += 10
    elif 0 < minutes < 2:
        score -= 30
    if kwh_delivered > 1.0:
        score += 15
    elif kwh_delivered > 0:
        score += 5
    if verified:
        score += 10
    if battery_start and battery_end and battery_end > battery_start:
        score += 5
    if seen is not None:
        score -= sum(
            plausibility_penalties(
                minutes, kwh_delivered, battery_start=battery_start, battery_end=battery_end, seen=seen
            ).values()
        )
    return min(100, max(0, score))


def recommended_interval_s(*, charging: bool | None, minutes_to_full: float | None) -> int:
    """How soon the app should poll again: with minutes-to-full m, max(120, m/2 min); without an estimate, 60 s
    while charging and 300 s while the charging state is unknown or the car is not charging."""
    if charging and minutes_to_full is not None and minutes_to_full > 0:
        return max(120, math.floor(minutes_to_full / 2 * 60))
    if charging:
        return 60
    return 300


@dataclasses.dataclass(frozen=True)
class TrailPoint:
    lat: float
    lng: float
    at: datetime


def append_trail(trail: Sequence[TrailPoint], point: TrailPoint) -> list[TrailPoint]:
    """The trail with `point` added, keeping the TRAIL_MAX_POINTS newest."""
    return [*trail, point][-TRAIL_MAX_POINTS:]


class Action(enum.Enum):
    NOTHING = "nothing"  # not charging and no session
    OPEN = "open"  # charging and no session: open one (matching the nearest charger)
    REOPEN = "reopen"  # charging again soon after a stale/manual end of the same vehicle's session
    UPDATE = "update"  # charging and a session is open
    END = "end"  # not charging any more: end the session (unplugged)


@dataclasses.dataclass(frozen=True)
class RecentEnd:
    """The vehicle's most recently ended session, for the reopen rule."""

    session_id: str
    ended_at: datetime
    reason: str


def next_action(*, charging: bool, has_active: bool, recent_end: RecentEnd | None, now: datetime) -> Action:
    """What one vehicle reading does (the poll, pushed telemetry and webhooks share this)."""
    if charging and has_active:
        return Action.UPDATE
    if charging:
        reopenable = (
            recent_end is not None
            and recent_end.reason in REOPENABLE_END_REASONS
            and now - recent_end.ended_at <= REOPEN_WITHIN
        )
        return Action.REOPEN if reopenable else Action.OPEN
    return Action.END if has_active else Action.NOTHING


def is_stale(last_telemetry_at: datetime, now: datetime) -> bool:
    """No vehicle data for STALE_AFTER. Phone-location pings are not vehicle data and do not count."""
    return now - last_telemetry_at >= STALE_AFTER


def new_ev_code() -> str:
    """`EV-XXXX` from the 32-symbol alphabet (about a million codes); uniqueness among active codes is the
    store's job."""
    return "EV-" + "".join(secrets.choice(EV_CODE_ALPHABET) for _ in range(EV_CODE_LENGTH))


@dataclasses.dataclass(frozen=True)
class Telemetry:
    """One vehicle reading as the state machine uses it, whatever brought it (poll, Fleet Telemetry, Smartcar)."""

    at: datetime
    charging: bool
    battery_pct: int | None = None
    kwh_added: float | None = None
    power_kw: float | None = None
    minutes_to_full: int | None = None
    lat: float | None = None
    lng: float | None = None
    connector: str = ""
    verified: bool = True  # read from the vehicle API or signed telemetry


# --- Tesla Fleet Telemetry pushes ---------------------------------------------------------------------------


class MalformedPush(ValueError):
    """A correctly signed body that is not a telemetry record (WEBHOOK_PAYLOAD_INVALID)."""


@dataclasses.dataclass(frozen=True)
class FleetPush:
    """One Fleet Telemetry record: the VIN, and what it says. `charging` is None when the record carries no
    DetailedChargeState (it then only updates a session already open)."""

    vin: str
    at: datetime
    charging: bool | None
    battery_pct: int | None
    kwh_added: float | None
    power_kw: float | None
    lat: float | None
    lng: float | None


def _unwrap(value: object) -> object:
    """Fleet Telemetry wraps values: {"stringValue": "71"}, {"doubleValue": 7.2}, {"locationValue": {...}}."""
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value.values()))
    return value


def _number(value: object) -> float | None:
    value = _unwrap(value)
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def parse_fleet_push(body: object, received_at: datetime) -> FleetPush:
    """The fields the state machine uses from `{vin, data: [{key, value}], created_at?}`. Raises MalformedPush."""
    if not isinstance(body, dict) or not isinstance(body.get("vin"), str) or not body["vin"]:
        raise MalformedPush("a telemetry record needs a vin")
    data = body.get("data")
    if not isinstance(data, list) or not all(isinstance(d, dict) and isinstance(d.get("key"), str) for d in data):
        raise MalformedPush("data must be a list of {key, value}")
    values = {d["key"]: d.get("value") for d in data}
    at = received_at
    if isinstance(body.get("created_at"), str):
        try:
            parsed = datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))
        except ValueError as exc:
            raise MalformedPush("created_at is not an RFC 3339 time") from exc
        if parsed.tzinfo is not None:
            at = min(parsed, received_at)  # a clock ahead of ours never dates a reading in the future
    state = _unwrap(values.get("DetailedChargeState"))
    charging = None if state is None else str(state).removeprefix("DetailedChargeState") in CHARGING_STATES
    location = _unwrap(values.get("Location"))
    lat = lng = None
    if isinstance(location, dict):
        lat, lng = _number(location.get("latitude")), _number(location.get("longitude"))
        if lat is None or lng is None or not (-90 <= lat <= 90 and -180 <= lng <= 180):
            lat = lng = None
    battery = _number(values.get("BatteryLevel"))
    power = _number(values.get("DCChargingPower")) or _number(values.get("ACChargingPower"))
    energy = _number(values.get("DCChargingEnergyIn")) or _number(values.get("ACChargingEnergyIn"))
    return FleetPush(
        vin=body["vin"],
        at=at,
        charging=charging,
        battery_pct=None if battery is None else round(battery),
        kwh_added=energy,
        power_kw=power,
        lat=lat,
        lng=lng,
    )
