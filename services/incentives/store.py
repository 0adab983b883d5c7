"""Tables of the incentives schema (created by migrations/versions), the queries that read and write them, and the
stored forms: a campaign's rules are CampaignRules' JSON, an evaluated session its EndedSession's bytes, and a row
reads into the rule engine's candidate. The readers of those two messages into plain values are here, beneath the
cores that read them back (messages.py, above the cores, reads the requests' CampaignRules and EndedSession with
them too)."""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from google.protobuf import json_format
from nerava.incentives.v1 import incentives_pb2 as pb
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.outbox import outbox_table
from services.incentives import domain

metadata = sa.MetaData()
outbox = outbox_table(metadata)

campaigns = sa.Table(
    "campaigns",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("created_by_user_id", sa.Text, nullable=False),
    sa.Column("create_request_id", pg.UUID(as_uuid=True)),
    sa.Column("sponsor_name", sa.Text, nullable=False),
    sa.Column("sponsor_email", sa.Text, nullable=False),
    sa.Column("sponsor_logo_url", sa.Text, nullable=False),
    sa.Column("sponsor_type", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("campaign_type", sa.Text, nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("reward_kind", sa.SmallInteger, nullable=False),
    sa.Column("cost_per_session_cents", sa.Integer, nullable=False),
    sa.Column("gross_funding_cents", sa.BigInteger, nullable=False),
    sa.Column("platform_fee_cents", sa.BigInteger, nullable=False),
    sa.Column("budget_cents", sa.BigInteger, nullable=False),
    sa.Column("spent_cents", sa.BigInteger, nullable=False),
    sa.Column("max_sessions", sa.Integer),
    sa.Column("sessions_granted", sa.Integer, nullable=False),
    sa.Column("start_date", sa.DateTime(timezone=True), nullable=False),
    sa.Column("end_date", sa.DateTime(timezone=True)),
    sa.Column("time_zone", sa.Text, nullable=False),
    sa.Column("rules", pg.JSONB, nullable=False),
    sa.Column("cap_per_day", sa.Integer),
    sa.Column("cap_per_campaign", sa.Integer),
    sa.Column("cap_per_charger", sa.Integer),
    sa.Column("funding_status", sa.SmallInteger, nullable=False),
    sa.Column("checkout_session_id", sa.Text),
    sa.Column("checkout_url", sa.Text),
    sa.Column("checkout_expires_at", sa.DateTime(timezone=True)),
    sa.Column("checkout_request_id", pg.UUID(as_uuid=True)),
    sa.Column("funded_at", sa.DateTime(timezone=True)),
    sa.Column("pause_reason", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("rules_changed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    # Since migration 0004: the number of Stripe Checkout sessions opened (the idempotency key of the one being
    # opened), who is opening one right now, and the budget returned to the sponsor.
    sa.Column("checkout_attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("checkout_claimed_at", sa.DateTime(timezone=True)),
    sa.Column("refunded_cents", sa.BigInteger, nullable=False, server_default="0"),
)

grants = sa.Table(
    "grants",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("session_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("end_sequence", sa.Integer, nullable=False),
    sa.Column("campaign_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("driver_id", sa.Text, nullable=False),
    sa.Column("amount_cents", sa.Integer, nullable=False),
    sa.Column("reward_kind", sa.SmallInteger, nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("charger_id", sa.Text, nullable=False),
    sa.Column("duration_minutes", sa.Integer, nullable=False),
    sa.Column("session_start", sa.DateTime(timezone=True), nullable=False),
    sa.Column("campaign_local_day", sa.Date, nullable=False),
    sa.Column("ledger_transfer_id", pg.UUID(as_uuid=True)),
    sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("clawed_back_at", sa.DateTime(timezone=True)),
    sa.Column("clawback_reason", sa.Text, nullable=False, server_default=""),
    sa.Column("clawback_request_id", pg.UUID(as_uuid=True)),
    sa.Column("clawed_back_by", sa.Text),
    # Since migration 0005: the names the grant's ledger credit carries, as they were when it was granted (a
    # trigger copies them from the campaign), so that a credit asked again after a rename is the same request.
    sa.Column("credit_campaign_name", sa.Text, nullable=False),
    sa.Column("credit_sponsor_id", sa.Text, nullable=False),
    sa.Column("credit_sponsor_name", sa.Text, nullable=False),
)

evaluations = sa.Table(
    "evaluations",
    metadata,
    sa.Column("session_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("end_sequence", sa.Integer, primary_key=True),
    sa.Column("driver_id", sa.Text, nullable=False),
    sa.Column("snapshot", sa.LargeBinary, nullable=False),
    sa.Column("outcome", sa.SmallInteger, nullable=False),
    sa.Column("grant_id", pg.UUID(as_uuid=True)),
    sa.Column("candidates", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    # Since migration 0003: the judged list as the service wrote it, the database's verdicts by position, and
    # how far down the list the answer goes.
    sa.Column("judged", sa.Text),
    sa.Column("verdicts", pg.JSONB),
    sa.Column("through", sa.Integer),
    sa.Column("points_awarded", sa.Integer, nullable=False, server_default="0"),
    sa.Column("base_points", sa.Integer, nullable=False, server_default="0"),
    sa.Column("session_start", sa.DateTime(timezone=True), nullable=False),
    sa.Column("session_end", sa.DateTime(timezone=True), nullable=False),
    sa.Column("duration_minutes", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

# A row as SQLAlchemy returns it, or a plain mapping with the same keys (tests, tools).
Row = sa.RowMapping | Mapping[str, Any]

# Grants that count: toward caps, reputation and the campaign's session count. Clawed-back and FAILED grants
# do not (FAILED: the ledger never credited it).
DEAD_GRANT_STATUSES = (pb.GRANT_STATUS_CLAWED_BACK, pb.GRANT_STATUS_FAILED)
LIVE_GRANT = grants.c.status.notin_(DEAD_GRANT_STATUSES)


def rules_to_json(rules: domain.TargetingRules) -> dict[str, Any]:
    """The stored form of a campaign's rules: CampaignRules' JSON (its field names, only the fields given, in
    field order), which `rules_from_json` reads back."""
    stored: dict[str, Any] = {}
    for field in dataclasses.fields(rules):
        value = getattr(rules, field.name)
        if value is None or value in ("", ()):
            continue
        stored[field.name] = list(value) if isinstance(value, tuple) else value
    return stored


def rules_from_json(value: Mapping[str, Any]) -> pb.CampaignRules:
    rules = json_format.ParseDict(dict(value), pb.CampaignRules())
    if not rules.HasField("min_duration_minutes"):
        rules.min_duration_minutes = 15
    return rules


def targeting_rules(rules: pb.CampaignRules) -> domain.TargetingRules:
    """CampaignRules (stored, or as a request sends them) as the sponsor wrote them."""

    def given(field: str) -> Any:
        return getattr(rules, field) if rules.HasField(field) else None

    return domain.TargetingRules(
        min_duration_minutes=given("min_duration_minutes"),
        max_duration_minutes=given("max_duration_minutes"),
        charger_ids=tuple(rules.charger_ids),
        charger_networks=tuple(rules.charger_networks),
        zone_ids=tuple(rules.zone_ids),
        geo_center_lat=given("geo_center_lat"),
        geo_center_lng=given("geo_center_lng"),
        geo_radius_m=given("geo_radius_m"),
        time_start=rules.time_start,
        time_end=rules.time_end,
        days_of_week=tuple(rules.days_of_week),
        min_power_kw=given("min_power_kw"),
        connector_types=tuple(rules.connector_types),
        driver_session_count_min=given("driver_session_count_min"),
        driver_session_count_max=given("driver_session_count_max"),
        driver_allowlist=tuple(rules.driver_allowlist),
        min_quality_score=given("min_quality_score"),
    )


def campaign_rule_set(rules: pb.CampaignRules) -> domain.CampaignRuleSet:
    """CampaignRules as the rules judge them. Raises ValueError for rules they cannot read (`domain.rule_set`)."""
    return domain.rule_set(targeting_rules(rules))


def session_facts(session: pb.EndedSession, *, driver_email: str = "") -> domain.SessionFacts:
    """An ended session (as EvaluateSession receives it, or its stored snapshot) as the rules look at it."""
    return domain.SessionFacts(
        driver_id=session.driver_id,
        started_at=session.session_start.ToDatetime(tzinfo=datetime.UTC),
        ended_at=session.session_end.ToDatetime(tzinfo=datetime.UTC),
        duration_minutes=session.duration_minutes,
        charger_id=session.charger_id,
        charger_network=session.charger_network,
        zone_id=session.zone_id,
        lat=session.lat if session.HasField("lat") else None,
        lng=session.lng if session.HasField("lng") else None,
        kwh_delivered=session.kwh_delivered,
        max_power_kw=session.max_power_kw if session.HasField("max_power_kw") else None,
        connector_type=session.connector_type,
        quality_score=session.quality_score,
        driver_completed_sessions=session.driver_completed_sessions,
        driver_email=driver_email,
    )


def campaign_candidate(row: Row) -> domain.CampaignCandidate:
    """A campaigns row as the rule engine reads it. Raises ValueError for rules the engine cannot read."""
    refunded = int(row.get("refunded_cents") or 0)
    return domain.CampaignCandidate(
        campaign_id=str(row["id"]),
        name=row["name"],
        priority=row["priority"],
        created_at=row["created_at"],
        time_zone=domain.parse_time_zone(row["time_zone"]),
        reward_cents=row["cost_per_session_cents"],
        remaining_cents=int(row["budget_cents"]) - int(row["spent_cents"]) - refunded,
        rules=campaign_rule_set(rules_from_json(row["rules"])),
        caps=domain.DriverCaps(row["cap_per_day"], row["cap_per_campaign"], row["cap_per_charger"]),
        max_sessions=row["max_sessions"],
        sessions_granted=row["sessions_granted"],
        status=row["status"],
        start_date=row["start_date"],
        end_date=row["end_date"],
    )


# A grant with the name of its campaign, for every read that answers Grant messages.
GRANT_WITH_CAMPAIGN_NAME = sa.select(grants, campaigns.c.name.label("campaign_name")).join(
    campaigns, campaigns.c.id == grants.c.campaign_id
)


# --- queries ---------------------------------------------------------------------------------------------------


async def campaign_row(conn: AsyncConnection, campaign_id: uuid.UUID, *, lock: bool = False) -> sa.RowMapping | None:
    """The campaign's row (locked for this transaction with ``lock``), or None."""
    query = sa.select(campaigns).where(campaigns.c.id == campaign_id)
    if lock:
        query = query.with_for_update()
    return (await conn.execute(query)).mappings().first()


async def insert_campaign(conn: AsyncConnection, values: Mapping[str, Any]) -> sa.RowMapping:
    row: sa.RowMapping = (
        (await conn.execute(sa.insert(campaigns).values(**values).returning(campaigns))).mappings().one()
    )
    return row


async def campaign_created_by_request(conn: AsyncConnection, user_id: str, request_id: uuid.UUID) -> sa.RowMapping:
    """The campaign a user's CreateCampaign with this request_id created."""
    query = sa.select(campaigns).where(
        campaigns.c.created_by_user_id == user_id, campaigns.c.create_request_id == request_id
    )
    return (await conn.execute(query)).mappings().one()


async def update_campaign(conn: AsyncConnection, campaign_id: uuid.UUID, **values: Any) -> sa.RowMapping:
    query = sa.update(campaigns).where(campaigns.c.id == campaign_id).values(**values).returning(campaigns)
    row: sa.RowMapping = (await conn.execute(query)).mappings().one()
    return row


async def campaign_page(
    conn: AsyncConnection, *, owner: str | None, status: int, sponsor_name: str | None, offset: int, limit: int
) -> Sequence[sa.RowMapping]:
    """Campaigns, newest first: ``owner``'s only unless None, of ``status`` unless 0, of the sponsor whose
    lower-cased name is ``sponsor_name`` unless None."""
    query = sa.select(campaigns)
    if owner is not None:
        query = query.where(campaigns.c.created_by_user_id == owner)
    if status:
        query = query.where(campaigns.c.status == status)
    if sponsor_name is not None:
        query = query.where(sa.func.lower(campaigns.c.sponsor_name) == sponsor_name)
    query = query.order_by(campaigns.c.created_at.desc(), campaigns.c.id.desc()).offset(offset).limit(limit)
    return (await conn.execute(query)).mappings().all()


async def campaign_grants(
    conn: AsyncConnection, campaign_id: uuid.UUID, *, status: int, offset: int, limit: int
) -> tuple[int, Sequence[sa.RowMapping]]:
    """(how many grants the campaign has, of ``status`` unless 0; one page of them, newest first)."""
    where = [grants.c.campaign_id == campaign_id]
    if status:
        where.append(grants.c.status == status)
    total = (await conn.execute(sa.select(sa.func.count()).select_from(grants).where(*where))).scalar_one()
    query = (
        sa.select(grants)
        .where(*where)
        .order_by(grants.c.created_at.desc(), grants.c.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return total, (await conn.execute(query)).mappings().all()


async def evaluated_sessions(
    conn: AsyncConnection, since: datetime.datetime, until: datetime.datetime, limit: int
) -> list[domain.SessionFacts]:
    """The ended sessions evaluated in [since, until), in the order they ended, read from their stored snapshots."""
    query = (
        sa.select(evaluations.c.snapshot)
        .where(evaluations.c.session_end >= since, evaluations.c.session_end < until)
        .order_by(evaluations.c.session_end, evaluations.c.session_id, evaluations.c.end_sequence)
        .limit(limit)
    )
    return [session_facts(pb.EndedSession.FromString(s)) for s in (await conn.execute(query)).scalars()]


async def driver_session_count(conn: AsyncConnection, driver_id: str) -> int:
    """How many of the driver's ended sessions were evaluated."""
    query = sa.select(sa.func.count()).select_from(evaluations).where(evaluations.c.driver_id == driver_id)
    return int((await conn.execute(query)).scalar_one())


async def driver_live_grants(
    conn: AsyncConnection, driver_id: str, campaign_ids: Sequence[uuid.UUID]
) -> Sequence[sa.Row[Any, Any, Any]]:
    """The driver's live grants of these campaigns: (campaign_id, campaign_local_day, charger_id) each."""
    query = sa.select(grants.c.campaign_id, grants.c.campaign_local_day, grants.c.charger_id).where(
        grants.c.driver_id == driver_id, grants.c.campaign_id.in_(campaign_ids), LIVE_GRANT
    )
    return (await conn.execute(query)).all()


async def credited_grant_cents(conn: AsyncConnection, driver_id: str) -> int:
    """What the ledger credited the driver in grants (a PENDING grant may still fail: not counted)."""
    query = sa.select(sa.func.coalesce(sa.func.sum(grants.c.amount_cents), 0)).where(
        grants.c.driver_id == driver_id, grants.c.status == pb.GRANT_STATUS_GRANTED
    )
    return int((await conn.execute(query)).scalar_one())


async def base_points(conn: AsyncConnection, driver_id: str) -> int:
    """The base points of the driver's evaluated sessions."""
    query = sa.select(sa.func.coalesce(sa.func.sum(evaluations.c.base_points), 0)).where(
        evaluations.c.driver_id == driver_id
    )
    return int((await conn.execute(query)).scalar_one())


async def session_ends(
    conn: AsyncConnection, driver_id: str, *, min_duration_minutes: int, since: datetime.datetime
) -> Sequence[datetime.datetime]:
    """When the driver's evaluated sessions of at least ``min_duration_minutes`` since ``since`` ended."""
    query = sa.select(evaluations.c.session_end).where(
        evaluations.c.driver_id == driver_id,
        evaluations.c.duration_minutes >= min_duration_minutes,
        evaluations.c.session_end >= since,
    )
    return (await conn.execute(query)).scalars().all()


async def shown_session_grants(conn: AsyncConnection, session_ids: Sequence[uuid.UUID]) -> Sequence[sa.RowMapping]:
    """Each session's latest grant that the ledger credited or a clawback reversed, with its campaign's name."""
    query = (
        # A PENDING grant may still fail, and a FAILED one never paid, so to sessions (and so to the driver) both
        # are as if there were none.
        GRANT_WITH_CAMPAIGN_NAME.where(
            grants.c.session_id.in_(session_ids),
            grants.c.status.notin_([pb.GRANT_STATUS_PENDING, pb.GRANT_STATUS_FAILED]),
        )
        .order_by(grants.c.session_id, grants.c.end_sequence.desc(), grants.c.created_at.desc())
        .ext(distinct_on(grants.c.session_id))
    )
    return (await conn.execute(query)).mappings().all()
