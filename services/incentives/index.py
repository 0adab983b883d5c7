"""The active campaigns of this process, in memory, indexed by where they pay — so that evaluating a session
tests the few campaigns that could match it, not every active one.

Each campaign is filed under its most selective place rule: its charger ids, else its zones, else its geo
circle (grid cells), else its networks; a campaign with none of them is a candidate everywhere. The rule
engine (domain.first_failed_rule) still checks every rule of every candidate: the index only leaves out
campaigns that cannot match, it never decides a match.

Freshness: every `poll_s`, and at once after a change made by this process, the index reloads the campaigns
whose `rules_changed_at` moved since its last look (a trigger sets it when anything but the budget counters
changes; a grant spending budget does not churn the index). The budget figures held here are therefore only
as fresh as the last such change: the grant's own UPDATE checks status, dates, budget and session count in
the database, so staleness costs nothing but a wasted try.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import gc
import heapq
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator

import prometheus_client
import sqlalchemy as sa
from nerava.incentives.v1 import incentives_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from services.incentives import domain, store

log = logging.getLogger(__name__)

# Grid levels for geo circles, cell edge in degrees, doubling. A circle is filed at the finest level where its
# bounding box spans at most MAX_CELLS_PER_AXIS cells per axis, so it sits in ≤ 64 cells, and a point outside
# the circle finds it only when it is within about one cell of it; a lookup reads one cell per level.
GEO_LEVELS_DEG = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6)
MAX_CELLS_PER_AXIS = 8
KM_PER_DEGREE_LAT = 111.32
# A change committed late (its transaction began before our last look) is still seen: each look reaches back
# this far. Transactions here last milliseconds; a full reload every FULL_RELOAD_S catches anything else.
LOOKBACK = datetime.timedelta(seconds=10)
FULL_RELOAD_S = 3600.0
# A full load parses every active campaign; it yields to the event loop every this many rows so that requests
# in flight are not held up behind it.
LOAD_CHUNK = 200

CellKey = tuple[int, int, int]
ACTIVE_CAMPAIGNS = prometheus_client.Gauge(
    "nerava_incentives_indexed_campaigns", "Active campaigns in this process's candidate index."
)


@dataclasses.dataclass(frozen=True)
class IndexedCampaign:
    """One active campaign: its row (what drivers are shown) and the campaign as the rule engine reads it."""

    row: store.Row
    candidate: domain.CampaignCandidate
    rules_changed_at: datetime.datetime
    order: tuple[int, datetime.datetime, str]  # domain.evaluation_order, computed once


def _cell(level: int, lat: float, lng: float) -> CellKey:
    size = GEO_LEVELS_DEG[level]
    return (level, math.floor(lat / size), math.floor(lng / size))


def geo_cells(geo: domain.GeoCircle) -> list[CellKey] | None:
    """The grid cells covering a circle's bounding box, or None when no level fits (near a pole or across the
    antimeridian: the campaign is then a candidate everywhere and the rule itself decides)."""
    dlat = geo.radius_m / 1000 / KM_PER_DEGREE_LAT
    cos_lat = math.cos(math.radians(min(89.0, abs(geo.lat) + dlat)))
    dlng = dlat / max(cos_lat, 1e-6)
    south, north = geo.lat - dlat, geo.lat + dlat
    west, east = geo.lng - dlng, geo.lng + dlng
    if south < -90 or north > 90 or west < -180 or east > 180:
        return None
    for level, size in enumerate(GEO_LEVELS_DEG):
        rows = range(math.floor(south / size), math.floor(north / size) + 1)
        cols = range(math.floor(west / size), math.floor(east / size) + 1)
        if len(rows) <= MAX_CELLS_PER_AXIS and len(cols) <= MAX_CELLS_PER_AXIS:
            return [(level, r, c) for r in rows for c in cols]
    return None


class _Shelves:
    """The campaigns and the buckets they are filed in. A full reload fills new shelves and swaps them in, so
    an evaluation never sees a half-loaded index."""

    def __init__(self) -> None:
        self.campaigns: dict[str, IndexedCampaign] = {}
        self.by_charger: dict[str, set[str]] = defaultdict(set)
        self.by_zone: dict[str, set[str]] = defaultdict(set)
        self.by_network: dict[str, set[str]] = defaultdict(set)
        self.by_cell: dict[CellKey, set[str]] = defaultdict(set)
        self.everywhere: set[str] = set()
        self.filed: dict[str, list[set[str]]] = {}
        # Campaigns whose allowlist names emails: only for them is the driver's email worth a call to accounts.
        self.email_allowlists: set[str] = set()

    def put(self, row: store.Row) -> None:
        campaign_id = str(row["id"])
        self.remove(campaign_id)
        if row["status"] != pb.CAMPAIGN_STATUS_ACTIVE:
            return
        try:
            candidate = store.campaign_candidate(row)
        except ValueError:
            # Validation keeps such rows out; if one got in, it must not stop every evaluation.
            log.exception("campaign %s has rules the engine cannot read; left out of the index", campaign_id)
            return
        self.campaigns[campaign_id] = IndexedCampaign(
            row, candidate, row["rules_changed_at"], domain.evaluation_order(candidate)
        )
        rules = candidate.rules
        if domain.allowlist_has_emails(rules):
            self.email_allowlists.add(campaign_id)
        buckets: list[set[str]]
        if rules.charger_ids:
            buckets = [self.by_charger[c] for c in rules.charger_ids]
        elif rules.zone_ids:
            buckets = [self.by_zone[z] for z in rules.zone_ids]
        elif rules.geo is not None and (cells := geo_cells(rules.geo)) is not None:
            buckets = [self.by_cell[cell] for cell in cells]
        elif rules.charger_networks:
            buckets = [self.by_network[n] for n in rules.charger_networks]
        else:
            buckets = [self.everywhere]
        for bucket in buckets:
            bucket.add(campaign_id)
        self.filed[campaign_id] = buckets

    def remove(self, campaign_id: str) -> None:
        self.campaigns.pop(campaign_id, None)
        self.email_allowlists.discard(campaign_id)
        for bucket in self.filed.pop(campaign_id, []):
            bucket.discard(campaign_id)


class CampaignIndex:
    def __init__(self, engine: AsyncEngine, *, poll_s: float = 0.5) -> None:
        self._engine = engine
        self._poll_s = poll_s
        self._shelves = _Shelves()
        self._last_look: datetime.datetime | None = None
        self._last_full: float | None = None
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._shelves.campaigns)

    def get(self, campaign_id: str) -> IndexedCampaign | None:
        return self._shelves.campaigns.get(campaign_id)

    def all(self) -> Iterable[IndexedCampaign]:
        return self._shelves.campaigns.values()

    # --- lookups -------------------------------------------------------------------------------------------

    def candidate_ids(
        self,
        *,
        charger_id: str = "",
        zone_id: str = "",
        network: str = "",
        lat: float | None = None,
        lng: float | None = None,
    ) -> set[str]:
        """Ids of the campaigns that could pay a session with these facts (a superset of the matches)."""
        shelves = self._shelves
        found = set(shelves.everywhere)
        if charger_id:
            found |= shelves.by_charger.get(charger_id, set())
        if zone_id:
            found |= shelves.by_zone.get(zone_id, set())
        if network:
            found |= shelves.by_network.get(network.strip().casefold(), set())
        if lat is not None and lng is not None:
            for level in range(len(GEO_LEVELS_DEG)):
                found |= shelves.by_cell.get(_cell(level, lat, lng), set())
        return found

    def candidate_ids_for(self, facts: domain.SessionFacts) -> set[str]:
        return self.candidate_ids(
            charger_id=facts.charger_id,
            zone_id=facts.zone_id,
            network=facts.charger_network,
            lat=facts.lat,
            lng=facts.lng,
        )

    def candidates_for(self, facts: domain.SessionFacts) -> list[domain.CampaignCandidate]:
        campaigns = self._shelves.campaigns
        return [campaigns[i].candidate for i in self.candidate_ids_for(facts) if i in campaigns]

    def ranked(
        self, ids: Iterable[str], now: datetime.datetime, place: domain.Place | None = None
    ) -> Iterator[domain.CampaignCandidate]:
        """The live campaigns among `ids` in evaluation order, lazily: a heap, so that an evaluation that stops
        at its first candidates does not sort them all. With a `place`, only the campaigns whose place rules
        admit it: the cells file campaigns by area, so a coarse cell also brings campaigns whose circle misses
        the session — those are not candidates of this session, and judging (and listing) them would be most
        of the work of a session no campaign pays."""
        campaigns = self._shelves.campaigns  # a full reload swaps the shelves; keep reading these
        heap = [
            (held.order, i)
            for i in ids
            if (held := campaigns.get(i)) is not None
            and (place is None or domain.place_admits(held.candidate.rules, place))
        ]
        heapq.heapify(heap)
        while heap:
            _, campaign_id = heapq.heappop(heap)
            candidate = campaigns[campaign_id].candidate
            if domain.is_live(candidate, now):
                yield candidate

    def any_email_allowlist_at_all(self) -> bool:
        return bool(self._shelves.email_allowlists)

    def any_email_allowlist(self, ids: set[str]) -> bool:
        """Whether one of these campaigns has an allowlist naming emails (the driver's email is then needed)."""
        return not ids.isdisjoint(self._shelves.email_allowlists)

    # --- upkeep --------------------------------------------------------------------------------------------

    def changed(self) -> None:
        """This process changed a campaign: look again soon rather than at the next poll. (The API awaits
        `refresh()` after a sponsor's change instead, so that its next call already sees it.)"""
        self._changed.set()

    def apply_row(self, row: store.Row) -> None:
        """Files (or removes, when not active) one campaigns row."""
        self._shelves.put(row)

    async def refresh(self, *, full: bool = False) -> int:
        """Loads what changed since the last look (everything when `full`); returns how many rows it read."""
        async with self._lock:
            full = full or self._last_look is None
            campaigns = store.campaigns
            async with self._engine.connect() as conn:
                looked_at = (await conn.execute(sa.select(sa.func.statement_timestamp()))).scalar_one()
                if full:
                    query = sa.select(campaigns).where(campaigns.c.status == pb.CAMPAIGN_STATUS_ACTIVE)
                    changed = list((await conn.execute(query)).mappings().all())
                else:
                    assert self._last_look is not None
                    since = self._last_look - LOOKBACK
                    stamps = (
                        await conn.execute(
                            sa.select(campaigns.c.id, campaigns.c.rules_changed_at).where(
                                campaigns.c.rules_changed_at >= since
                            )
                        )
                    ).all()
                    stale = [row.id for row in stamps if self._is_stale(str(row.id), row.rules_changed_at)]
                    changed = []
                    if stale:
                        changed = list(
                            (await conn.execute(sa.select(campaigns).where(campaigns.c.id.in_(stale)))).mappings().all()
                        )
            if full:
                shelves = _Shelves()
                for n, row in enumerate(changed, start=1):
                    shelves.put(row)
                    if n % LOAD_CHUNK == 0:
                        await asyncio.sleep(0)  # let requests in flight run; they still read the old shelves
                self._shelves = shelves
                self._last_full = asyncio.get_running_loop().time()
                # The index is a large, long-lived object graph (about a hundred objects per campaign). Moved
                # out of the collector's generations, it is no longer traversed by every full collection,
                # which otherwise stalls evaluations for milliseconds at 10,000 campaigns. It holds no
                # reference cycles, so reference counting still frees a replaced index.
                gc.freeze()
            else:
                for row in changed:
                    self._shelves.put(row)
            self._last_look = looked_at
            ACTIVE_CAMPAIGNS.set(len(self._shelves.campaigns))
            return len(changed)

    def _is_stale(self, campaign_id: str, rules_changed_at: datetime.datetime) -> bool:
        held = self._shelves.campaigns.get(campaign_id)
        # A campaign we do not hold may have just become active; one we hold may have changed.
        return held is None or held.rules_changed_at != rules_changed_at

    async def run(self, stop: asyncio.Event) -> None:
        """Keeps the index fresh until `stop`."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            self._changed.clear()
            try:
                full = self._last_full is None or loop.time() - self._last_full >= FULL_RELOAD_S
                await self.refresh(full=full)
            except Exception:
                log.exception("campaign index refresh failed; keeping the previous one")
            waiters = [asyncio.create_task(self._changed.wait()), asyncio.create_task(stop.wait())]
            await asyncio.wait(waiters, timeout=self._poll_s, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
