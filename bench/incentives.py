"""`make bench-incentives`: EvaluateSession latency and throughput with 100, 1,000 and 10,000 active campaigns,
against the floor of one primary-key read on the same PostgreSQL.

Starts PostgreSQL and Redis (DATABASE_URL / REDIS_URL, else embedded) and, per campaign count, a fresh
database with the incentives schema (services.common.migrations) seeded by SQL with that many active, funded
campaigns of a mixed targeting (below); one more fresh database holds the ledger. The ledger service and one
incentives service per campaign count run as their own processes (every incentives index loads at start),
so the counts can be measured in interleaved rounds. Every campaign's budget account is funded in the ledger
first (PostTransfer CAMPAIGN_FUNDING from EXTERNAL_FUNDING "stripe", as the ledger does for a paid checkout),
so each grant's credit really posts: the outbox relay runs during the measurement, as in production, and the
bench waits for it to drain after each window so that no process works while another is measured.

Callers authenticate as the sessions service (a token minted with the bench's SERVICE_TOKEN_SECRET):
EvaluateSession is an internal RPC. Each call evaluates a new ended session (a new session id; one of
10,000 drivers; a charger of the catalog, or now and then no charger, only a position; started in the past
7 days at any hour, 5-120 minutes), so some sessions match a campaign and are granted and others match none.

Workloads, each at every concurrency of --concurrency (closed-loop clients), in interleaved rounds; each
figure reported is its median over the rounds (the answers of every round's window are also pooled: p50/p99
over all of them, and per outcome, GRANTED against NO_MATCH):

  evaluate_<N>   EvaluateSession against the service holding N active campaigns.
  pk_floor       asyncpg, same PostgreSQL, no service: one prepared SELECT of a campaign row by its primary key
                 (index scan) in the 10,000-campaign database: the least one request to this database costs.

The world: 5,000 chargers of 8 networks in 200 zones over the Austin metro area (hot spots and a uniform
spread). The campaigns of each count, filed by the index under their most selective place rule:
48.25 % charger lists (1-8 chargers of one zone; a few list 20-200 chargers across the metro), 22 % zones
(1-4), 28 % geo circles (300 m - 15 km, centred near a charger), 1.5 % networks only (1-2), 0.25 %
unrestricted (at least 1). On top, independently: time-of-day windows, days of week, minimum power,
connectors, extra network rules, duration bounds, driver session counts, quality scores, and per-driver
caps (which cost the service one SQL count when a campaign's rules pass). Budgets are $10 M each: none runs
out during the run.

Also measured, in this process, on each count's campaigns loaded through the service's own CampaignIndex:
a full index load, and per session the index lookup plus the rule engine over every candidate it returns,
against testing every campaign (what the index saves); the candidates it returns by where each campaign is
filed, and how many of them the session's place (charger, network, zone, position) actually admits. The
number of candidates each evaluation tested comes from the responses (EvaluateSessionResponse.candidates).
The headline is the p99 at 10,000 campaigns with 1 client (see HEADLINE_CLIENTS). CPU per request is
reported for the
incentives service, the ledger service, PostgreSQL (the postmaster and all its children), Redis (when
embedded) and the load generator. All share this machine: absolute figures are a floor, the ratios compare
paths under the same conditions.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import datetime
import json
import math
import os
import pathlib
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import grpc
import protovalidate
import psutil
import uvloop
from google.protobuf import timestamp_pb2
from nerava.incentives.v1 import incentives_pb2 as pb
from nerava.incentives.v1 import incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from sqlalchemy.engine import make_url

from bench.common import percentile, write_results
from bench.ledger import (
    embedded_redis,
    log_tail,
    measured,
    postmaster,
    progress,
    self_cpu_s,
    started,
    tree_cpu_s,
)
from services.common import migrations
from services.common.auth import SERVICE_TOKEN_HEADER, ServiceTokens
from services.common.config import Secret
from services.common.db import create_engine
from services.incentives import domain, store
from services.incentives.index import CampaignIndex, geo_cells
from tools import embedded
from tools.run import wait_serving

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATABASE_PREFIX = "nerava_bench_incentives"
SERVICE_TOKEN_SECRET = "bench-incentives-service-token-secret"  # the bench's own services; never a real secret
CAMPAIGN_COUNTS = (100, 1_000, 10_000)
HEADLINE_CAMPAIGNS = 10_000
# The headline is the p99 with ONE client: the latency of one evaluation with no queueing. Ended sessions
# arrive far below one service's capacity (one call per ended charging session), and the target is about the
# work per evaluation (an index, not a scan). The 8-client figures, reported beside it, are throughput: there
# every latency includes waiting behind up to 7 other evaluations in the same single-threaded process.
HEADLINE_CLIENTS = 1
TARGET_P99_MS = 10.0
SEED = 20_240_601

CHARGERS = 5_000
DRIVERS = 10_000
ZONE_ROWS, ZONE_COLS = 20, 10  # 200 zones
SOUTH, NORTH, WEST, EAST = 29.97, 30.57, -98.09, -97.39  # the Austin metro area
HOT_SPOTS = ((30.267, -97.743), (30.402, -97.725), (30.205, -97.667), (30.508, -97.678), (30.160, -97.790))
NETWORKS = (
    ("Tesla", 0.34),
    ("ChargePoint", 0.20),
    ("EVgo", 0.12),
    ("Electrify America", 0.10),
    ("Blink", 0.08),
    ("Shell Recharge", 0.06),
    ("EVCS", 0.05),
    ("Francis Energy", 0.05),
)
TIME_ZONE = "America/Chicago"
BUDGET_CENTS = 1_000_000_000  # $10 M per campaign: no run can spend it at ≤ $5 a grant
PLATFORM_FEE_BPS = 2_000
SESSIONS_WITHOUT_CHARGER = 0.10  # ended sessions matched to no charger: only a position
INDEX_SAMPLE_SESSIONS = 1_000
SCAN_SAMPLE_SESSIONS = 40
DRAIN_TIMEOUT_S = 120.0

Call = Callable[[], Awaitable[None]]
CpuReader = Callable[[], float]
EVALUATED = (pb.EVALUATION_OUTCOME_GRANTED, pb.EVALUATION_OUTCOME_NO_MATCH)


def workload(count: int) -> str:
    return f"evaluate_{count}"


# --- the world: chargers, drivers, campaigns, sessions ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Charger:
    id: str
    network: str
    zone: str
    lat: float
    lng: float
    max_kw: float
    connector: str


def zone_of(lat: float, lng: float) -> str:
    row = min(ZONE_ROWS - 1, max(0, int((lat - SOUTH) / (NORTH - SOUTH) * ZONE_ROWS)))
    col = min(ZONE_COLS - 1, max(0, int((lng - WEST) / (EAST - WEST) * ZONE_COLS)))
    return f"atx-z{row * ZONE_COLS + col:03d}"


def charger_catalog(rng: random.Random) -> list[Charger]:
    names, weights = zip(*NETWORKS, strict=True)
    chargers = []
    for number in range(CHARGERS):
        if rng.random() < 0.65:
            spot_lat, spot_lng = rng.choice(HOT_SPOTS)
            lat = min(NORTH, max(SOUTH, rng.gauss(spot_lat, 0.035)))
            lng = min(EAST, max(WEST, rng.gauss(spot_lng, 0.035)))
        else:
            lat, lng = rng.uniform(SOUTH, NORTH), rng.uniform(WEST, EAST)
        network = rng.choices(names, weights)[0]
        fast = rng.random() < (0.7 if network == "Tesla" else 0.45)
        if network == "Tesla":
            connector, max_kw = "NACS", (250.0 if fast else 11.5)
        else:
            connector = "CCS1" if fast else "J1772"
            max_kw = rng.choice((50.0, 150.0, 350.0)) if fast else rng.choice((7.2, 11.5, 19.2))
        chargers.append(Charger(f"atx-{number:05d}", network, zone_of(lat, lng), lat, lng, max_kw, connector))
    return chargers


@dataclasses.dataclass(frozen=True)
class SeedCampaign:
    id: uuid.UUID
    kind: str  # what the index files it under: chargers, zones, geo, networks, everywhere
    rules: pb.CampaignRules
    reward_kind: int
    cost_cents: int
    priority: int
    max_sessions: int | None
    cap_per_day: int | None
    cap_per_campaign: int | None
    cap_per_charger: int | None
    end_in_days: int | None
    created_days_ago: float


def mix(count: int) -> dict[str, int]:
    """How many campaigns of each filing kind among ``count`` (exact shares, so every count has its mix)."""
    everywhere = max(1, round(count * 0.0025))
    networks = max(1, round(count * 0.015))
    zones = round(count * 0.22)
    geo = round(count * 0.28)
    return {
        "chargers": count - everywhere - networks - zones - geo,
        "zones": zones,
        "geo": geo,
        "networks": networks,
        "everywhere": everywhere,
    }


def place_rules(
    kind: str, rng: random.Random, chargers: Sequence[Charger], by_zone: dict[str, list[Charger]]
) -> pb.CampaignRules:
    names, weights = zip(*NETWORKS, strict=True)
    rules = pb.CampaignRules()
    if kind == "chargers":
        if rng.random() < 0.05:  # a site host's or network's list across the metro
            picked = rng.sample(chargers, rng.randint(20, 200))
        else:  # a merchant or hotel: a few chargers around it
            zone = by_zone[rng.choice(chargers).zone]
            picked = rng.sample(zone, min(len(zone), rng.randint(1, 8)))
        rules.charger_ids.extend(sorted(c.id for c in picked))
    elif kind == "zones":
        zones = sorted(by_zone)
        rules.zone_ids.extend(sorted(rng.sample(zones, rng.randint(1, 4))))
    elif kind == "geo":
        centre = rng.choice(chargers)
        rules.geo_center_lat = round(centre.lat + rng.gauss(0, 0.005), 6)
        rules.geo_center_lng = round(centre.lng + rng.gauss(0, 0.005), 6)
        rules.geo_radius_m = round(math.exp(rng.uniform(math.log(300), math.log(15_000))))
    elif kind == "networks":
        rules.charger_networks.extend(sorted(set(rng.choices(names, weights, k=rng.randint(1, 2)))))
    return rules


def add_other_rules(rules: pb.CampaignRules, kind: str, rng: random.Random) -> None:
    names, weights = zip(*NETWORKS, strict=True)
    if rng.random() < 0.25:
        start, end = rng.choice((("22:00", "06:00"), ("09:00", "16:00"), ("17:00", "21:00"), ("06:00", "10:00")))
        rules.time_start, rules.time_end = start, end
    if rng.random() < 0.15:
        rules.days_of_week.extend(rng.choice(((1, 2, 3, 4, 5), (6, 7), (5, 6, 7))))
    if rng.random() < 0.20:
        rules.min_power_kw = rng.choice((50.0, 100.0, 150.0))
    if rng.random() < 0.10:
        rules.connector_types.extend(rng.choice((("NACS",), ("CCS1",), ("CCS1", "NACS"))))
    if kind != "networks" and rng.random() < 0.10:
        rules.charger_networks.append(rng.choices(names, weights)[0])
    if rng.random() < 0.20:
        rules.min_duration_minutes = rng.choice((10, 20, 30))
        if rng.random() < 0.5:
            rules.max_duration_minutes = rng.choice((60, 90, 120))
    if rng.random() < 0.05:
        if rng.random() < 0.5:
            rules.driver_session_count_max = rng.choice((1, 3, 10))
        else:
            rules.driver_session_count_min = rng.choice((5, 20, 50))
    if rng.random() < 0.10:
        rules.min_quality_score = rng.choice((50, 60, 70))


def campaigns_for(count: int, rng: random.Random, chargers: Sequence[Charger]) -> list[SeedCampaign]:
    by_zone: dict[str, list[Charger]] = collections.defaultdict(list)
    for charger in chargers:
        by_zone[charger.zone].append(charger)
    kinds = [kind for kind, n in mix(count).items() for _ in range(n)]
    rng.shuffle(kinds)
    campaigns = []
    for kind in kinds:
        rules = place_rules(kind, rng, chargers, by_zone)
        add_other_rules(rules, kind, rng)
        campaigns.append(
            SeedCampaign(
                id=uuid.UUID(int=rng.getrandbits(128), version=4),
                kind=kind,
                rules=rules,
                reward_kind=pb.REWARD_KIND_CASH if rng.random() < 0.6 else pb.REWARD_KIND_NOVA,
                cost_cents=rng.choice((25, 50, 100, 150, 200, 300, 500)),
                priority=100 if rng.random() < 0.7 else rng.randint(0, 500),
                max_sessions=1_000_000 if rng.random() < 0.10 else None,
                cap_per_day=rng.randint(1, 2) if rng.random() < 0.30 else None,
                cap_per_campaign=rng.randint(3, 10) if rng.random() < 0.15 else None,
                cap_per_charger=rng.randint(1, 3) if rng.random() < 0.10 else None,
                end_in_days=rng.randint(30, 120) if rng.random() < 0.5 else None,
                created_days_ago=rng.uniform(0, 60),
            )
        )
    return campaigns


def check_campaigns_valid(campaigns: Sequence[SeedCampaign]) -> None:
    """Every seeded rule set satisfies the contract's protovalidate rules and reads in the rule engine, so the
    index holds every campaign seeded."""
    for campaign in campaigns:
        violations = protovalidate.collect_violations(campaign.rules)
        if violations:
            raise SystemExit(f"bench builds invalid CampaignRules: {[str(v.proto) for v in violations]}")
        store.campaign_rule_set(store.rules_from_json(store.rules_to_json(store.targeting_rules(campaign.rules))))


CAMPAIGN_COLUMNS = (
    "id",
    "created_by_user_id",
    "sponsor_name",
    "sponsor_email",
    "sponsor_logo_url",
    "sponsor_type",
    "name",
    "description",
    "campaign_type",
    "status",
    "priority",
    "reward_kind",
    "cost_per_session_cents",
    "gross_funding_cents",
    "platform_fee_cents",
    "budget_cents",
    "spent_cents",
    "max_sessions",
    "sessions_granted",
    "start_date",
    "end_date",
    "time_zone",
    "rules",
    "cap_per_day",
    "cap_per_campaign",
    "cap_per_charger",
    "funding_status",
    "funded_at",
    "pause_reason",
    "created_at",
    "updated_at",
)


def campaign_record(campaign: SeedCampaign, number: int, now: datetime.datetime) -> tuple[Any, ...]:
    """A row as CreateCampaign, a paid checkout and RecordCampaignFunding would have left it: active, funded."""
    gross = BUDGET_CENTS * 10_000 // (10_000 - PLATFORM_FEE_BPS)
    created = now - datetime.timedelta(days=campaign.created_days_ago)
    end = now + datetime.timedelta(days=campaign.end_in_days) if campaign.end_in_days is not None else None
    values = {
        "id": campaign.id,
        "created_by_user_id": str(uuid.UUID(int=campaign.id.int ^ 1, version=4)),
        "sponsor_name": f"Bench sponsor {number % 997}",
        "sponsor_email": "",
        "sponsor_logo_url": "",
        "sponsor_type": "merchant",
        "name": f"Bench campaign {number} ({campaign.kind})",
        "description": "",
        "campaign_type": "custom",
        "status": pb.CAMPAIGN_STATUS_ACTIVE,
        "priority": campaign.priority,
        "reward_kind": campaign.reward_kind,
        "cost_per_session_cents": campaign.cost_cents,
        "gross_funding_cents": gross,
        "platform_fee_cents": gross - BUDGET_CENTS,
        "budget_cents": BUDGET_CENTS,
        "spent_cents": 0,
        "max_sessions": campaign.max_sessions,
        "sessions_granted": 0,
        "start_date": created,
        "end_date": end,
        "time_zone": TIME_ZONE,
        "rules": json.dumps(store.rules_to_json(store.targeting_rules(campaign.rules))),
        "cap_per_day": campaign.cap_per_day,
        "cap_per_campaign": campaign.cap_per_campaign,
        "cap_per_charger": campaign.cap_per_charger,
        "funding_status": pb.FUNDING_STATUS_FUNDED,
        "funded_at": created,
        "pause_reason": "",
        "created_at": created,
        "updated_at": now,
    }
    return tuple(values[column] for column in CAMPAIGN_COLUMNS)


def stamp(moment: datetime.datetime) -> timestamp_pb2.Timestamp:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(moment)
    return value


class Sessions:
    """Ended sessions, each new (its own session id): one of the drivers, a charger of the catalog (or, now
    and then, only a position), started at any hour of the past 7 days."""

    def __init__(self, chargers: Sequence[Charger], rng: random.Random) -> None:
        self._chargers = chargers
        self._rng = rng
        self._drivers = [
            (str(uuid.UUID(int=rng.getrandbits(128), version=4)), rng.randint(1, 300)) for _ in range(DRIVERS)
        ]

    def next(self) -> pb.EndedSession:
        rng = self._rng
        driver_id, completed = rng.choice(self._drivers)
        minutes = rng.randint(5, 120)
        now = datetime.datetime.now(datetime.UTC)
        start = now - datetime.timedelta(seconds=rng.uniform(minutes * 60 + 60, 7 * 86_400))
        end = start + datetime.timedelta(minutes=minutes, seconds=rng.uniform(0, 59))
        session = pb.EndedSession(
            session_id=str(uuid.uuid4()),
            end_sequence=1,
            driver_id=driver_id,
            session_start=stamp(start),
            session_end=stamp(end),
            duration_minutes=minutes,
            kwh_delivered=round(rng.uniform(3, 60), 2),
            quality_score=rng.randint(40, 100),
            driver_completed_sessions=completed,
        )
        if rng.random() < SESSIONS_WITHOUT_CHARGER:
            session.lat, session.lng = rng.uniform(SOUTH, NORTH), rng.uniform(WEST, EAST)
            return session
        charger = rng.choice(self._chargers)
        session.charger_id = charger.id
        session.charger_network = charger.network
        session.zone_id = charger.zone
        session.lat = charger.lat + rng.gauss(0, 0.0002)
        session.lng = charger.lng + rng.gauss(0, 0.0002)
        session.max_power_kw = round(charger.max_kw * rng.uniform(0.4, 1.0), 1)
        session.connector_type = charger.connector
        return session


def check_sessions_valid(sessions: Sessions) -> None:
    """The sessions the bench sends satisfy the contract's protovalidate rules, so a refusal can only be the
    service's."""
    for _ in range(200):
        request = pb.EvaluateSessionRequest(session=sessions.next())
        violations = protovalidate.collect_violations(request)
        if violations:
            raise SystemExit(f"bench builds an invalid EvaluateSessionRequest: {[str(v.proto) for v in violations]}")


# --- databases ------------------------------------------------------------------------------------------


def database_url_of(server_url: str, database: str) -> str:
    url = make_url(server_url.replace("postgres://", "postgresql://", 1)).set(drivername="postgresql")
    return url.set(database=database).render_as_string(hide_password=False)


async def fresh_databases(server_url: str, names: Sequence[str]) -> dict[str, str]:
    admin = await asyncpg.connect(database_url_of(server_url, "postgres"))
    try:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return {name: database_url_of(server_url, name) for name in names}


async def drop_databases(server_url: str, names: Sequence[str]) -> None:
    admin = await asyncpg.connect(database_url_of(server_url, "postgres"))
    try:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def seed(database_url: str, campaigns: Sequence[SeedCampaign]) -> None:
    now = datetime.datetime.now(datetime.UTC)
    connection = await asyncpg.connect(database_url)
    try:
        await connection.copy_records_to_table(
            "campaigns",
            schema_name="incentives",
            columns=CAMPAIGN_COLUMNS,
            records=[campaign_record(c, number, now) for number, c in enumerate(campaigns)],
        )
        await connection.execute("ANALYZE incentives.campaigns")
    finally:
        await connection.close()


# --- the ledger: campaign budgets -----------------------------------------------------------------------


def currency_of(reward_kind: int) -> ledger_pb2.Currency:
    return ledger_pb2.CURRENCY_CASH_CENTS if reward_kind == pb.REWARD_KIND_CASH else ledger_pb2.CURRENCY_NOVA_POINTS


def funding_request(campaign: SeedCampaign) -> ledger_pb2.PostTransferRequest:
    """What the ledger books for a paid campaign checkout: the net budget from external funding into the
    campaign's budget account."""
    currency = currency_of(campaign.reward_kind)
    return ledger_pb2.PostTransferRequest(
        idempotency_key=f"funding:bench-{campaign.id}",
        kind=ledger_pb2.TRANSFER_KIND_CAMPAIGN_FUNDING,
        currency=currency,
        amount=BUDGET_CENTS,
        from_account=ledger_pb2.AccountRef(
            type=ledger_pb2.ACCOUNT_TYPE_EXTERNAL_FUNDING, owner_id="stripe", currency=currency
        ),
        to_account=ledger_pb2.AccountRef(
            type=ledger_pb2.ACCOUNT_TYPE_CAMPAIGN_BUDGET, owner_id=str(campaign.id), currency=currency
        ),
    )


async def fund_budgets(channel: grpc.aio.Channel, campaigns: Sequence[SeedCampaign], log: pathlib.Path) -> None:
    stub = ledger_pb2_grpc.LedgerServiceStub(channel)
    tokens = ServiceTokens(Secret(SERVICE_TOKEN_SECRET), "ledger")
    semaphore = asyncio.Semaphore(16)

    async def one(campaign: SeedCampaign) -> None:
        async with semaphore:
            reply = await stub.PostTransfer(
                funding_request(campaign), metadata=((SERVICE_TOKEN_HEADER, tokens.mint()),), timeout=30
            )
            if reply.to_balance_after != BUDGET_CENTS:
                raise SystemExit(
                    f"campaign budget {campaign.id} funded to {reply.to_balance_after}, not {BUDGET_CENTS}"
                )

    try:
        await asyncio.gather(*(one(c) for c in campaigns))
    except grpc.aio.AioRpcError as exc:
        raise SystemExit(
            f"funding a campaign budget failed: {exc.code().name} {exc.details()}\n{log_tail(log)}"
        ) from exc


# --- measurement ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Answer:
    began: float  # perf_counter at the call's start
    seconds: float
    outcome: str  # GRANTED or NO_MATCH
    tested: int  # len(response.candidates)


@dataclasses.dataclass
class Tally:
    """Every answer of one service since the last clear, and the count of all answers (for the checks)."""

    answers: list[Answer] = dataclasses.field(default_factory=list)
    calls: int = 0

    def window(self, start: float, end: float) -> list[Answer]:
        """The answers to the calls begun in the measured window (closed_loop's rule: warm-up excluded)."""
        return [a for a in self.answers if start <= a.began < end]


def answers_summary(answers: Sequence[Answer]) -> dict[str, Any]:
    outcomes = collections.Counter(a.outcome for a in answers)
    return {
        "outcomes": dict(outcomes),
        "granted_share": round(outcomes["GRANTED"] / len(answers), 3) if answers else None,
        "candidates_tested": _distribution([a.tested for a in answers]),
        "latency_ms_by_outcome": {
            outcome: {
                "p50": round(percentile(sorted(a.seconds for a in answers if a.outcome == outcome), 0.50) * 1000, 2),
                "p99": round(percentile(sorted(a.seconds for a in answers if a.outcome == outcome), 0.99) * 1000, 2),
                "n": count,
            }
            for outcome, count in sorted(outcomes.items())
        },
    }


def _distribution(values: Sequence[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    return {
        "mean": round(statistics.fmean(ordered), 1) if ordered else None,
        "p50": percentile(ordered, 0.50),
        "p99": percentile(ordered, 0.99),
        "max": ordered[-1] if ordered else None,
    }


def evaluate_call(
    stub: incentives_pb2_grpc.IncentivesServiceAsyncStub,
    tokens: ServiceTokens,
    sessions: Sessions,
    tally: Tally,
    codes: collections.Counter[str],
) -> Call:
    async def call() -> None:
        began = time.perf_counter()
        request = pb.EvaluateSessionRequest(session=sessions.next())
        try:
            response = await stub.EvaluateSession(
                request, metadata=((SERVICE_TOKEN_HEADER, tokens.mint()),), timeout=30
            )
        except grpc.aio.AioRpcError as exc:
            codes[exc.code().name] += 1
            raise
        granted = response.outcome == pb.EVALUATION_OUTCOME_GRANTED
        if response.replayed or response.outcome not in EVALUATED or granted != bool(response.grant.id):
            codes["UNEXPECTED_RESPONSE"] += 1
            raise RuntimeError(f"unexpected EvaluateSession answer: {response}")
        outcome = pb.EvaluationOutcome.Name(response.outcome).removeprefix("EVALUATION_OUTCOME_")
        tally.calls += 1
        tally.answers.append(Answer(began, time.perf_counter() - began, outcome, len(response.candidates)))

    return call


PK_READ = "SELECT * FROM incentives.campaigns WHERE id = $1"


def pk_call(pool: asyncpg.Pool, ids: Sequence[uuid.UUID]) -> Call:
    async def call() -> None:
        row = await pool.fetchrow(PK_READ, random.choice(ids))
        if row is None:
            raise RuntimeError("campaign row missing")

    return call


def median_of_rounds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the rounds (p50, p99, throughput and CPU separately), errors summed."""

    def median(values: list[Any]) -> Any:
        present = [v for v in values if v is not None]
        return round(statistics.median(present), 2) if present else None

    cpu_names = results[0]["cpu_us_per_request"]
    return {
        "requests_per_s": median([r["requests_per_s"] for r in results]),
        "p50_ms": median([r["p50_ms"] for r in results]),
        "p99_ms": median([r["p99_ms"] for r in results]),
        "mean_ms": median([r["mean_ms"] for r in results]),
        "requests": sum(r["requests"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "cpu_us_per_request": {name: median([r["cpu_us_per_request"][name] for r in results]) for name in cpu_names},
    }


# --- the index, in this process ---------------------------------------------------------------------------


def filed_under(rules: domain.CampaignRuleSet) -> str:
    """Where CampaignIndex files a campaign: its most selective place rule (index.py's order)."""
    if rules.charger_ids:
        return "chargers"
    if rules.zone_ids:
        return "zones"
    if rules.geo is not None:
        cells = geo_cells(rules.geo)
        return f"geo level {cells[0][0]}" if cells else "everywhere"
    return "networks" if rules.charger_networks else "everywhere"


async def index_profile(database_url: str, sessions: Sessions) -> dict[str, Any]:
    """The service's own CampaignIndex on these campaigns: a full load, then per session the lookup plus the
    rule engine over every live candidate (an upper bound of the service's loop, which stops at the first
    grant), and, for comparison, the rule engine over every campaign (no index)."""
    engine = create_engine(database_url, "incentives", pool_size=1, max_overflow=0)
    try:
        index = CampaignIndex(engine)
        began = time.perf_counter()
        loaded = await index.refresh(full=True)
        load_ms = (time.perf_counter() - began) * 1000
    finally:
        await engine.dispose()
    now = datetime.datetime.now(datetime.UTC)
    everyone = [held.candidate for held in index.all()]
    filing = {c.campaign_id: filed_under(c.rules) for c in everyone}
    sizes: list[float] = []
    matching: list[float] = []
    admitted: list[float] = []
    by_filing: collections.Counter[str] = collections.Counter()
    lookup_us: list[float] = []
    scan_us: list[float] = []
    for number in range(INDEX_SAMPLE_SESSIONS):
        facts = store.session_facts(sessions.next())
        began = time.perf_counter()
        ranked = domain.rank_candidates(index.candidates_for(facts), now)
        passed = sum(1 for c in ranked if domain.first_failed_rule(c.rules, facts, c.time_zone) is None)
        lookup_us.append((time.perf_counter() - began) * 1e6)
        sizes.append(len(ranked))
        matching.append(passed)
        place = domain.Place(facts.charger_id, facts.charger_network, facts.zone_id, facts.lat, facts.lng)
        admitted.append(sum(1 for c in ranked if domain.place_admits(c.rules, place)))
        by_filing.update(filing[c.campaign_id] for c in ranked)
        if number < SCAN_SAMPLE_SESSIONS:
            began = time.perf_counter()
            scanned = sum(
                1
                for c in domain.rank_candidates(everyone, now)
                if domain.first_failed_rule(c.rules, facts, c.time_zone) is None
            )
            scan_us.append((time.perf_counter() - began) * 1e6)
            if scanned != passed:  # the index may only leave out campaigns that cannot match
                raise SystemExit(
                    f"the index missed a matching campaign: {passed} matched through it, {scanned} by a scan"
                )
    return {
        "campaigns_loaded": loaded,
        "full_load_ms": round(load_ms, 1),
        "candidates_per_session": _distribution(sizes),
        "candidates_by_filing_mean": {k: round(v / INDEX_SAMPLE_SESSIONS, 1) for k, v in by_filing.most_common()},
        "candidates_admitted_by_place": _distribution(admitted),
        "candidates_passing_rules_per_session": _distribution(matching),
        "lookup_and_rules_us": {k: round(v, 1) if v is not None else None for k, v in _distribution(lookup_us).items()},
        "scan_every_campaign_us": {
            k: round(v, 1) if v is not None else None for k, v in _distribution(scan_us).items()
        },
    }


# --- the run --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Options:
    concurrency: list[int]
    seconds: float
    warmup_s: float
    rounds: int


@dataclasses.dataclass
class Deployment:
    """One incentives service and what the bench needs to drive and watch it."""

    count: int
    database_url: str
    pool: asyncpg.Pool
    call: dict[int, Call]
    tally: Tally
    cpu: dict[str, CpuReader]
    start_s: float
    process: asyncio.subprocess.Process
    log: pathlib.Path


async def start_incentives(
    stack: contextlib.AsyncExitStack,
    count: int,
    *,
    database_url: str,
    env: dict[str, str],
    log: pathlib.Path,
    cpu: dict[str, CpuReader],
    calls: Callable[[incentives_pb2_grpc.IncentivesServiceAsyncStub, Tally], dict[int, Call]],
) -> Deployment:
    """The incentives service on ``database_url`` as its own process (on a free port), serving: its index is
    loaded before it answers."""
    port = embedded.free_port()
    env = {**env, "INCENTIVES_PORT": str(port)}
    began = time.perf_counter()
    process = await stack.enter_async_context(started([sys.executable, "-m", "services.incentives"], env, log))
    await wait_started(f"incentives ({count} campaigns)", process, f"127.0.0.1:{port}", log)
    start_s = time.perf_counter() - began
    channel = await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{port}"))
    tally = Tally()
    return Deployment(
        count=count,
        database_url=database_url,
        pool=await stack.enter_async_context(asyncpg.create_pool(database_url, min_size=1, max_size=2)),
        call=calls(incentives_pb2_grpc.IncentivesServiceStub(channel), tally),
        tally=tally,
        cpu={"service": tree_cpu_of(psutil.Process(process.pid)), **cpu},
        start_s=start_s,
        process=process,
        log=log,
    )


def service_env(database_url: str, redis_url: str, port_name: str, port: int, ledger_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        port_name: str(port),
        "LEDGER_ADDR": f"127.0.0.1:{ledger_port}",
        "INCENTIVES_ADDR": "127.0.0.1:9",  # the ledger calls incentives only for Stripe funding webhooks: none here
        "SESSIONS_ADDR": "127.0.0.1:9",
        "STRIPE_API_BASE": "http://127.0.0.1:9",  # never called by EvaluateSession; nothing reaches Stripe
        "SERVICE_TOKEN_SECRET": SERVICE_TOKEN_SECRET,
        "NERAVA_DEV_MODE": "true",  # the bench's own services keep the development defaults of other secrets
        "LOG_LEVEL": "WARNING",
        # Traces sampled as in production (1 % of new traces; a sampled caller is always followed).
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.01",
        "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}",
    }


def tree_cpu_of(process: psutil.Process) -> CpuReader:
    return lambda: tree_cpu_s(process)


async def wait_started(name: str, process: asyncio.subprocess.Process, address: str, log: pathlib.Path) -> None:
    serving = asyncio.ensure_future(wait_serving(address, time.monotonic() + 120))
    exited = asyncio.ensure_future(process.wait())
    done, _ = await asyncio.wait({serving, exited}, return_when=asyncio.FIRST_COMPLETED)
    serving.cancel()
    exited.cancel()
    if exited in done:
        raise SystemExit(f"the {name} service exited with {process.returncode}:\n{log_tail(log)}")
    serving.result()


async def drain(pool: asyncpg.Pool) -> tuple[int, float]:
    """Waits until the outbox holds no undelivered credit; returns (credits pending at the start, seconds)."""
    query = "SELECT count(*) FROM incentives.outbox WHERE delivered_at IS NULL AND failed_at IS NULL"
    began = time.perf_counter()
    pending = first = int(await pool.fetchval(query))
    while pending:
        if time.perf_counter() - began > DRAIN_TIMEOUT_S:
            raise SystemExit(f"{pending} grant credits still undelivered after {DRAIN_TIMEOUT_S:.0f} s")
        await asyncio.sleep(0.05)
        pending = int(await pool.fetchval(query))
    return first, time.perf_counter() - began


async def run(options: Options) -> dict[str, Any]:
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-incentives-"))
    try:
        with contextlib.ExitStack() as stack:
            pg_url = stack.enter_context(embedded.postgres(work / "pg"))
            redis_url = stack.enter_context(embedded.redis_server(work / "redis"))
            return await run_against(pg_url, redis_url, work, options)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def run_against(pg_url: str, redis_url: str, work: pathlib.Path, options: Options) -> dict[str, Any]:
    progress("PostgreSQL and Redis up")
    rng = random.Random(SEED)
    chargers = charger_catalog(rng)
    campaigns = {count: campaigns_for(count, rng, chargers) for count in CAMPAIGN_COUNTS}
    check_campaigns_valid([c for batch in campaigns.values() for c in batch])
    sessions = Sessions(chargers, random.Random(SEED + 1))
    check_sessions_valid(sessions)
    names = {count: f"{DATABASE_PREFIX}_{count}" for count in CAMPAIGN_COUNTS}
    ledger_name = f"{DATABASE_PREFIX}_ledger"
    urls = await fresh_databases(pg_url, [*names.values(), ledger_name])
    await asyncio.to_thread(migrations.upgrade, "ledger", urls[ledger_name])
    for count in CAMPAIGN_COUNTS:
        await asyncio.to_thread(migrations.upgrade, "incentives", urls[names[count]])
        await seed(urls[names[count]], campaigns[count])
    progress(f"schemas migrated; {sum(map(len, campaigns.values()))} active campaigns seeded by SQL")
    profiles = {}
    for count in CAMPAIGN_COUNTS:
        profiles[count] = await index_profile(urls[names[count]], sessions)
        profile = profiles[count]
        progress(
            f"index of {count:>6} campaigns: full load {profile['full_load_ms']} ms, "
            f"{profile['candidates_per_session']['mean']} candidates/session, lookup+rules "
            f"p50 {profile['lookup_and_rules_us']['p50']} µs, every campaign p50 "
            f"{profile['scan_every_campaign_us']['p50']} µs"
        )
    admin = await asyncpg.connect(urls[names[HEADLINE_CAMPAIGNS]])
    try:
        server = {
            name: await admin.fetchval(f"SHOW {name}")
            for name in ("server_version", "synchronous_commit", "fsync", "wal_sync_method", "shared_buffers")
        }
        server["embedded"] = "DATABASE_URL" not in os.environ
        plan = [
            row[0]
            for row in await admin.fetch(
                f"EXPLAIN {PK_READ.replace('$1', repr(str(campaigns[HEADLINE_CAMPAIGNS][0].id)))}"
            )
        ]
        postgres = await postmaster(admin)
    finally:
        await admin.close()
    try:
        results = await with_services(
            urls,
            names=names,
            ledger_name=ledger_name,
            redis_url=redis_url,
            work=work,
            options=options,
            campaigns=campaigns,
            sessions=sessions,
            postgres=postgres,
        )
    finally:
        if "DATABASE_URL" in os.environ:
            await drop_databases(pg_url, [*names.values(), ledger_name])
    return summarize(results, profiles, server, plan, options)


async def with_services(
    urls: dict[str, str],
    *,
    names: dict[int, str],
    ledger_name: str,
    redis_url: str,
    work: pathlib.Path,
    options: Options,
    campaigns: dict[int, list[SeedCampaign]],
    sessions: Sessions,
    postgres: psutil.Process | None,
) -> dict[str, Any]:
    load_generator = psutil.Process()
    cpu_common: dict[str, CpuReader] = {"load_generator": lambda: self_cpu_s(load_generator)}
    if postgres is not None:
        cpu_common["postgres"] = lambda: tree_cpu_s(postgres)
    redis = embedded_redis()
    codes: collections.Counter[str] = collections.Counter()
    ledger_port = embedded.free_port()
    ledger_log = work / "ledger.log"
    async with contextlib.AsyncExitStack() as stack:
        ledger = await stack.enter_async_context(
            started(
                [sys.executable, "-m", "services.ledger"],
                service_env(urls[ledger_name], redis_url, "LEDGER_PORT", ledger_port, ledger_port),
                ledger_log,
            )
        )
        await wait_started("ledger", ledger, f"127.0.0.1:{ledger_port}", ledger_log)
        ledger_channel = await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{ledger_port}"))
        began = time.perf_counter()
        await fund_budgets(ledger_channel, [c for batch in campaigns.values() for c in batch], ledger_log)
        progress(
            f"ledger serving; {sum(map(len, campaigns.values()))} campaign budgets funded "
            f"in {time.perf_counter() - began:.1f} s"
        )

        tokens = ServiceTokens(Secret(SERVICE_TOKEN_SECRET), "sessions")
        service_cpu: dict[str, CpuReader] = {"ledger": tree_cpu_of(psutil.Process(ledger.pid)), **cpu_common}
        if redis is not None:
            service_cpu["redis"] = lambda: self_cpu_s(redis)
        deployments: dict[int, Deployment] = {}
        for count in CAMPAIGN_COUNTS:
            deployments[count] = await start_incentives(
                stack,
                count,
                database_url=urls[names[count]],
                env=service_env(urls[names[count]], redis_url, "INCENTIVES_PORT", 0, ledger_port),
                log=work / f"incentives-{count}.log",
                cpu=service_cpu,
                calls=lambda stub, tally: {
                    c: evaluate_call(stub, tokens, sessions, tally, codes) for c in options.concurrency
                },
            )
            progress(
                f"incentives service with {count} campaigns serving after {deployments[count].start_s:.1f} s "
                "(index loaded at start)"
            )
        # First calls on each, right after it started serving: it answers, and its first requests do not land
        # in a window. Their slowest shows what an index reload costs the requests it holds up (the index's
        # worker reloads everything at its first pass, on the event loop, and again every few minutes).
        first_calls_max_ms = {}
        for count, deployment in deployments.items():
            first = next(iter(deployment.call.values()))
            for _ in range(20):
                await first()
            first_calls_max_ms[count] = round(max(a.seconds for a in deployment.tally.answers) * 1000, 1)
            await drain(deployment.pool)
        progress(f"slowest of the first 20 calls after start, ms: {first_calls_max_ms}")
        codes.clear()

        top = max(options.concurrency)
        floor_ids = [c.id for c in campaigns[HEADLINE_CAMPAIGNS]]
        async with asyncpg.create_pool(urls[names[HEADLINE_CAMPAIGNS]], min_size=top, max_size=top) as floor_pool:
            rounds, pooled = await run_rounds(deployments, pk_call(floor_pool, floor_ids), cpu_common, codes, options)
        progress("rounds done")
        checks = {count: await check_database(d) for count, d in deployments.items()}
        checks_ledger = await check_ledger(urls[ledger_name], checks)
        for count, deployment in deployments.items():
            if deployment.process.returncode is not None:
                raise SystemExit(
                    f"the incentives service ({count}) exited with {deployment.process.returncode}:\n"
                    f"{log_tail(deployment.log)}"
                )
    return {
        "rounds": rounds,
        "pooled": pooled,
        "checks": checks,
        "ledger": checks_ledger,
        "start_s": {count: round(d.start_s, 2) for count, d in deployments.items()},
        "first_calls_max_ms": first_calls_max_ms,
    }


async def run_rounds(
    deployments: dict[int, Deployment],
    floor: Call,
    cpu_common: dict[str, CpuReader],
    codes: collections.Counter[str],
    options: Options,
) -> tuple[dict[str, dict[int, list[dict[str, Any]]]], dict[str, dict[int, list[Answer]]]]:
    """Interleaved rounds: every campaign count and the floor at every concurrency once per round, so a
    disturbance of this shared machine rarely hits every round of one workload. Also returns the answers of
    every measured window, pooled over the rounds."""
    names = [workload(c) for c in deployments] + ["pk_floor"]
    rounds: dict[str, dict[int, list[dict[str, Any]]]] = {n: {c: [] for c in options.concurrency} for n in names}
    pooled: dict[str, dict[int, list[Answer]]] = {
        workload(n): {c: [] for c in options.concurrency} for n in deployments
    }
    for number in range(1, options.rounds + 1):
        for clients in options.concurrency:
            for count, deployment in deployments.items():
                deployment.tally.answers.clear()
                window_from = time.perf_counter() + options.warmup_s
                result = await measured(
                    deployment.call[clients],
                    cpu=deployment.cpu,
                    codes=codes,
                    clients=clients,
                    seconds=options.seconds,
                    warmup_s=options.warmup_s,
                )
                pending, drained_s = await drain(deployment.pool)
                answers = deployment.tally.window(window_from, window_from + options.seconds)
                pooled[workload(count)][clients].extend(answers)
                result["answers"] = answers_summary(answers)
                result["credits_pending_at_window_end"] = pending
                result["drain_s"] = round(drained_s, 2)
                rounds[workload(count)][clients].append(result)
                print(
                    f"  round {number}/{options.rounds} {workload(count):15s} {clients:>2d} clients "
                    f"{result['requests_per_s']:>7.1f} evaluations/s  p50 {result['p50_ms']:>6.2f} ms  "
                    f"p99 {result['p99_ms']:>6.2f} ms  granted {result['answers']['granted_share']}  "
                    f"tested {result['answers']['candidates_tested']['mean']}  errors {result['errors']}  "
                    f"credits left {pending} (drained in {drained_s:.1f} s)",
                    flush=True,
                )
            result = await measured(
                floor, cpu=cpu_common, codes=codes, clients=clients, seconds=options.seconds, warmup_s=options.warmup_s
            )
            rounds["pk_floor"][clients].append(result)
            print(
                f"  round {number}/{options.rounds} {'pk_floor':15s} {clients:>2d} clients "
                f"{result['requests_per_s']:>7.1f} reads/s        p50 {result['p50_ms']:>6.2f} ms  "
                f"p99 {result['p99_ms']:>6.2f} ms  errors {result['errors']}",
                flush=True,
            )
    return rounds, pooled


async def check_database(deployment: Deployment) -> dict[str, Any]:
    """The service did what it answered: one evaluation row per answer, budgets and session counts consumed
    by exactly the grants, every credit delivered (none parked)."""
    await drain(deployment.pool)
    row = await deployment.pool.fetchrow(
        f"""SELECT (SELECT count(*) FROM incentives.evaluations) AS evaluations,
                   (SELECT count(*) FROM incentives.grants) AS grants,
                   (SELECT count(*) FROM incentives.grants WHERE status = {pb.GRANT_STATUS_GRANTED}) AS credited,
                   (SELECT coalesce(sum(amount_cents), 0) FROM incentives.grants) AS granted_cents,
                   (SELECT coalesce(sum(spent_cents), 0) FROM incentives.campaigns) AS spent_cents,
                   (SELECT coalesce(sum(sessions_granted), 0) FROM incentives.campaigns) AS sessions_granted,
                   (SELECT count(*) FROM incentives.campaigns WHERE status = {pb.CAMPAIGN_STATUS_ACTIVE}) AS active,
                   (SELECT count(*) FROM incentives.outbox WHERE failed_at IS NOT NULL) AS parked"""
    )
    assert row is not None
    checks = dict(row)
    problems = []
    if checks["evaluations"] != deployment.tally.calls:
        problems.append(f"{checks['evaluations']} evaluation rows for {deployment.tally.calls} answers")
    if checks["spent_cents"] != checks["granted_cents"] or checks["sessions_granted"] != checks["grants"]:
        problems.append("campaign budgets/session counts differ from the grants")
    if checks["credited"] != checks["grants"] or checks["parked"]:
        problems.append(f"{checks['grants'] - checks['credited']} grants not credited, {checks['parked']} parked")
    if checks["active"] != deployment.count:
        problems.append(f"{checks['active']} campaigns active, {deployment.count} seeded")
    if problems:
        raise SystemExit(f"incentives ({deployment.count} campaigns) inconsistent: {'; '.join(problems)} {checks}")
    return {k: int(v) for k, v in checks.items()}


async def check_ledger(database_url: str, checks: dict[int, dict[str, Any]]) -> dict[str, int]:
    """The ledger holds one CAMPAIGN_GRANT transfer per grant, for the same total."""
    connection = await asyncpg.connect(database_url)
    try:
        row = await connection.fetchrow(
            "SELECT count(*), coalesce(sum(amount), 0) FROM ledger.transfers WHERE kind = $1",
            ledger_pb2.TRANSFER_KIND_CAMPAIGN_GRANT,
        )
    finally:
        await connection.close()
    assert row is not None
    transfers, amount = int(row[0]), int(row[1])
    grants = sum(c["grants"] for c in checks.values())
    granted = sum(c["granted_cents"] for c in checks.values())
    if transfers != grants or amount != granted:
        raise SystemExit(f"ledger holds {transfers} grant transfers for {amount}, incentives {grants} for {granted}")
    return {"campaign_grant_transfers": transfers, "campaign_grant_amount": amount}


def summarize(
    results: dict[str, Any],
    profiles: dict[int, dict[str, Any]],
    server: dict[str, Any],
    plan: list[str],
    options: Options,
) -> dict[str, Any]:
    rounds = results["rounds"]
    chosen = {name: {c: median_of_rounds(r) for c, r in by.items()} for name, by in rounds.items()}
    for count in CAMPAIGN_COUNTS:
        for clients, answers in results["pooled"][workload(count)].items():
            latencies = sorted(a.seconds for a in answers)
            chosen[workload(count)][clients]["all_rounds_pooled"] = {
                "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
                "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
                **answers_summary(answers),
            }

    def ratio(count: int, clients: int, figure: str) -> float | None:
        below = chosen["pk_floor"][clients][figure]
        above = chosen[workload(count)][clients][figure]
        return round(above / below, 1) if below and above is not None else None

    ratios = {
        f"{figure}_to_pk_floor": {
            str(count): {str(c): ratio(count, c, figure) for c in options.concurrency} for count in CAMPAIGN_COUNTS
        }
        for figure in ("p50_ms", "p99_ms")
    }
    headline_value = (
        chosen[workload(HEADLINE_CAMPAIGNS)][HEADLINE_CLIENTS]["p99_ms"]
        if HEADLINE_CLIENTS in options.concurrency
        else None
    )
    return {
        "headline": {
            "metric": "p99_ms_at_10000_campaigns",
            "value": headline_value,
            "unit": "ms",
            "target": TARGET_P99_MS,
        },
        "headline_clients": HEADLINE_CLIENTS,
        "summary": {name: {str(c): figures for c, figures in by.items()} for name, by in chosen.items()},
        "ratios": ratios,
        "index": {str(count): profile for count, profile in profiles.items()},
        "service_start_s": {str(k): v for k, v in results["start_s"].items()},
        "first_20_calls_after_start_max_ms": {str(k): v for k, v in results["first_calls_max_ms"].items()},
        "checks": {"incentives": {str(k): v for k, v in results["checks"].items()}, "ledger": results["ledger"]},
        "campaign_mix": {str(count): mix(count) for count in CAMPAIGN_COUNTS},
        "concurrency": options.concurrency,
        "measured_seconds_per_round": options.seconds,
        "warmup_seconds_per_round": options.warmup_s,
        "rounds": options.rounds,
        "workloads": {name: {str(c): per_round for c, per_round in by.items()} for name, by in rounds.items()},
        "pk_floor_plan": plan,
        "notes": {
            "headline": f"p99 of EvaluateSession with {HEADLINE_CAMPAIGNS} active campaigns at {HEADLINE_CLIENTS} "
            "client (median of the rounds): one evaluation's latency without queueing; the 8-client figures are "
            "the throughput regime, where each call also waits behind the others in one Python process",
            "summary": "each figure is its own median over the rounds; cpu_us_per_request is CPU µs per request of "
            "each process, warm-up included; postgres = postmaster and all its children",
            "evaluate_N": "EvaluateSession, a new ended session per call, as the sessions service; the incentives "
            "service holding N active funded campaigns; its outbox relay posts each grant's credit to the ledger "
            "service during the window, and the bench waits for the outbox to drain before the next window",
            "pk_floor": f"asyncpg, prepared `{PK_READ}` by a random id among {HEADLINE_CAMPAIGNS} rows, same server",
            "candidates_tested": "len(EvaluateSessionResponse.candidates): campaigns tried up to the one that granted "
            "(all live candidates when none did)",
            "index": "the service's CampaignIndex loaded in the bench process: full load time (the service does the "
            "same on its event loop at start and every index.FULL_RELOAD_S); per session, the index lookup + rule "
            "engine over every live candidate, against the rule engine over every campaign; candidates by where the "
            "index files them, and how many the session's place admits (domain.place_admits)",
            "all_rounds_pooled": "every measured window's answers pooled: p50/p99, granted share, candidates tested, "
            "latency by outcome (GRANTED includes the grant's UPDATE/INSERTs; its credit is posted after the answer)",
            "first_20_calls_after_start_max_ms": "slowest of 20 sequential calls right after the service reported "
            "SERVING (not in any window)",
            "machine": "the load generator, both services and PostgreSQL share this machine's CPUs",
        },
        "postgres": server,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def report(results: dict[str, Any]) -> None:
    for name, by in results["summary"].items():
        for clients, r in by.items():
            print(
                f"{name:15s} {clients:>2s} clients {r['requests_per_s']:>8.1f}/s  p50 {r['p50_ms']:>6.2f} ms  "
                f"p99 {r['p99_ms']:>6.2f} ms  errors {r['errors']}  CPU µs/request {r['cpu_us_per_request']}"
            )
            pooled = r.get("all_rounds_pooled")
            if pooled:
                tested = pooled["candidates_tested"]
                print(
                    f"{'':15s}    all rounds pooled: p50 {pooled['p50_ms']} ms  p99 {pooled['p99_ms']} ms  "
                    f"granted {pooled['granted_share']}  candidates tested mean {tested['mean']} p99 {tested['p99']}  "
                    f"by outcome {pooled['latency_ms_by_outcome']}"
                )
    for name, by_count in results["ratios"].items():
        for count, by_clients in by_count.items():
            print(f"{name:18s} {count:>6s} campaigns  " + "  ".join(f"{c} clients: {v}" for c, v in by_clients.items()))
    for count, profile in results["index"].items():
        print(
            f"index {count:>6s} campaigns: full load {profile['full_load_ms']} ms; candidates/session "
            f"{profile['candidates_per_session']}, by filing {profile['candidates_by_filing_mean']}, "
            f"admitted by place {profile['candidates_admitted_by_place']['mean']}, passing all rules "
            f"{profile['candidates_passing_rules_per_session']['mean']}; lookup+rules µs "
            f"{profile['lookup_and_rules_us']}; every campaign µs {profile['scan_every_campaign_us']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="measured seconds per round, workload and concurrency"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each measured window")
    parser.add_argument("--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[1, 8], help="e.g. 1,8")
    args = parser.parse_args()
    options = Options(sorted(set(args.concurrency)), args.seconds, args.warmup, args.rounds)
    results = uvloop.run(run(options))
    report(results)
    path = write_results("incentives", results)
    headline = results["headline"]
    met = headline["value"] is not None and headline["value"] <= headline["target"]
    print(
        f"{headline['metric']} = {headline['value']} ms at {HEADLINE_CLIENTS} client "
        f"(target ≤ {headline['target']} ms: {'met' if met else 'NOT met'})  → {path.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
