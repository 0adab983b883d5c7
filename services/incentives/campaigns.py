"""Sponsors' campaigns: creation, reads and listings, edits, the lifecycle (activate, pause, resume), the
funding the ledger reports, and the reports on one campaign (its grants, its budget, a dry run over past sessions).

Ownership is checked here: a sponsor acts only on campaigns they created, an admin on all; a campaign the actor
may not see is CAMPAIGN_NOT_FOUND, so ids of other sponsors' campaigns are not confirmed to exist.

Transport-free: the servicer (api.py) hands in the actor, ids and plain values (a CampaignDraft, a CampaignEdit);
these functions read and write through store.py's queries, take the time from the clock, raise domain errors and
answer campaigns rows or the dataclasses below, which messages.py builds into answers.
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from nerava.incentives.v1 import incentives_pb2 as pb
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import audit
from services.common.errors import FailedPrecondition, InvalidArgument
from services.incentives import domain, funding, store
from services.incentives.funding import Actor, check_not_expired, invalid_transition, not_found
from services.incentives.index import CampaignIndex, IndexedCampaign
from services.incentives.peers import ChargerDirectory
from services.incentives.reasons import Reason

# Exhausted too: a campaign stopped by max_sessions with budget left can raise its cap and resume.
EDITABLE = frozenset({pb.CAMPAIGN_STATUS_DRAFT, pb.CAMPAIGN_STATUS_PAUSED, pb.CAMPAIGN_STATUS_EXHAUSTED})
# DOMAIN (another issue): a new campaign without a minimum quality score gets this one; 0 turns it off.
DEFAULT_MIN_QUALITY_SCORE = 40
DEFAULT_PRIORITY = 100
# DOMAIN: the console sends no reward kind; it shows each reward in dollars, i.e. as cash.
DEFAULT_REWARD_KIND = pb.REWARD_KIND_CASH
# The fields an edit may write (UpdateCampaignRequest's update_mask vocabulary), in the contract's order.
EDIT_FIELDS = (
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
SIMULATION_DEFAULT = datetime.timedelta(days=30)
SIMULATION_MAX = datetime.timedelta(days=90)
SIMULATION_MAX_SESSIONS = 200_000


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def parse_uuid(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise InvalidArgument([(field, "value must be a valid UUID")]) from exc


@dataclasses.dataclass(frozen=True)
class CampaignDraft:
    """A new campaign as its sponsor gives it, parsed (the defaults of what they leave out are applied here)."""

    sponsor_name: str
    name: str
    cost_per_session_cents: int
    budget_cents: int  # gross: the platform fee comes out of it
    start_date: domain.CampaignDate
    end_date: domain.CampaignDate | None = None  # None: open-ended
    time_zone: str = domain.DEFAULT_TIME_ZONE  # a known IANA zone (the dates' days are read in it)
    sponsor_email: str = ""
    sponsor_logo_url: str = ""
    sponsor_type: str = ""
    description: str = ""
    campaign_type: str = ""  # "": custom
    priority: int | None = None  # None: DEFAULT_PRIORITY
    reward_kind: int = pb.REWARD_KIND_UNSPECIFIED  # a RewardKind; unspecified: DEFAULT_REWARD_KIND
    max_sessions: int | None = None
    # A min_quality_score left out (None) is DEFAULT_MIN_QUALITY_SCORE.
    rules: domain.TargetingRules = dataclasses.field(default_factory=domain.TargetingRules)
    caps: domain.DriverCaps = dataclasses.field(default_factory=domain.DriverCaps)
    request_id: uuid.UUID | None = None  # the same one again answers the campaign the first call made


@dataclasses.dataclass(frozen=True)
class CampaignEdit:
    """An edit of a campaign: `fields` names the fields it writes (the update mask, in these attributes' names),
    each of which takes the value here; the others are left as stored. None clears: back to the default priority,
    no max_sessions, an open-ended end_date."""

    fields: frozenset[str]
    name: str = ""
    description: str = ""
    campaign_type: str = ""  # "": custom
    priority: int | None = None
    reward_kind: int = pb.REWARD_KIND_UNSPECIFIED  # a RewardKind
    cost_per_session_cents: int = 0
    budget_cents: int = 0
    max_sessions: int | None = None
    start_date: domain.CampaignDate | None = None  # required when written
    end_date: domain.CampaignDate | None = None
    # A known IANA zone. Days are read in the zone the campaign has after the edit, which may be the stored one:
    # that is why the dates stay days here.
    time_zone: str = domain.DEFAULT_TIME_ZONE
    rules: domain.TargetingRules = dataclasses.field(default_factory=domain.TargetingRules)
    caps: domain.DriverCaps = dataclasses.field(default_factory=domain.DriverCaps)

    def __post_init__(self) -> None:
        unknown = self.fields.difference(EDIT_FIELDS)
        if unknown:
            raise ValueError(f"not editable: {sorted(unknown)}")
        if "start_date" in self.fields and self.start_date is None:
            raise ValueError("a campaign's start_date cannot be cleared")


@dataclasses.dataclass(frozen=True)
class CampaignPage:
    campaigns: list[store.Row]
    more: bool


@dataclasses.dataclass(frozen=True)
class GrantPage:
    campaign_name: str
    grants: list[store.Row]
    total: int


@dataclasses.dataclass(frozen=True)
class Budget:
    """Where a campaign's money stands (GetBudget). Gross and fee are 0 until it is funded."""

    budget_cents: int  # net of the platform fee
    spent_cents: int
    remaining_cents: int  # what is left to grant: refunded budget is gone
    pct_used: float
    sessions_granted: int
    cost_per_session_cents: int
    remaining_sessions: int
    gross_funding_cents: int
    platform_fee_cents: int
    max_sessions: int | None


@dataclasses.dataclass(frozen=True)
class DryRun:
    """The campaign run alone over the sessions evaluated in [since, until)."""

    result: domain.Simulation
    since: datetime.datetime
    until: datetime.datetime


@dataclasses.dataclass(frozen=True)
class DriverOffer:
    """A live campaign a driver could earn, and the first rule that refuses them now (None: eligible)."""

    campaign: IndexedCampaign
    failure: domain.Failure | None


@dataclasses.dataclass(frozen=True)
class DriverPage:
    offers: list[DriverOffer]
    more: bool


def _first_shown(entry: IndexedCampaign) -> tuple[int, int, datetime.datetime]:
    """The order a driver sees rewards in: highest first, then by priority, then the oldest campaign."""
    return (-entry.candidate.reward_cents, entry.candidate.priority, entry.candidate.created_at)


class Campaigns:
    """The campaign core: every change here refreshes the index the evaluations and the driver listings read."""

    def __init__(
        self,
        engine: AsyncEngine,
        index: CampaignIndex,
        *,
        platform_fee_bps: int,
        driver_email: Callable[[str], Awaitable[str]],
        chargers: ChargerDirectory,
        clock: Callable[[], datetime.datetime] = utc_now,
    ) -> None:
        self._engine = engine
        self._driver_email = driver_email
        self._chargers = chargers
        self._index = index
        self._fee_bps = platform_fee_bps
        self._clock = clock

    def _fee(self, gross: int) -> tuple[int, int]:
        """(platform fee, net budget) of a gross funding amount; the fee is floored, never more than its share."""
        fee = gross * self._fee_bps // 10_000
        return fee, gross - fee

    async def _owned(
        self, conn: AsyncConnection, campaign_id: str, actor: Actor, *, lock: bool = False
    ) -> sa.RowMapping:
        row = await store.campaign_row(conn, parse_uuid(campaign_id, "campaign_id"), lock=lock)
        if row is None or (row["created_by_user_id"] != actor.user_id and not actor.admin):
            raise not_found(campaign_id)
        return row

    # --- creation and reads --------------------------------------------------------------------------------

    async def create(self, draft: CampaignDraft, user_id: str) -> store.Row:
        """A DRAFT campaign of ``user_id``'s; the same request_id again answers the campaign the first call made."""
        zone = draft.time_zone
        start = _moment(draft.start_date, zone, "start_date")
        end = _moment(draft.end_date, zone, "end_date", end=True) if draft.end_date is not None else None
        _check_dates(start, end)
        fee, net = self._fee(draft.budget_cents)
        if net < draft.cost_per_session_cents:
            raise InvalidArgument(
                [("budget_cents", f"after the platform fee the budget is {net}¢, less than one reward")],
                reason=Reason.BUDGET_TOO_SMALL,
            )
        values = {
            "id": uuid.uuid4(),
            "created_by_user_id": user_id,
            "create_request_id": draft.request_id,
            "sponsor_name": draft.sponsor_name,
            "sponsor_email": draft.sponsor_email.lower(),
            "sponsor_logo_url": draft.sponsor_logo_url,
            "sponsor_type": draft.sponsor_type,
            "name": draft.name,
            "description": draft.description,
            "campaign_type": draft.campaign_type or "custom",
            "status": pb.CAMPAIGN_STATUS_DRAFT,
            "priority": DEFAULT_PRIORITY if draft.priority is None else draft.priority,
            "reward_kind": draft.reward_kind or DEFAULT_REWARD_KIND,
            "cost_per_session_cents": draft.cost_per_session_cents,
            "gross_funding_cents": draft.budget_cents,
            "platform_fee_cents": fee,
            "budget_cents": net,
            "spent_cents": 0,
            "max_sessions": draft.max_sessions,
            "sessions_granted": 0,
            "start_date": start,
            "end_date": end,
            "time_zone": zone,
            "rules": store.rules_to_json(_with_default_quality(draft.rules)),
            "cap_per_day": draft.caps.per_day,
            "cap_per_campaign": draft.caps.per_campaign,
            "cap_per_charger": draft.caps.per_charger,
            "funding_status": pb.FUNDING_STATUS_UNFUNDED,
            "pause_reason": "",
        }
        try:
            async with self._engine.begin() as conn:
                row = await store.insert_campaign(conn, values)
        except IntegrityError:
            if draft.request_id is None:
                raise
            # The same request_id again: the campaign the first call created.
            async with self._engine.connect() as conn:
                row = await store.campaign_created_by_request(conn, user_id, draft.request_id)
        return row

    async def get(self, campaign_id: str, actor: Actor) -> store.Row:
        async with self._engine.connect() as conn:
            return await self._owned(conn, campaign_id, actor)

    async def list_page(self, actor: Actor, *, status: int, sponsor_name: str, offset: int, size: int) -> CampaignPage:
        """One page of the campaigns the actor sees (their own; an admin all), newest first; status 0: any."""
        async with self._engine.connect() as conn:
            rows = await store.campaign_page(
                conn,
                owner=None if actor.admin else actor.user_id,
                status=status,
                sponsor_name=sponsor_name.strip().lower() if sponsor_name else None,
                offset=offset,
                limit=size + 1,
            )
        return CampaignPage(list(rows[:size]), more=len(rows) > size)

    # --- edits ---------------------------------------------------------------------------------------------

    async def edit(self, campaign_id: str, edit: CampaignEdit, actor: Actor) -> store.Row:
        """Writes the edit's fields to a campaign that is not running."""
        async with self._engine.begin() as conn:
            row = await self._owned(conn, campaign_id, actor, lock=True)
            if row["status"] not in EDITABLE:
                raise FailedPrecondition(
                    Reason.CAMPAIGN_NOT_EDITABLE,
                    "only draft, paused or exhausted campaigns can be edited",
                    {"status": pb.CampaignStatus.Name(row["status"])},
                )
            values = self._edited_values(edit, row)
            if values:
                row = await store.update_campaign(conn, row["id"], **values)
        await self._index.refresh()
        return row

    def _edited_values(  # noqa: PLR0912 - one branch per editable field reads best
        self, edit: CampaignEdit, row: sa.RowMapping
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        written = edit.fields
        locked = row["funding_status"] != pb.FUNDING_STATUS_UNFUNDED
        if "name" in written:
            values["name"] = edit.name
        if "description" in written:
            values["description"] = edit.description
        if "campaign_type" in written:
            values["campaign_type"] = edit.campaign_type or "custom"
        if "priority" in written:
            values["priority"] = DEFAULT_PRIORITY if edit.priority is None else edit.priority
        if "reward_kind" in written and edit.reward_kind != row["reward_kind"]:
            if locked:
                # The budget account is in the reward's currency; money paid as cash cannot become points.
                raise FailedPrecondition(
                    Reason.BUDGET_LOCKED,
                    "the reward kind cannot change once a checkout was opened",
                    {"field": "reward_kind"},
                )
            values["reward_kind"] = edit.reward_kind
        if "cost_per_session_cents" in written:
            values["cost_per_session_cents"] = edit.cost_per_session_cents
        if "budget_cents" in written and edit.budget_cents != row["gross_funding_cents"]:
            if locked:
                raise FailedPrecondition(
                    Reason.BUDGET_LOCKED,
                    "the budget cannot change once a checkout was opened",
                    {"field": "budget_cents"},
                )
            fee, net = self._fee(edit.budget_cents)
            values.update(gross_funding_cents=edit.budget_cents, platform_fee_cents=fee, budget_cents=net)
        if "max_sessions" in written:
            values["max_sessions"] = edit.max_sessions
        if "time_zone" in written:
            values["time_zone"] = edit.time_zone
        # Days are read in the zone the campaign has after this edit.
        zone = values.get("time_zone", row["time_zone"])
        if "start_date" in written and edit.start_date is not None:  # never cleared (CampaignEdit refuses it)
            values["start_date"] = _moment(edit.start_date, zone, "start_date")
        if "end_date" in written:
            values["end_date"] = (
                _moment(edit.end_date, zone, "end_date", end=True) if edit.end_date is not None else None
            )
        if "rules" in written:
            values["rules"] = store.rules_to_json(edit.rules)
        if "caps" in written:
            values.update(
                cap_per_day=edit.caps.per_day,
                cap_per_campaign=edit.caps.per_campaign,
                cap_per_charger=edit.caps.per_charger,
            )
        merged = {**row, **values}
        _check_dates(merged["start_date"], merged["end_date"])
        # Only an edit of the reward or the budget can leave less than one reward (a paused campaign that spent
        # most of its budget may still be renamed).
        touched = {"cost_per_session_cents", "budget_cents"} & values.keys()
        if touched and funding.remaining(merged) < merged["cost_per_session_cents"]:
            field = "cost_per_session_cents" if "cost_per_session_cents" in touched else "budget_cents"
            raise InvalidArgument(
                [(field, "the remaining budget (after the platform fee) would be less than one reward")],
                reason=Reason.BUDGET_TOO_SMALL,
            )
        if merged["max_sessions"] is not None and merged["max_sessions"] < merged["sessions_granted"]:
            raise InvalidArgument([("max_sessions", f"{merged['sessions_granted']} sessions were already granted")])
        return values

    # --- lifecycle -----------------------------------------------------------------------------------------

    async def activate(self, campaign_id: str, actor: Actor) -> store.Row:
        async with self._engine.begin() as conn:
            row = await self._owned(conn, campaign_id, actor, lock=True)
            if row["status"] != pb.CAMPAIGN_STATUS_DRAFT:
                raise invalid_transition(row["status"], pb.CAMPAIGN_STATUS_ACTIVE)
            check_not_expired(row, self._clock())
            # No campaign grants without money, whoever activates it: an admin funds it from the platform first.
            if row["funding_status"] != pb.FUNDING_STATUS_FUNDED:
                raise FailedPrecondition(Reason.CAMPAIGN_NOT_FUNDED, "the campaign's budget has not been funded yet")
            updated = await store.update_campaign(conn, row["id"], status=pb.CAMPAIGN_STATUS_ACTIVE)
            await audit.record(conn, "campaign.activate", f"campaign:{row['id']}")
        await self._index.refresh()
        return updated

    async def pause(self, campaign_id: str, reason: str, actor: Actor) -> store.Row:
        async with self._engine.begin() as conn:
            row = await self._owned(conn, campaign_id, actor, lock=True)
            if row["status"] != pb.CAMPAIGN_STATUS_ACTIVE:
                raise invalid_transition(row["status"], pb.CAMPAIGN_STATUS_PAUSED)
            updated = await store.update_campaign(
                conn, row["id"], status=pb.CAMPAIGN_STATUS_PAUSED, pause_reason=reason
            )
        await self._index.refresh()
        return updated

    async def resume(self, campaign_id: str, actor: Actor) -> store.Row:
        async with self._engine.begin() as conn:
            row = await self._owned(conn, campaign_id, actor, lock=True)
            if row["status"] not in (pb.CAMPAIGN_STATUS_PAUSED, pb.CAMPAIGN_STATUS_EXHAUSTED):
                raise invalid_transition(row["status"], pb.CAMPAIGN_STATUS_ACTIVE)
            check_not_expired(row, self._clock())
            full = row["max_sessions"] is not None and row["sessions_granted"] >= row["max_sessions"]
            if funding.remaining(row) < row["cost_per_session_cents"] or full:
                raise FailedPrecondition(Reason.BUDGET_EXHAUSTED, "the remaining budget cannot pay one more reward")
            updated = await store.update_campaign(conn, row["id"], status=pb.CAMPAIGN_STATUS_ACTIVE)
        await self._index.refresh()
        return updated

    async def record_funding(
        self,
        campaign_id: str,
        *,
        checkout_session_id: str,
        gross_cents: int,
        platform_fee_cents: int,
        net_budget_cents: int,
        paid_at: datetime.datetime,
    ) -> tuple[store.Row, bool]:
        """The ledger's word that a checkout was paid: (the campaign, whether this payment was recorded before).
        A DRAFT campaign that has not expired becomes ACTIVE."""
        campaign_uuid = parse_uuid(campaign_id, "campaign_id")
        async with self._engine.begin() as conn:
            row = await store.campaign_row(conn, campaign_uuid, lock=True)
            if row is None:
                raise not_found(campaign_id)
            if row["funding_status"] == pb.FUNDING_STATUS_FUNDED:
                if row["checkout_session_id"] == checkout_session_id:
                    return row, True
                # The ledger refunds this payment (net and fee) on this answer.
                raise FailedPrecondition(Reason.CAMPAIGN_ALREADY_FUNDED, "the campaign was paid by another checkout")
            if row["status"] in (pb.CAMPAIGN_STATUS_CANCELED, pb.CAMPAIGN_STATUS_ENDED):
                raise FailedPrecondition(
                    Reason.CAMPAIGN_ALREADY_FUNDED, "the campaign is closed; the payment is refunded"
                )
            if net_budget_cents < row["spent_cents"]:
                raise FailedPrecondition(Reason.BUDGET_TOO_SMALL, "the payment is less than the campaign already spent")
            values: dict[str, Any] = {
                "funding_status": pb.FUNDING_STATUS_FUNDED,
                "checkout_session_id": checkout_session_id,
                "gross_funding_cents": gross_cents,
                "platform_fee_cents": platform_fee_cents,
                "budget_cents": net_budget_cents,
                "funded_at": paid_at,
            }
            expired = row["end_date"] is not None and row["end_date"] <= self._clock()
            if row["status"] == pb.CAMPAIGN_STATUS_DRAFT and not expired:
                values["status"] = pb.CAMPAIGN_STATUS_ACTIVE
            updated = await store.update_campaign(conn, campaign_uuid, **values)
        await self._index.refresh()
        return updated, False

    # --- reports -------------------------------------------------------------------------------------------

    async def grants(self, campaign_id: str, actor: Actor, *, status: int, offset: int, size: int) -> GrantPage:
        async with self._engine.connect() as conn:
            campaign = await self._owned(conn, campaign_id, actor)
            total, rows = await store.campaign_grants(conn, campaign["id"], status=status, offset=offset, limit=size)
        return GrantPage(campaign["name"], list(rows), total)

    async def budget(self, campaign_id: str, actor: Actor) -> Budget:
        async with self._engine.connect() as conn:
            row = await self._owned(conn, campaign_id, actor)
        budget, spent, cost = int(row["budget_cents"]), int(row["spent_cents"]), row["cost_per_session_cents"]
        remaining = funding.remaining(row)  # what is left to grant: refunded budget is gone
        sessions_left = remaining // cost
        if row["max_sessions"] is not None:
            sessions_left = min(sessions_left, row["max_sessions"] - row["sessions_granted"])
        funded = row["funding_status"] == pb.FUNDING_STATUS_FUNDED
        return Budget(
            budget_cents=budget,
            spent_cents=spent,
            remaining_cents=remaining,
            pct_used=domain.percent_used(spent, budget),
            sessions_granted=row["sessions_granted"],
            cost_per_session_cents=cost,
            remaining_sessions=max(0, sessions_left),
            gross_funding_cents=int(row["gross_funding_cents"]) if funded else 0,
            platform_fee_cents=int(row["platform_fee_cents"]) if funded else 0,
            max_sessions=row["max_sessions"],
        )

    async def simulate(
        self,
        campaign_id: str,
        actor: Actor,
        since: datetime.datetime | None,
        until: datetime.datetime | None,
    ) -> DryRun:
        """The campaign run alone, with its whole budget, over the sessions evaluated in [since, until) (by
        default the 30 days to now)."""
        until = until or self._clock()
        since = since or until - SIMULATION_DEFAULT
        if until - since > SIMULATION_MAX:
            raise InvalidArgument([("since", "the window may span at most 90 days")])
        async with self._engine.connect() as conn:
            row = await self._owned(conn, campaign_id, actor)
            sessions = await store.evaluated_sessions(conn, since, until, SIMULATION_MAX_SESSIONS)
        # The campaign alone, with its whole budget and none of it spent, as if it had run in the window.
        candidate = dataclasses.replace(
            store.campaign_candidate(row), remaining_cents=int(row["budget_cents"]), sessions_granted=0
        )
        result = domain.simulate(candidate, sessions)
        return DryRun(result, since, until)

    # --- what drivers see ----------------------------------------------------------------------------------

    def _filed_at(self, place: domain.Place) -> list[IndexedCampaign]:
        """The indexed campaigns filed under the place's charger, zone, network or location."""
        ids = self._index.candidate_ids(
            charger_id=place.charger_id, zone_id=place.zone_id, network=place.network, lat=place.lat, lng=place.lng
        )
        return [entry for entry in (self._index.get(i) for i in ids) if entry is not None]

    async def for_driver(
        self, driver_id: str, *, charger_id: str, lat: float | None, lng: float | None, offset: int, size: int
    ) -> DriverPage:
        """The live campaigns a driver could earn at the charger (else near the point; every live one when neither
        is given), best reward first, each saying whether the driver is eligible now and, if not, the first rule
        that refuses."""
        email = await self._driver_email(driver_id) if self._index.any_email_allowlist_at_all() else ""
        place = await self._chargers.place(charger_id) if charger_id else domain.Place(lat=lat, lng=lng)
        located = place.charger_id or place.lat is not None or place.zone_id or place.network
        now = self._clock()
        indexed = self._filed_at(place) if located else list(self._index.all())
        live = [
            entry
            for entry in indexed
            if domain.is_live(entry.candidate, now)
            and domain.place_admits(entry.candidate.rules, place)
            and domain.allowlist_admits(entry.candidate.rules, driver_id, email)
        ]
        live.sort(key=_first_shown)
        page = live[offset : offset + size]
        async with self._engine.connect() as conn:
            completed = await store.driver_session_count(conn, driver_id)
            usage = await _usage_today(conn, driver_id, [e.candidate for e in page], place.charger_id, now)
        offers = []
        for entry in page:
            candidate = entry.candidate
            failure = (
                domain.first_failed_driver_rule(
                    candidate.rules, driver_id=driver_id, driver_email=email, session_count=completed + 1
                )
                or domain.caps_allow(candidate.caps, usage.get(candidate.campaign_id, domain.DriverUsage()))
                or domain.budget_allows(candidate)
            )
            offers.append(DriverOffer(entry, failure))
        return DriverPage(offers, more=offset + size < len(live))

    def charger_reward(self, place: domain.Place) -> IndexedCampaign | None:
        """The campaign whose reward a driver would see first at this charger in their listing, if a live one can
        pay one."""
        now = self._clock()
        payable = [
            entry
            for entry in self._filed_at(place)
            if domain.is_live(entry.candidate, now)
            and domain.place_admits(entry.candidate.rules, place)
            and domain.budget_allows(entry.candidate) is None
        ]
        return min(payable, key=_first_shown) if payable else None


def _with_default_quality(rules: domain.TargetingRules) -> domain.TargetingRules:
    """A new campaign's rules: the sponsor's, with a minimum quality score of 40 unless they set one (0 too)."""
    if rules.min_quality_score is not None:
        return rules
    return dataclasses.replace(rules, min_quality_score=DEFAULT_MIN_QUALITY_SCORE)


def _moment(value: domain.CampaignDate, zone: str, field: str, *, end: bool = False) -> datetime.datetime:
    """A campaign date as an aware UTC datetime: a day read in the campaign's zone (see domain.campaign_start
    and campaign_end)."""
    tz = domain.parse_time_zone(zone)
    try:
        return domain.campaign_end(value, tz) if end else domain.campaign_start(value, tz)
    except OverflowError as exc:  # a day at the ends of the calendar
        raise InvalidArgument([(field, not_a_campaign_date(value.isoformat()))]) from exc


def not_a_campaign_date(text: str) -> str:
    return f"{text!r} is neither a calendar day YYYY-MM-DD nor an RFC 3339 moment"


def _check_dates(start: datetime.datetime, end: datetime.datetime | None) -> None:
    if end is not None and end <= start:
        raise InvalidArgument([("end_date", "end_date must be after start_date", "end_date_after_start_date")])


async def _usage_today(
    conn: AsyncConnection,
    driver_id: str,
    candidates: list[domain.CampaignCandidate],
    charger_id: str,
    now: datetime.datetime,
) -> dict[str, domain.DriverUsage]:
    """The driver's live grants of these campaigns, for "could I still earn it today" (a session starting now)."""
    capped = [c for c in candidates if c.caps != domain.DriverCaps()]
    if not capped:
        return {}
    rows = await store.driver_live_grants(conn, driver_id, [uuid.UUID(c.campaign_id) for c in capped])
    by_campaign: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_campaign[str(row.campaign_id)].append(row)
    usage = {}
    for candidate in capped:
        today = domain.local_day(now, candidate.time_zone)
        mine = by_campaign.get(candidate.campaign_id, [])
        usage[candidate.campaign_id] = domain.DriverUsage(
            grants_on_day=sum(1 for r in mine if r.campaign_local_day == today),
            grants_in_campaign=len(mine),
            grants_at_charger=sum(1 for r in mine if charger_id and r.charger_id == charger_id),
        )
    return usage
