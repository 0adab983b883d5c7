"""What the driver's map and charger sheets show around the catalog: the intent capture of the home screen, and
each charger's campaign reward and merchant perk.

Sessions owns the chargers and the driver's position, so the home map is composed here; the values that belong
to other services are read from them, never copied: the best live reward per charger from incentives
(ListChargerRewards, judged on place rules only, so the same for every driver) and the merchants linked to a
charger with their exclusive offer from merchants (BatchListChargerMerchants) — one call to each per list,
whatever its length. A peer that does not answer leaves its keys out (the map still shows the chargers) and the
degraded answer is not cached.

The map around a coordinate rounded to 4 decimals (~11 m, what the app sends) is cached 60 s in Redis, shared by
every caller: nothing in it depends on who asks. Per caller are only the confidence tier (from the accuracy),
the intent session of a signed-in driver (kept 24 h in Redis; merchant details read it back through
GetIntentSession) and whether the driver still has to link a vehicle.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import math
import uuid
from collections.abc import Callable, Sequence

import redis.asyncio as redis
from google.protobuf import timestamp_pb2
from nerava.sessions.v1 import sessions_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import NotFound
from services.common.geo import great_circle_m
from services.sessions import chargers
from services.sessions.chargers import ChargerRow
from services.sessions.connections import active_connection
from services.sessions.peers import ChargerReward, ChargerRewards, LinkedMerchant, MerchantDirectory
from services.sessions.reasons import Reason

MAP_CHARGERS = 5  # the home map's chargers
MAP_RADIUS_M = 25_000
MAP_CACHE_TTL_S = 60
INTENT_SESSION_TTL = datetime.timedelta(hours=24)
# Confidence tiers from the position's horizontal accuracy, metres: A is good enough to tell which charger the
# driver stands at (the 150 m "at a charger" radius with margin), B which block they are on; C is anything worse
# or unknown.
TIER_A_MAX_M = 50.0
TIER_B_MAX_M = 200.0
NO_CHARGER_MESSAGE = "No chargers within 25 km yet. Move the map to look around."
EXCLUSIVE_BADGE = "Exclusive"


def confidence_tier(accuracy_m: float | None) -> str:
    if accuracy_m is None:
        return "C"
    if accuracy_m <= TIER_A_MAX_M:
        return "A"
    if accuracy_m <= TIER_B_MAX_M:
        return "B"
    return "C"


def map_key(lat: float, lng: float) -> str:
    """The cache key of the map around a point: its coordinate rounded to 4 decimals."""
    return f"sessions:intent-map:{lat:.4f}:{lng:.4f}"


def _intent_key(session_id: str) -> str:
    return f"sessions:intent-session:{session_id}"


def charger_status(row: ChargerRow, drivers_charging_now: int) -> str:
    """What the sheet shows: the catalog's "offline", "in_use" when active sessions fill every port, else
    "available" (a charger whose port count is unknown is never called full)."""
    if row.status == "offline":
        return "offline"
    if row.num_evse is not None and drivers_charging_now >= row.num_evse:
        return "in_use"
    return "available"


def dollars_per_kwh(cents: int) -> float:
    return cents / 100


@dataclasses.dataclass(frozen=True)
class ChargerExtras:
    """What other services say about one charger."""

    reward: ChargerReward | None = None
    merchants: tuple[LinkedMerchant, ...] = ()

    @property
    def perk_title(self) -> str:
        return next((m.exclusive_title for m in self.merchants if m.exclusive_title), "")


@dataclasses.dataclass(frozen=True)
class Extras:
    by_charger: dict[str, ChargerExtras]
    complete: bool  # every peer answered


class Discovery:
    def __init__(
        self,
        reads: AsyncEngine,
        cache: redis.Redis,
        *,
        rewards: ChargerRewards,
        merchants: MerchantDirectory,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._reads = reads
        self._cache = cache
        self._rewards = rewards
        self._merchants = merchants
        self._clock = clock

    # --- other services' values per charger ------------------------------------------------------------------

    async def extras(self, rows: Sequence[ChargerRow]) -> Extras:
        """Rewards and linked merchants of the chargers: one batch call to each service, concurrently."""
        if not rows:
            return Extras({}, True)
        rewards, merchants = await asyncio.gather(
            self._rewards.rewards(rows), self._merchants.linked([row.id for row in rows])
        )
        by_charger = {
            row.id: ChargerExtras(
                reward=(rewards or {}).get(row.id), merchants=tuple((merchants or {}).get(row.id, ()))
            )
            for row in rows
        }
        return Extras(by_charger, complete=rewards is not None and merchants is not None)

    # --- the home map ----------------------------------------------------------------------------------------

    async def capture(
        self, lat: float, lng: float, accuracy_m: float | None, driver_id: str | None
    ) -> pb.CaptureIntentResponse:
        """The home map around the point; a signed-in driver (`driver_id`) also gets an intent session, and is
        asked to link a car when none is."""
        needs_vehicle = driver_id is not None and await active_connection(self._reads, driver_id, provider=None) is None
        reply = await self._map(lat, lng)
        tier = confidence_tier(accuracy_m)
        reply.confidence_tier = tier
        reply.next_actions.request_wallet_pass = False
        reply.next_actions.require_vehicle_onboarding = needs_vehicle
        if driver_id is not None:
            session_id = str(uuid.uuid4())
            record = {
                "driver_id": driver_id,
                "lat": lat,
                "lng": lng,
                "confidence_tier": tier,
                "charger_id": reply.chargers[0].id if reply.chargers else "",
                "captured_at": self._clock().isoformat(),
            }
            await self._cache.set(
                _intent_key(session_id), json.dumps(record), ex=int(INTENT_SESSION_TTL.total_seconds())
            )
            reply.session_id = session_id
        return reply

    async def _map(self, lat: float, lng: float) -> pb.CaptureIntentResponse:
        key = map_key(lat, lng)
        cached = await self._cache.get(key)
        if isinstance(cached, bytes):
            return pb.CaptureIntentResponse.FromString(cached)
        rows = await chargers.search_chargers(self._reads, near=(lat, lng), radius_m=MAP_RADIUS_M, limit=MAP_CHARGERS)
        extras = await self.extras(rows)
        reply = pb.CaptureIntentResponse(
            chargers=[self.list_item(row, extras.by_charger.get(row.id)) for row in rows],
            merchants=_map_merchants(lat, lng, rows, extras),
        )
        if reply.chargers:
            reply.charger_summary.CopyFrom(reply.chargers[0])
        else:
            reply.fallback_message = NO_CHARGER_MESSAGE
        if extras.complete:
            await self._cache.set(key, reply.SerializeToString(), ex=MAP_CACHE_TTL_S)
        return reply

    def list_item(self, row: ChargerRow, extras: ChargerExtras | None) -> pb.Charger:
        """A charger of a list (map, search) with its price in dollars, reward and perk."""
        item = charger_message(row)
        if row.pricing_per_kwh_cents is not None:
            item.pricing_per_kwh = dollars_per_kwh(row.pricing_per_kwh_cents)
        if extras is not None:
            if extras.reward is not None:
                item.campaign_reward_cents = extras.reward.reward_cents
                item.campaign_reward_kind = extras.reward.reward_kind
            if extras.perk_title:
                item.has_merchant_perk = True
                item.merchant_perk_title = extras.perk_title
        return item

    # --- intent sessions -------------------------------------------------------------------------------------

    async def intent_session(self, session_id: str) -> pb.GetIntentSessionResponse:
        stored = await self._cache.get(_intent_key(session_id))
        if stored is None:
            raise NotFound(
                Reason.INTENT_SESSION_NOT_FOUND, "no intent session with that id", {"session_id": session_id}
            )
        record = json.loads(stored)
        captured = timestamp_pb2.Timestamp()
        captured.FromDatetime(datetime.datetime.fromisoformat(record["captured_at"]))
        reply = pb.GetIntentSessionResponse(
            session_id=session_id,
            driver_id=record["driver_id"],
            lat=record["lat"],
            lng=record["lng"],
            confidence_tier=record["confidence_tier"],
            captured_at=captured,
        )
        if record["charger_id"]:
            reply.charger_id = record["charger_id"]
        return reply


def charger_message(row: ChargerRow) -> pb.Charger:
    """A catalog record as a list shows it (the map's and the search's items start from it)."""
    message = pb.Charger(
        id=row.id,
        name=row.name,
        lat=row.lat,
        lng=row.lng,
        network_name=row.network_name or None,
        connector_types=row.connector_types,
        address=row.address,
        city=row.city,
        state=row.state,
        zone_id=row.zone_id,
    )
    if row.distance_m is not None:
        message.distance_m = round(row.distance_m, 1)
    set_catalog_figures(message, row)
    return message


def set_catalog_figures(message: pb.Charger | pb.BrowsedCharger | pb.GetChargerResponse, row: ChargerRow) -> None:
    """The figures the catalog may not know: left unset (not zero) when unknown."""
    if row.power_kw is not None:
        message.power_kw = row.power_kw
    if row.num_evse is not None:
        message.num_evse = row.num_evse
    if row.pricing_per_kwh_cents is not None:
        message.pricing_per_kwh_cents = row.pricing_per_kwh_cents


def _map_merchants(lat: float, lng: float, rows: Sequence[ChargerRow], extras: Extras) -> list[pb.IntentMerchant]:
    """The merchants linked to the map's chargers, each once (under its nearest charger), nearest to the device
    first."""
    found: dict[str, pb.IntentMerchant] = {}
    for row in rows:  # nearest charger first: a merchant keeps the first charger that lists it
        for merchant in extras.by_charger.get(row.id, ChargerExtras()).merchants:
            if merchant.merchant_id in found:
                continue
            item = pb.IntentMerchant(
                place_id=merchant.place_id or merchant.merchant_id,
                merchant_id=merchant.merchant_id,
                name=merchant.name,
                lat=merchant.lat,
                lng=merchant.lng,
                distance_m=round(great_circle_m(lat, lng, merchant.lat, merchant.lng), 1),
                types=[merchant.category] if merchant.category else [],
                badges=[EXCLUSIVE_BADGE] if merchant.exclusive_title else [],
                charger_id=row.id,
                open_now=merchant.open_now,
            )
            photo = merchant.photo_url or next(iter(merchant.photo_urls), "")
            if photo:
                item.photo_url = photo
            if merchant.logo_url:
                item.icon_url = merchant.logo_url
            if merchant.exclusive_title:
                item.exclusive_title = merchant.exclusive_title
            if merchant.open_until is not None:
                item.open_until = merchant.open_until
            found[merchant.merchant_id] = item
    return sorted(found.values(), key=lambda m: (m.distance_m, m.merchant_id))


def nearby_merchants(extras: ChargerExtras) -> list[pb.NearbyMerchant]:
    """A charger sheet's merchants, primary first (the order merchants ranks them in)."""
    items = []
    for merchant in extras.merchants:
        item = pb.NearbyMerchant(
            place_id=merchant.place_id or merchant.merchant_id,
            merchant_id=merchant.merchant_id,
            name=merchant.name,
            photo_url=merchant.photo_url or next(iter(merchant.photo_urls), ""),
            distance_m=merchant.distance_m,
            walk_time_min=math.ceil(merchant.walk_time_s / 60),
            has_exclusive=bool(merchant.exclusive_title),
            lat=merchant.lat,
            lng=merchant.lng,
            is_nerava_merchant=True,
        )
        if merchant.phone:
            item.phone = merchant.phone
        if merchant.category:
            item.category = merchant.category
        if merchant.exclusive_title:
            item.exclusive_title = merchant.exclusive_title
        items.append(item)
    return items
