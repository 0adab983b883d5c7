"""Pure rules of the merchants service: perks, walking estimates, opening hours, the "while you charge"
ranking, exclusive-offer windows, visit codes, preview-link signatures, and the portal's shareable lines.
No I/O, no clock reads: the time is an argument."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from services.common.geo import great_circle_m

# --- perks (DOMAIN: Merchants and checkout) ---------------------------------------------------------------

DEFAULT_PERK_CENTS = 300
DEFAULT_AOV_CENTS = 1500
RECOMMENDED_PERK_BPS = 1500  # 15 % of the average order value
PERK_STEP_CENTS = 50
MIN_RECOMMENDED_PERK_CENTS, MAX_RECOMMENDED_PERK_CENTS = 100, 500


@dataclasses.dataclass(frozen=True)
class Perk:
    cents: int
    source: str  # "custom", "recommended" or "default"
    label: str


def recommended_perk_cents(average_order_value_cents: int | None) -> int:
    """15 % of the AOV (default 1500 ¢), half-up to the nearest 50 ¢, clamped to [100, 500] — in integers, so
    1500 → 250 (the first implementation's float/banker's rounding gave 200 🐞) and 833 → 100 (one rounding:
    rounding to the cent first would give 150)."""
    aov = DEFAULT_AOV_CENTS if average_order_value_cents is None else average_order_value_cents
    # One rounding, of the exact 15 %: (aov * 1500 / 10000) / 50, half-up, in integers.
    steps = (aov * RECOMMENDED_PERK_BPS + PERK_STEP_CENTS * 10_000 // 2) // (PERK_STEP_CENTS * 10_000)
    return max(MIN_RECOMMENDED_PERK_CENTS, min(MAX_RECOMMENDED_PERK_CENTS, steps * PERK_STEP_CENTS))


def perk_label(cents: int) -> str:
    """ "$3 off any order", "$2.50 off any order"."""
    amount = f"${cents // 100}" if cents % 100 == 0 else f"${cents // 100}.{cents % 100:02d}"
    return f"{amount} off any order"


def merchant_perk(custom_cents: int, recommended_cents: int, label: str) -> Perk:
    """The perk at checkout: custom, else recommended, else 300 ¢."""
    if custom_cents > 0:
        cents, source = custom_cents, "custom"
    elif recommended_cents > 0:
        cents, source = recommended_cents, "recommended"
    else:
        cents, source = DEFAULT_PERK_CENTS, "default"
    return Perk(cents, source, label or perk_label(cents))


def discount_cap_cents(perk_cents: int, order_total_cents: int) -> int:
    """What a redemption asks of the ledger: min(perk, order total). The ledger then moves min(this, the
    driver's Nova) under its lock, which completes discount = min(perk, balance, order total) atomically."""
    return min(perk_cents, order_total_cents)


# --- walking -------------------------------------------------------------------------------------------------

WALK_DETOUR_FACTOR = 1.3  # streets are not straight lines
WALK_SPEED_M_PER_S = 1.3


def walk_estimate(charger: tuple[float, float], merchant: tuple[float, float]) -> tuple[int, int]:
    """(walking metres, walking seconds) from the great-circle distance, when no measured walk is given."""
    metres = round(great_circle_m(*charger, *merchant) * WALK_DETOUR_FACTOR)
    return metres, round(metres / WALK_SPEED_M_PER_S)


def moment_label(metres: float) -> str:
    """The merchant screen's label from the driver's distance (where they captured the intent)."""
    if metres <= 250:
        return "Steps from your charger"
    if metres <= 800:
        return f"{walk_minutes(round(metres * WALK_DETOUR_FACTOR / WALK_SPEED_M_PER_S))} min walk"
    return "Worth the trip"


def walk_minutes(walk_time_s: int) -> int:
    """Whole minutes, at least 1 (what the app shows)."""
    return max(1, round(walk_time_s / 60))


# --- opening hours -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OpeningPeriod:
    day_of_week: int  # ISO, Monday = 1
    open_minute: int
    close_minute: int  # < open_minute: closes after midnight


def open_status(periods: Sequence[OpeningPeriod], time_zone: str, now: datetime.datetime) -> tuple[bool, str | None]:
    """(open now, "HH:MM" local closing time or None). Unknown hours count as open (the app's default), with no
    closing time; an interval past midnight belongs to the day it starts."""
    if not periods:
        return True, None
    local = now.astimezone(ZoneInfo(time_zone))
    minute = local.hour * 60 + local.minute
    today = local.isoweekday()
    yesterday = 7 if today == 1 else today - 1
    for period in periods:
        overnight = period.close_minute <= period.open_minute
        if period.day_of_week == today and period.open_minute <= minute and (overnight or minute < period.close_minute):
            return True, _clock(period.close_minute)
        if period.day_of_week == yesterday and overnight and minute < period.close_minute:
            return True, _clock(period.close_minute)
    return False, None


def _clock(minute: int) -> str:
    return f"{minute // 60 % 24:02d}:{minute % 60:02d}"


def hours_today(periods: Sequence[OpeningPeriod], time_zone: str, now: datetime.datetime) -> str:
    """ "07:00-19:00" (several intervals joined by ", "), "Closed today", or "" when unknown."""
    if not periods:
        return ""
    today = now.astimezone(ZoneInfo(time_zone)).isoweekday()
    spans = [f"{_clock(p.open_minute)}-{_clock(p.close_minute)}" for p in periods if p.day_of_week == today]
    return ", ".join(spans) if spans else "Closed today"


# --- "while you charge" ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NearbyMerchant:
    merchant_id: str
    is_primary: bool
    open_now: bool
    walk_time_s: int
    perk_cents: int


def rank_for_charger(candidates: Sequence[NearbyMerchant], state: str) -> list[NearbyMerchant]:
    """The charger's primary merchant first, then open before closed, shorter walk, bigger perk, id (stable).
    One before charging (the app shows a single suggestion), up to three while charging."""
    ranked = sorted(
        candidates, key=lambda c: (not c.is_primary, not c.open_now, c.walk_time_s, -c.perk_cents, c.merchant_id)
    )
    return ranked[: 1 if state == "pre-charge" else 3]


# --- exclusive offers -----------------------------------------------------------------------------------------

EXCLUSIVE_RADIUS_M = 150.0
EXCLUSIVE_DURATION = datetime.timedelta(minutes=60)


def within_exclusive_radius(distance_m: float) -> bool:
    """150 m from the charger, the edge included."""
    return distance_m <= EXCLUSIVE_RADIUS_M


def remaining_seconds(expires_at: datetime.datetime, now: datetime.datetime) -> int:
    return max(0, math.ceil((expires_at - now).total_seconds()))


_NOT_ALNUM = re.compile(r"[^A-Z0-9]")


def short_code_base(name: str) -> str:
    """The upper-cased letters and digits of a store's name ("NERAVA" when it has none)."""
    return _NOT_ALNUM.sub("", name.upper()) or "NERAVA"


def short_code_candidates(name: str) -> list[str]:
    """The merchant's code in visit codes, in order of preference: the first 6 letters/digits of its upper-cased
    name, then a number in place of its last letters — 5 letters + 1…9, 4 + 10…99, 3 + 100…999, 2 + 1000…9999 —
    so that 11,110 stores of one name get a code of at most 6 characters."""
    base = short_code_base(name)
    candidates = [base[:6]]
    for digits in range(1, 5):
        candidates += [f"{base[: 6 - digits]}{n}" for n in range(10 ** (digits - 1), 10**digits)]
    return list(dict.fromkeys(candidates))  # a short name repeats some


def region_code(zone_slug: str) -> str:
    """Three letters of the zone ("austin-downtown" → "AUS"); "NRV" when the merchant has no zone."""
    letters = _NOT_ALNUM.sub("", zone_slug.upper())
    return letters[:3] if len(letters) >= 3 else "NRV"


def verification_code(region: str, short_code: str, visit_number: int) -> str:
    """ "AUS-ASADAS-023": the merchant's visit number of its local day, zero-padded to 3 digits."""
    return f"{region}-{short_code}-{visit_number:03d}"


# --- preview links -----------------------------------------------------------------------------------------------

PREVIEW_TTL = datetime.timedelta(days=7)


def preview_signature(key: bytes, merchant_id: str, expires_unix: int) -> str:
    """Hex HMAC-SHA256 over "<merchant_id>:<exp>" with the preview key (never the JWT secret 🐞)."""
    return hmac.new(key, f"{merchant_id}:{expires_unix}".encode(), hashlib.sha256).hexdigest()


def preview_valid(key: bytes, merchant_id: str, expires_unix: int, signature: str, now: datetime.datetime) -> bool:
    """Constant-time comparison; the expiry second itself is still valid."""
    if now.timestamp() > expires_unix:
        return False
    return hmac.compare_digest(preview_signature(key, merchant_id, expires_unix), signature)


# --- portal ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RedemptionTotals:
    total: int
    total_discount_cents: int
    last_7d: int
    last_30d: int
    last_30d_discount_cents: int


def shareable_lines(merchant_name: str, totals: RedemptionTotals) -> list[str]:
    """Ready-to-post lines, in order: this week, the last 30 days, the lifetime total (from 10 redemptions);
    a welcome line when none applies."""
    name = merchant_name or "our store"
    lines: list[str] = []
    if totals.last_7d > 0:
        rewards = "reward" if totals.last_7d == 1 else "rewards"
        lines.append(f"This week we supported {totals.last_7d} EV-driver {rewards} with Nerava.")
    if totals.last_30d > 0:
        if totals.last_30d_discount_cents >= 100:
            lines.append(f"EV drivers saved ${totals.last_30d_discount_cents // 100} at {name} in the last 30 days.")
        else:
            lines.append(f"EV drivers are earning and spending Nova at {name}.")
    if totals.total >= 10:
        lines.append(
            f"{totals.total} Nerava rewards redeemed at {name} so far — ${totals.total_discount_cents // 100} in all."
        )
    return lines or [f"Charging nearby? Spend your Nerava Nova at {name}."]


# Arrival codes: 6 characters a driver reads out or shows at the till, from an alphabet without look-alikes
# (no 0/O, 1/I/L): 31^6 ≈ 887 million codes, drawn at random (secrets) and unique among live sessions.
ARRIVAL_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
ARRIVAL_CODE_LENGTH = 6


def new_arrival_code() -> str:
    return "".join(secrets.choice(ARRIVAL_CODE_ALPHABET) for _ in range(ARRIVAL_CODE_LENGTH))


def normalized_arrival_code(typed: str) -> str:
    """What staff typed, as stored: upper case, without spaces or dashes."""
    return typed.strip().upper().replace(" ", "").replace("-", "")
