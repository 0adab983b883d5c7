"""The in-memory candidate index: it may leave out only campaigns that cannot match, and it follows changes."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from nerava.incentives.v1 import incentives_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from services.incentives import domain, store
from services.incentives.index import GEO_LEVELS_DEG, CampaignIndex, geo_cells
from services.incentives.messages import campaign_candidate, campaign_message

UTC = datetime.UTC
CHARGERS = [f"c{n}" for n in range(6)]
ZONES = ["z1", "z2", "z3"]
NETWORKS = ["Tesla", "EVgo", "ChargePoint"]
START = datetime.datetime(2026, 6, 1, tzinfo=UTC)


def row(rules: pb.CampaignRules, status: int = pb.CAMPAIGN_STATUS_ACTIVE) -> dict[str, Any]:
    """A campaigns row as the database returns it."""
    return {
        "id": uuid.uuid4(),
        "created_by_user_id": "sponsor",
        "sponsor_name": "S",
        "sponsor_email": "",
        "sponsor_logo_url": "",
        "sponsor_type": "",
        "name": "C",
        "description": "",
        "campaign_type": "custom",
        "status": status,
        "priority": 100,
        "reward_kind": pb.REWARD_KIND_CASH,
        "cost_per_session_cents": 100,
        "gross_funding_cents": 12_500,
        "platform_fee_cents": 2_500,
        "budget_cents": 10_000,
        "spent_cents": 0,
        "max_sessions": None,
        "sessions_granted": 0,
        "start_date": START,
        "end_date": None,
        "time_zone": "America/Chicago",
        "rules": store.rules_to_json(store.targeting_rules(rules)),
        "cap_per_day": None,
        "cap_per_campaign": None,
        "cap_per_charger": None,
        "funding_status": pb.FUNDING_STATUS_FUNDED,
        "funded_at": START,
        "pause_reason": "",
        "created_at": START,
        "updated_at": START,
        "rules_changed_at": START,
    }


def offline_index() -> CampaignIndex:
    return CampaignIndex(engine=None)  # type: ignore[arg-type]  # rows are applied by hand, no database


points = st.tuples(st.floats(25.0, 49.0), st.floats(-124.0, -67.0))
place_rules = st.builds(
    lambda chargers, zones, networks, geo: pb.CampaignRules(
        charger_ids=chargers,
        zone_ids=zones,
        charger_networks=networks,
        **({"geo_center_lat": geo[0][0], "geo_center_lng": geo[0][1], "geo_radius_m": geo[1]} if geo else {}),
    ),
    st.lists(st.sampled_from(CHARGERS), unique=True, max_size=2),
    st.lists(st.sampled_from(ZONES), unique=True, max_size=2),
    st.lists(st.sampled_from(NETWORKS), unique=True, max_size=2),
    st.none() | st.tuples(points, st.integers(10, 500_000)),
)
sessions = st.builds(
    lambda charger, zone, network, point, offset: domain.SessionFacts(
        driver_id="d",
        started_at=START,
        ended_at=START + datetime.timedelta(minutes=30),
        duration_minutes=30,
        charger_id=charger,
        zone_id=zone,
        charger_network=network,
        lat=None if point is None else point[0] + offset[0],
        lng=None if point is None else point[1] + offset[1],
    ),
    st.sampled_from(["", *CHARGERS]),
    st.sampled_from(["", *ZONES]),
    st.sampled_from(["", *NETWORKS, "tesla"]),
    st.none() | points,
    st.tuples(st.floats(-2.0, 2.0), st.floats(-2.0, 2.0)),
)


@settings(max_examples=300, deadline=None)
@given(rules=st.lists(place_rules, min_size=1, max_size=8), facts=sessions)
def test_every_campaign_whose_rules_pass_is_among_the_candidates(
    rules: list[pb.CampaignRules], facts: domain.SessionFacts
) -> None:
    index = offline_index()
    rows = [row(r) for r in rules]
    for r in rows:
        index.apply_row(r)
    found = {c.campaign_id for c in index.candidates_for(facts)}
    for r in rows:
        candidate = index.get(str(r["id"]))
        assert candidate is not None
        if domain.first_failed_rule(candidate.candidate.rules, facts, candidate.candidate.time_zone) is None:
            assert str(r["id"]) in found


@settings(max_examples=100, deadline=None)
@given(
    rules=place_rules,
    spent=st.integers(0, 10_000),
    refunded=st.none() | st.integers(0, 500),
    caps=st.tuples(*(st.none() | st.integers(0, 5) for _ in range(3))),
    max_sessions=st.none() | st.integers(0, 1_000),
    end=st.none() | st.just(START + datetime.timedelta(days=30)),
)
def test_a_row_reads_as_the_same_candidate_as_its_campaign_message(
    rules: pb.CampaignRules,
    spent: int,
    refunded: int | None,
    caps: tuple[int | None, int | None, int | None],
    max_sessions: int | None,
    end: datetime.datetime | None,
) -> None:
    """The index reads rows straight into the rule engine's candidate; it once read them through the Campaign
    message the sponsor is shown, and must read them alike."""
    campaign = row(rules) | {
        "spent_cents": spent,
        "max_sessions": max_sessions,
        "cap_per_day": caps[0],
        "cap_per_campaign": caps[1],
        "cap_per_charger": caps[2],
        "end_date": end,
    }
    if refunded is not None:
        campaign["refunded_cents"] = refunded
    assert store.campaign_candidate(campaign) == campaign_candidate(campaign_message(campaign))


def test_place_rules_keep_campaigns_out_of_other_places() -> None:
    index = offline_index()
    at_charger = row(pb.CampaignRules(charger_ids=["c1"]))
    in_zone = row(pb.CampaignRules(zone_ids=["z1"]))
    everywhere = row(pb.CampaignRules())
    for r in (at_charger, in_zone, everywhere):
        index.apply_row(r)
    assert index.candidate_ids(charger_id="c2", zone_id="z2") == {str(everywhere["id"])}
    assert index.candidate_ids(charger_id="c1", zone_id="z1") == {
        str(r["id"]) for r in (at_charger, in_zone, everywhere)
    }


def test_a_paused_campaign_leaves_the_index_and_returns_when_resumed() -> None:
    index = offline_index()
    campaign = row(pb.CampaignRules(charger_ids=["c1"]))
    index.apply_row(campaign)
    index.apply_row({**campaign, "status": pb.CAMPAIGN_STATUS_PAUSED})
    assert index.candidate_ids(charger_id="c1") == set()
    assert len(index) == 0
    index.apply_row(campaign)
    assert index.candidate_ids(charger_id="c1") == {str(campaign["id"])}


def test_geo_circles_sit_in_at_most_64_cells_of_the_finest_level_that_fits() -> None:
    small = geo_cells(domain.GeoCircle(30.27, -97.74, 500))
    assert small is not None and len(small) <= 64 and {c[0] for c in small} == {0}
    large = geo_cells(domain.GeoCircle(30.27, -97.74, 500_000))  # about 9 x 10 degrees across
    assert large is not None and len(large) <= 64 and {GEO_LEVELS_DEG[c[0]] for c in large} == {1.6}
    assert geo_cells(domain.GeoCircle(89.9, 0.0, 50_000)) is None  # the pole: a candidate everywhere


async def test_refresh_follows_the_database(incentives_engine: AsyncEngine) -> None:
    """Loaded whole at start, then only what changed (a trigger sets rules_changed_at)."""
    import sqlalchemy as sa

    campaign = row(pb.CampaignRules(charger_ids=[f"index-{uuid.uuid4().hex}"]))
    charger = store.rules_from_json(campaign["rules"]).charger_ids[0]
    index = CampaignIndex(incentives_engine)
    await index.refresh(full=True)
    async with incentives_engine.begin() as conn:
        values = {k: v for k, v in campaign.items() if k not in ("created_at", "updated_at", "rules_changed_at")}
        await conn.execute(sa.insert(store.campaigns).values(**values))
    assert await index.refresh() >= 1
    assert index.candidate_ids(charger_id=charger) == {str(campaign["id"])}
    async with incentives_engine.begin() as conn:
        await conn.execute(
            sa.update(store.campaigns)
            .where(store.campaigns.c.id == campaign["id"])
            .values(status=pb.CAMPAIGN_STATUS_PAUSED)
        )
    await index.refresh()
    assert index.candidate_ids(charger_id=charger) == set()
