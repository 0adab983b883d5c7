"""The pure rules of charging sessions (services/sessions/domain.py), at their boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.sessions.domain import (
    EV_CODE_ALPHABET,
    PENALTY_ABOVE_RATING,
    PENALTY_FAR_FROM_CHARGER,
    PENALTY_FLAT_BATTERY,
    PENALTY_NO_ENERGY,
    TRAIL_MAX_POINTS,
    Action,
    Plausibility,
    RecentEnd,
    TrailPoint,
    append_trail,
    duration_minutes,
    is_charging,
    is_stale,
    new_ev_code,
    next_action,
    plausibility_penalties,
    quality_score,
    recommended_interval_s,
)

NOW = datetime(2026, 6, 10, 18, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("state", "charging"),
    [
        ("Charging", True),
        ("Starting", True),
        ("Complete", False),
        ("Stopped", False),
        ("Disconnected", False),
        (None, False),
    ],
)
def test_charging_means_charging_or_starting(state: str | None, charging: bool) -> None:
    assert is_charging(state) is charging


def test_duration_is_whole_minutes_rounded_down() -> None:
    assert duration_minutes(NOW, NOW + timedelta(seconds=59)) == 0
    assert duration_minutes(NOW, NOW + timedelta(seconds=60)) == 1
    assert duration_minutes(NOW, NOW + timedelta(minutes=45, seconds=59)) == 45
    assert duration_minutes(NOW, NOW - timedelta(minutes=1)) == 0


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        (0, 50),
        (1, 20),
        (2, 50),
        (4, 50),
        (5, 60),
        (14, 60),
        (15, 70),
        (240, 70),
        (241, 0),
        (1440, 0),
        (1441, 0),
    ],
)
def test_quality_score_duration_bands(minutes: int, expected: int) -> None:
    assert quality_score(minutes, 0.0, verified=False, battery_start=None, battery_end=None) == expected


def test_quality_score_energy_verification_and_battery() -> None:
    assert quality_score(30, 1.0, verified=False, battery_start=None, battery_end=None) == 75  # 0 < kWh <= 1
    assert quality_score(30, 1.01, verified=False, battery_start=None, battery_end=None) == 85
    assert quality_score(30, 20.0, verified=True, battery_start=40, battery_end=70) == 100
    assert quality_score(30, 20.0, verified=True, battery_start=70, battery_end=70) == 95  # battery did not rise
    assert quality_score(2000, 50.0, verified=True, battery_start=10, battery_end=90) == 0  # over a day: 0 outright


@given(
    minutes=st.integers(0, 5000),
    kwh=st.floats(0, 500, allow_nan=False),
    verified=st.booleans(),
    start=st.none() | st.floats(0, 100),
    end=st.none() | st.floats(0, 100),
)
def test_quality_score_stays_between_0_and_100(
    minutes: int, kwh: float, verified: bool, start: float | None, end: float | None
) -> None:
    assert 0 <= quality_score(minutes, kwh, verified=verified, battery_start=start, battery_end=end) <= 100


def test_recommended_interval() -> None:
    assert recommended_interval_s(charging=True, minutes_to_full=300) == 9000  # 150 min
    assert recommended_interval_s(charging=True, minutes_to_full=4) == 120  # never below 2 min
    assert recommended_interval_s(charging=True, minutes_to_full=None) == 60
    assert recommended_interval_s(charging=None, minutes_to_full=None) == 300
    assert recommended_interval_s(charging=False, minutes_to_full=30) == 300


def test_the_trail_keeps_the_120_newest_points() -> None:
    trail: list[TrailPoint] = []
    for n in range(TRAIL_MAX_POINTS + 5):
        trail = append_trail(trail, TrailPoint(30.0, -97.0 + n / 1000, NOW + timedelta(seconds=n)))
    assert len(trail) == TRAIL_MAX_POINTS
    assert trail[0].at == NOW + timedelta(seconds=5)
    assert trail[-1].at == NOW + timedelta(seconds=TRAIL_MAX_POINTS + 4)


def test_transitions() -> None:
    assert next_action(charging=False, has_active=False, recent_end=None, now=NOW) is Action.NOTHING
    assert next_action(charging=True, has_active=False, recent_end=None, now=NOW) is Action.OPEN
    assert next_action(charging=True, has_active=True, recent_end=None, now=NOW) is Action.UPDATE
    assert next_action(charging=False, has_active=True, recent_end=None, now=NOW) is Action.END


@pytest.mark.parametrize(
    ("reason", "ago", "action"),
    [
        ("stale_cleanup", timedelta(minutes=30), Action.REOPEN),
        ("manual", timedelta(minutes=29, seconds=59), Action.REOPEN),
        ("stale_cleanup", timedelta(minutes=30, seconds=1), Action.OPEN),
        ("unplugged", timedelta(minutes=1), Action.OPEN),  # a genuine end: the next charge is a new session
        ("telemetry_disconnected", timedelta(minutes=1), Action.OPEN),
    ],
)
def test_reopen_within_30_minutes_of_a_stale_or_manual_end(reason: str, ago: timedelta, action: Action) -> None:
    recent = RecentEnd("s-1", NOW - ago, reason)
    assert next_action(charging=True, has_active=False, recent_end=recent, now=NOW) is action


def test_a_session_is_stale_after_15_minutes_without_vehicle_data() -> None:
    assert not is_stale(NOW - timedelta(minutes=14, seconds=59), NOW)
    assert is_stale(NOW - timedelta(minutes=15), NOW)


def test_ev_codes_use_the_32_symbol_alphabet() -> None:
    assert len(EV_CODE_ALPHABET) == 32 and not set("IO01") & set(EV_CODE_ALPHABET)
    codes = {new_ev_code() for _ in range(200)}
    assert all(c.startswith("EV-") and len(c) == 7 and set(c[3:]) <= set(EV_CODE_ALPHABET) for c in codes)
    assert len(codes) > 190  # random, not a sequence


# --- plausibility penalties -------------------------------------------------------------------------------------

PLAUSIBLE = Plausibility(max_power_kw=50.0, charger_rating_kw=250.0, farthest_from_charger_m=40.0)


def _score(minutes: int, kwh: float, seen: Plausibility, start: float | None = 40, end: float | None = 60) -> int:
    return quality_score(minutes, kwh, verified=True, battery_start=start, battery_end=end, seen=seen)


def test_a_plausible_charge_keeps_its_score() -> None:
    assert _score(18, 14.0, PLAUSIBLE) == 100
    # make run's demo session: two and a half minutes at 50 kW, about 2 kWh.
    assert _score(2, 2.0, PLAUSIBLE, start=50, end=52) == 80


def test_no_energy_after_ten_minutes_at_a_real_power_is_penalised() -> None:
    assert _score(18, 0.0, PLAUSIBLE, end=40) == 80 - PENALTY_NO_ENERGY  # was 80 and paid; now below 40
    assert _score(18, 0.0, PLAUSIBLE, end=40) < 40
    assert _score(9, 0.0, PLAUSIBLE, end=40) == 70  # not yet ten minutes
    unknown_power = Plausibility(charger_rating_kw=250.0)
    assert _score(18, 0.0, unknown_power, end=40) == 80  # nothing to hold it against


def test_more_energy_than_the_power_allows_is_penalised() -> None:
    assert _score(20, 16.0, Plausibility(max_power_kw=7.0)) < _score(20, 2.3, Plausibility(max_power_kw=7.0))
    assert "too_much_energy" in plausibility_penalties(
        20, 16.0, battery_start=40, battery_end=60, seen=Plausibility(max_power_kw=7.0)
    )
    # Without a reported power, the charger's rating bounds it.
    assert "too_much_energy" in plausibility_penalties(
        10, 60.0, battery_start=40, battery_end=60, seen=Plausibility(charger_rating_kw=150.0)
    )
    assert plausibility_penalties(60, 7.0, battery_start=40, battery_end=60, seen=Plausibility(max_power_kw=7.0)) == {}


def test_a_long_charge_whose_battery_did_not_rise_is_penalised() -> None:
    assert plausibility_penalties(45, 20.0, battery_start=60, battery_end=60, seen=PLAUSIBLE) == {
        "flat_battery": PENALTY_FLAT_BATTERY
    }
    assert plausibility_penalties(20, 2.0, battery_start=60, battery_end=60, seen=PLAUSIBLE) == {}


def test_a_car_far_from_the_matched_charger_mid_session_is_penalised() -> None:
    far = Plausibility(max_power_kw=50.0, charger_rating_kw=250.0, farthest_from_charger_m=5_000.0)
    assert plausibility_penalties(30, 20.0, battery_start=40, battery_end=60, seen=far) == {
        "far_from_charger": PENALTY_FAR_FROM_CHARGER
    }


def test_power_above_the_chargers_rating_is_penalised() -> None:
    above = Plausibility(max_power_kw=150.0, charger_rating_kw=50.0)
    assert plausibility_penalties(30, 40.0, battery_start=40, battery_end=60, seen=above) == {
        "above_rating": PENALTY_ABOVE_RATING
    }
    assert _score(30, 40.0, above) == 100 - PENALTY_ABOVE_RATING
