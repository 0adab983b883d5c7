"""Campaign fields as the console sends them: dates as days read in the campaign's time zone, the defaults of
the keys it never sends, and its edit body, whose `null` values clear fields.

Transport-free: the servicer (api.py) hands in strings and bytes and gets datetimes and typed requests back.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

import protovalidate
from google.protobuf import json_format
from nerava.incentives.v1 import incentives_pb2 as pb

from services.common.errors import InvalidArgument
from services.common.interceptors import _field_path as field_path
from services.incentives import domain
from services.incentives.reasons import Reason

# DOMAIN: the console sends neither a time zone nor a reward kind. Its campaigns run in the product's home
# market, and it shows each reward in dollars, i.e. as cash.
DEFAULT_TIME_ZONE = "America/Chicago"
DEFAULT_REWARD_KIND = pb.REWARD_KIND_CASH

# The fields an edit may write (UpdateCampaignRequest's update_mask vocabulary), in the contract's order.
EDITABLE_FIELDS = (
    "name",
    "description",
    "campaign_type",
    "priority",
    "reward_kind",
    "cost_per_session_cents",
    "budget_cents",
    "max_sessions",
    "start_date",
    "end_date",
    "time_zone",
    "rules",
    "caps",
)

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_STATUS_WORDS = {
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


def status_filter(word: str) -> int:
    """The CampaignStatus a ListCampaigns filter names (the contract restricts the words); 0 for none."""
    if not word:
        return pb.CAMPAIGN_STATUS_UNSPECIFIED
    return _STATUS_WORDS.get(word) or pb.CampaignStatus.Value(word)


def time_zone(name: str, field: str = "time_zone") -> str:
    """The campaign's zone name: the one given, or the default for the console that sends none."""
    name = name or DEFAULT_TIME_ZONE
    try:
        domain.parse_time_zone(name)
    except domain.UnknownTimeZone as exc:
        raise InvalidArgument([(field, f"{name!r} is not an IANA time zone")], reason=Reason.UNKNOWN_TIME_ZONE) from exc
    return name


def moment(text: str, zone: str, field: str, *, end: bool = False) -> datetime.datetime:
    """A campaign date as an aware UTC datetime.

    A day `YYYY-MM-DD` is read in the campaign's zone: a start is that day's first moment; an end is its last
    microsecond, so a campaign "until Dec 31" still pays a session that ends on the evening of the 31st.
    Anything else must be an RFC 3339 moment with its offset.
    """
    try:
        if _DAY.match(text):
            day = datetime.date.fromisoformat(text)
            tz = domain.parse_time_zone(zone)
            if end:
                # The next day's first moment minus one microsecond (DST-safe: the midnight is built in the zone).
                following = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time(), tzinfo=tz)
                return following.astimezone(datetime.UTC) - datetime.timedelta(microseconds=1)
            return datetime.datetime.combine(day, datetime.time(), tzinfo=tz).astimezone(datetime.UTC)
        parsed = datetime.datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            raise InvalidArgument([(field, "an RFC 3339 moment needs its offset (e.g. Z)")])
        return parsed.astimezone(datetime.UTC)
    except (ValueError, OverflowError) as exc:  # no such day, or a year at the ends of the calendar
        why = f"{text!r} is neither a calendar day YYYY-MM-DD nor an RFC 3339 moment"
        raise InvalidArgument([(field, why)]) from exc


def check_dates(start: datetime.datetime, end: datetime.datetime | None) -> None:
    if end is not None and end <= start:
        raise InvalidArgument([("end_date", "end_date must be after start_date", "end_date_after_start_date")])


def console_edit(campaign_id: str, body: bytes) -> pb.UpdateCampaignRequest:
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
    for name in EDITABLE_FIELDS:
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
