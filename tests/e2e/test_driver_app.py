"""The driver app's calls replayed through Envoy in the app's order (../shared/reference/original-api.md §7 and the
home, charger, merchant, session, wallet and account screens), asserting the keys and JSON types the app reads:
what its zod schemas demand (a missing key or a null where only "absent" is allowed makes the call throw),
and what its screens read from the others. Unknown values are absent, never "" (the app would send "" back as an
id); where the schema demands a key with null, the answer has it. Every answer is also checked against
gen/openapi.json by the `rest` fixture.

Also here: the home map's confidence tiers and its 60 s cache per rounded coordinate, and a withdrawal as
today's app sends it (no request_id), retried, paying once."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
import sqlalchemy as sa
from nerava.incentives.v1 import incentives_pb2 as incentives_pb
from nerava.incentives.v1 import incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2_grpc
from nerava.merchants.v1 import merchants_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from fakes.fleet import FakeFleet
from fakes.stripe import FakeStripe
from fakes.twilio_verify import FakeTwilioVerify
from services.common.db import create_engine
from services.sessions import discovery
from services.sessions import store as sessions_store
from services.sessions.chargers import ChargerRow
from tests.incentives.helpers import Incentives
from tests.merchants.helpers import Merchants, offset
from tests.sessions.helpers import driver_with_tesla, next_window, north_of
from tests.support.eventually import eventually
from tests.support.mesh import Mesh
from tests.support.people import NewPerson, Person

REWARD_CENTS = 2500  # one session pays more than the $20 withdrawal minimum
PERK = "Free refill while you charge"
Json = dict[str, Any]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@pytest.fixture
async def sessions_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, "sessions")
    yield engine
    await engine.dispose()


@pytest.fixture
async def cache(redis_url: str) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def _charger(engine: AsyncEngine, lat: float, lng: float, **values: Any) -> str:
    """A charger of the catalog at (lat, lng) with a posted price and two ports."""
    charger_id = f"drv-{uuid.uuid4().hex[:10]}"
    fields: dict[str, Any] = {
        "id": charger_id,
        "source": "manual",
        "external_id": charger_id,
        "name": f"Driver test charger {charger_id[-4:]}",
        "lat": lat,
        "lng": lng,
        "network_name": "EVgo",
        "num_evse": 2,
        "power_kw": 150.0,
        "connector_types": ["CCS1", "NACS"],
        "pricing_per_kwh_cents": 45,
    }
    fields.update(values)
    async with engine.begin() as conn:
        await conn.execute(sa.insert(sessions_store.chargers).values(**fields))
    return charger_id


def _somewhere() -> tuple[float, float]:
    """A point far from every other test's chargers (open ocean), rounded as the app sends it."""
    return round(random.uniform(-45, -35), 4), round(random.uniform(-160, -130), 4)


async def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json()


def _assert_map_charger(charger: Json) -> None:
    # zod: id, name (strings), distance_m (number); the screens read the rest.
    assert isinstance(charger["id"], str) and isinstance(charger["name"], str) and _number(charger["distance_m"])
    assert _number(charger["lat"]) and _number(charger["lng"])
    assert isinstance(charger["has_merchant_perk"], bool)
    for key in ("network_name", "merchant_perk_title"):
        assert charger.get(key) is None or (isinstance(charger[key], str) and charger[key]), (key, charger)


async def test_the_driver_apps_calls_answer_with_the_keys_it_reads(
    mesh: Mesh,
    twilio: FakeTwilioVerify,
    fleet: FakeFleet,
    stripe_fake: FakeStripe,
    person: NewPerson,
    rest: httpx.AsyncClient,
    sessions_engine: AsyncEngine,
    cache: redis.Redis,
) -> None:
    # The world: a charger, a sponsor's cash campaign paying there, a merchant beside it with an exclusive offer.
    lat, lng = _somewhere()
    charger_id = await _charger(sessions_engine, lat, lng)
    sponsor, admin, owner = await person("sponsor"), await person("admin"), await person("merchant")
    incentives = Incentives(
        incentives_pb2_grpc.IncentivesServiceStub(mesh.channels["incentives"]),
        ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"]),
    )
    incentives.charger = charger_id
    campaign = await incentives.active(
        sponsor, reward_kind=incentives_pb.REWARD_KIND_CASH, cost_per_session_cents=REWARD_CENTS, budget_cents=50_000
    )
    merchants = Merchants(
        merchants_pb2_grpc.MerchantsServiceStub(mesh.channels["merchants"]),
        ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"]),
        sessions_engine,
    )
    shop = await merchants.create_store(admin, owner, charger=(charger_id, lat, lng))
    offer = await rest.post(
        f"/v1/merchants/{shop.id}/exclusives", json={"title": PERK, "description": "Any size"}, headers=owner.headers
    )
    assert offer.status_code == 200, offer.text

    # 1. Sign-in (phone OTP, Tesla linked), then the home screen, all at once as the app does.
    driver, car = await driver_with_tesla(mesh, twilio, fleet, sessions_engine)
    auth = driver.headers
    here = north_of(lat, lng, 40)
    at = {"lat": round(here[0], 4), "lng": round(here[1], 4)}
    intent, location, exclusive, balance, codes, history = await asyncio.gather(
        rest.post("/v1/intent/capture", json={**at, "accuracy_m": 12}, headers=auth),
        rest.get("/v1/drivers/location/check", params=at, headers=auth),
        rest.get("/v1/exclusive/active", headers=auth),
        rest.get("/v1/wallet/balance", headers=auth),
        rest.get("/v1/auth/tesla/codes", headers=auth),
        rest.get("/v1/charging-sessions/", params={"limit": 20, "offset": 0}, headers=auth),
    )
    home = await _ok(intent)
    assert home["confidence_tier"] == "A" and isinstance(home["session_id"], str)
    assert [c["id"] for c in home["chargers"]] == [charger_id]
    [charger] = home["chargers"]
    _assert_map_charger(charger)
    assert (charger["campaign_reward_cents"], charger["campaign_reward_kind"]) == (REWARD_CENTS, "REWARD_KIND_CASH")
    assert (charger["has_merchant_perk"], charger["merchant_perk_title"]) == (True, PERK)
    assert charger["pricing_per_kwh"] == 0.45 and charger["pricing_per_kwh_cents"] == 45
    assert home["charger_summary"] == charger and "fallback_message" not in home
    [merchant] = home["merchants"]
    assert isinstance(merchant["place_id"], str) and merchant["place_id"] and isinstance(merchant["name"], str)
    assert all(_number(merchant[k]) for k in ("lat", "lng", "distance_m")) and isinstance(merchant["types"], list)
    assert (merchant["merchant_id"], merchant["exclusive_title"], merchant["badges"]) == (shop.id, PERK, ["Exclusive"])
    assert home["next_actions"] == {"request_wallet_pass": False, "require_vehicle_onboarding": False}
    checked = await _ok(location)
    assert checked["in_charger_radius"] is True and checked["nearest_charger_id"] == charger_id
    assert _number(checked["distance_m"])
    assert await _ok(exclusive) == {"exclusive_session": None}  # the key present, with null
    wallet = await _ok(balance)
    assert all(_int(wallet[k]) for k in ("available_cents", "pending_cents", "total_earned_cents", "nova_balance"))
    assert isinstance(wallet["can_withdraw"], bool)
    assert await _ok(codes) == []
    assert (await _ok(history))["sessions"] == [] and (await _ok(history))["count"] == 0

    # 2. Map search and the charger sheet (with the "earn $X here" list), no token needed for either.
    found = await _ok(await rest.get("/v1/chargers/search", params={"q": "", **at}))
    [listed] = [c for c in found["chargers"] if c["id"] == charger_id]
    _assert_map_charger(listed)
    assert isinstance(listed["connector_types"], list) and listed["pricing_per_kwh"] == 0.45
    assert (listed["has_merchant_perk"], listed["merchant_perk_title"]) == (True, PERK)
    assert "location" not in found  # no text to geocode: absent, not null
    sheet = await _ok(await rest.get(f"/v1/chargers/{charger_id}/detail", params=at))
    assert (sheet["status"], sheet["drivers_charging_now"], sheet["active_reward_cents"]) == ("available", 0, 2500)
    assert _int(sheet["drive_time_min"]) and _number(sheet["distance_m"]) and _number(sheet["avg_duration_min"])
    assert (sheet["pricing_per_kwh"], sheet["pricing_source"], sheet["network_name"]) == (0.45, "catalog", "EVgo")
    assert "nerava_score" not in sheet and "address" not in sheet  # unknown: absent
    [nearby] = sheet["nearby_merchants"]
    assert (nearby["merchant_id"], nearby["has_exclusive"], nearby["exclusive_title"]) == (shop.id, True, PERK)
    assert _int(nearby["walk_time_min"]) and _int(nearby["distance_m"]) and nearby["is_nerava_merchant"] is True
    assert isinstance(nearby["photo_url"], str) and _int(nearby["join_request_count"])
    earn = await _ok(
        await rest.get("/v1/campaigns/driver/active", params={**at, "charger_id": charger_id}, headers=auth)
    )
    [campaign] = earn["campaigns"]
    assert (campaign["reward_cents"], campaign["eligible"]) == (REWARD_CENTS, True)
    assert "sponsor_logo_url" not in campaign  # no logo: absent, not ""

    # 3. Merchants at the charger, one opened with the intent session (distance and label from it).
    open_list = await _ok(await rest.get("/v1/drivers/merchants/open", params={"charger_id": charger_id}))
    assert isinstance(open_list, list) and open_list[0]["id"] == shop.id
    assert open_list[0].get("open_until", "unknown") != ""  # a time or absent, never ""
    details = await _ok(
        await rest.get(f"/v1/merchants/{shop.id}", params={"session_id": home["session_id"]}, headers=auth)
    )
    assert isinstance(details["merchant"]["id"], str) and isinstance(details["merchant"]["name"], str)
    assert details["moment"]["label"] == "Steps from your charger" and 0 < details["moment"]["distance_miles"] < 0.1
    assert isinstance(details["wallet"]["can_add"], bool) and isinstance(details["wallet"]["state"], str)
    assert isinstance(details["actions"], dict)
    without = await _ok(await rest.get(f"/v1/merchants/{shop.id}"))
    assert without["moment"]["label"] is None and "label" in without["moment"]  # zod: string or null, key present
    # Someone else's intent session tells nothing about where that driver stood.
    others = await _ok(
        await rest.get(f"/v1/merchants/{shop.id}", params={"session_id": home["session_id"]}, headers=owner.headers)
    )
    assert (others["moment"]["label"], others["moment"]["distance_miles"]) == (None, 0)

    # 4. The exclusive offer: activate at the charger, shown on home, verified at the counter.
    at_shop = offset(lat, lng, east_m=60)
    activated = await _ok(
        await rest.post(
            "/v1/exclusive/activate",
            json={
                "merchant_id": shop.id,
                "charger_id": checked["nearest_charger_id"],
                "lat": here[0],
                "lng": here[1],
                "accuracy_m": 12,
                "intent_session_id": home["session_id"],
            },
            headers=auth,
        )
    )
    assert activated["status"] == "ACTIVE"
    session = activated["exclusive_session"]
    assert all(isinstance(session[k], str) for k in ("id", "expires_at", "activated_at", "merchant_id", "charger_id"))
    shown = (await _ok(await rest.get("/v1/exclusive/active", headers=auth)))["exclusive_session"]
    assert (shown["id"], shown["merchant_id"], shown["charger_id"]) == (session["id"], shop.id, charger_id)
    assert _int(shown["remaining_seconds"])
    verified = await _ok(
        await rest.post(
            "/v1/exclusive/verify",
            json={"exclusive_session_id": session["id"], "lat": at_shop[0], "lng": at_shop[1]},
            headers=auth,
        )
    )
    assert isinstance(verified["verification_code"], str) and _int(verified["visit_number"])

    # 5. Charging: the poll opens the session, the car is unplugged 20 minutes later, the campaign pays.
    car.move(*here)
    car.plug_in(*here, power_kw=50.0)
    await next_window(cache, driver)
    opened = await _ok(await rest.post("/v1/charging-sessions/poll", json=at, headers=auth))
    assert opened["session_active"] is True and _int(opened["recommended_interval_s"])
    active = await _ok(await rest.get("/v1/charging-sessions/active", headers=auth))
    assert active["active"] is True and active["session"]["charger_id"] == charger_id
    pinged = await _ok(await rest.post("/v1/charging-sessions/background-ping", json=at, headers=auth))
    assert pinged == {
        "matched": True,
        "session_active": True,
        "session_id": opened["session_id"],
        "already_active": True,
    }
    sheet = await _ok(await rest.get(f"/v1/chargers/{charger_id}/detail"))
    assert (sheet["drivers_charging_now"], sheet["status"]) == (1, "available")  # one of two ports taken
    fleet.advance(minutes=20)
    s = sessions_store.charging_sessions
    async with sessions_engine.begin() as conn:
        await conn.execute(
            sa.update(s)
            .where(s.c.id == uuid.UUID(opened["session_id"]))
            .values(session_start=s.c.session_start - sa.text("interval '20 minutes'"))
        )
    car.unplug()
    await next_window(cache, driver)
    ended = await _ok(await rest.post("/v1/charging-sessions/poll", json=at, headers=auth))
    assert ended["session_ended"] is True

    async def rewarded() -> Any:
        answer = await _ok(await rest.get("/v1/charging-sessions/active", headers=auth))
        assert answer["last_ended_session"]["incentive"]["amount_cents"] == REWARD_CENTS
        return answer

    toast = await eventually(rewarded)
    assert toast["active"] is False and toast["last_ended_session"]["ended_reason"] == "END_REASON_UNPLUGGED"
    assert toast["last_ended_session"]["incentive"]["status"] == "GRANT_STATUS_GRANTED"

    # 6. The reward in the wallet, the earnings timeline, the activity screen and the account card.
    async def credited() -> Any:
        answer = await _ok(await rest.get("/v1/wallet/balance", headers=auth))
        assert answer["available_cents"] == REWARD_CENTS
        return answer

    wallet = await eventually(credited)
    assert wallet["total_earned_cents"] == REWARD_CENTS and wallet["can_withdraw"] is True
    entries = (await _ok(await rest.get("/v1/wallet/ledger", params={"limit": 100, "offset": 0}, headers=auth)))[
        "entries"
    ]
    assert (entries[0]["transaction_type"], entries[0]["amount_cents"]) == ("credit", REWARD_CENTS)
    assert _int(entries[0]["balance_after_cents"])
    # The grant recorded its campaign and sponsor when it paid; the wallet shows them as recorded.
    assert (entries[0]["campaign_name"], entries[0]["sponsor_name"], entries[0]["description"]) == (
        campaign["name"],
        campaign["sponsor_name"],
        f"Earned from {campaign['name']}",
    )
    activity = await _ok(await rest.get("/v1/charging-sessions/", params={"limit": 50, "offset": 0}, headers=auth))
    assert activity["count"] == 1 and activity["sessions"][0]["incentive"]["amount_cents"] == REWARD_CENTS
    assert isinstance(activity["sessions"][0]["location_trail"], list)
    reputation = await _ok(await rest.get("/v1/charging-sessions/reputation", headers=auth))
    assert _int(reputation["points"]) and _int(reputation["streak_days"]) and isinstance(reputation["tier"], str)
    stats = await _ok(await rest.get("/v1/account/stats", headers=auth))
    assert (stats["total_sessions"], stats["total_earned_cents"], stats["total_nova"]) == (1, REWARD_CENTS, 0)
    assert stats["favorite_charger"] == {"charger_id": charger_id, "name": activity["sessions"][0]["charger_name"],
                                         "sessions": 1}  # fmt: skip
    assert stats["current_streak"] == 1 and _number(stats["total_kwh"]) and _number(stats["co2_avoided_kg"])
    assert isinstance(stats["member_since"], str)

    # 7. Geofence pings of the native shell: at the charger (no session now: the car is read once), far away.
    pinged = await _ok(await rest.post("/v1/charging-sessions/background-ping", json=at, headers=auth))
    assert (pinged["matched"], pinged["charger_id"], pinged["session_active"]) == (True, charger_id, False)
    far = north_of(lat, lng, 5_000)
    assert await _ok(
        await rest.post("/v1/charging-sessions/background-ping", json={"lat": far[0], "lng": far[1]}, headers=auth)
    ) == {"matched": False, "session_active": False, "already_active": False}

    # 8. Cash-out as the app sends it: no request_id; the tap retried twice (once while the first is in flight).
    account = await _ok(await rest.post("/v1/wallet/stripe/account", json={"email": "d@example.com"}, headers=auth))
    stripe_fake.complete_onboarding(account["stripe_account_id"])
    status = await _ok(await rest.get("/v1/wallet/stripe/status", headers=auth))
    assert status["onboarding_complete"] is True and status["has_account"] is True
    withdraw = {"amount_cents": 2000}
    first, retried = await asyncio.gather(
        rest.post("/v1/wallet/withdraw", json=withdraw, headers=auth),
        rest.post("/v1/wallet/withdraw", json=withdraw, headers=auth),
    )
    again = await rest.post("/v1/wallet/withdraw", json=withdraw, headers=auth)
    paid = {(await _ok(reply))["payout_id"] for reply in (first, retried, again)}
    assert len(paid) == 1
    transfers = [t for t in stripe_fake.transfers if t["destination"] == account["stripe_account_id"]]
    assert [t["amount"] for t in transfers] == [2000]
    wallet = await _ok(await rest.get("/v1/wallet/balance", headers=auth))
    assert wallet["available_cents"] + wallet["pending_cents"] + wallet["total_withdrawn_cents"] == REWARD_CENTS
    assert wallet["available_cents"] == REWARD_CENTS - 2000
    assert len((await _ok(await rest.get("/v1/wallet/history", headers=auth)))["payouts"]) == 1
    # W2 again: the withdrawal names no campaign or sponsor — absent, never "".
    entries = (await _ok(await rest.get("/v1/wallet/ledger", params={"limit": 100, "offset": 0}, headers=auth)))[
        "entries"
    ]
    assert [(e["transaction_type"], e["amount_cents"]) for e in entries] == [
        ("withdrawal", -2000),
        ("credit", REWARD_CENTS),
    ]
    assert entries[0]["description"] == "Withdrawal"
    assert "campaign_name" not in entries[0] and "sponsor_name" not in entries[0], entries[0]


def test_a_charger_is_in_use_when_active_sessions_fill_its_ports_and_offline_when_the_catalog_says_so() -> None:
    two_ports = ChargerRow(id="c", source="manual", external_id="c", name="C", lat=0, lng=0, num_evse=2)
    assert [discovery.charger_status(two_ports, n) for n in (0, 1, 2, 3)] == [
        "available",
        "available",
        "in_use",
        "in_use",
    ]
    unknown_ports = dataclasses.replace(two_ports, num_evse=None)
    assert discovery.charger_status(unknown_ports, 9) == "available"  # never called full without a port count
    assert discovery.charger_status(dataclasses.replace(two_ports, status="offline"), 0) == "offline"


@pytest.mark.parametrize(
    ("accuracy_m", "tier"), [(0, "A"), (50, "A"), (50.5, "B"), (200, "B"), (201, "C"), (5000, "C"), (None, "C")]
)
async def test_the_confidence_tier_comes_from_the_accuracy(
    rest: httpx.AsyncClient, sessions_engine: AsyncEngine, accuracy_m: float | None, tier: str
) -> None:
    lat, lng = _somewhere()
    await _charger(sessions_engine, lat, lng)
    body: Json = {"lat": lat, "lng": lng}
    if accuracy_m is not None:
        body["accuracy_m"] = accuracy_m
    anonymous = await _ok(await rest.post("/v1/intent/capture", json=body))
    assert anonymous["confidence_tier"] == tier
    assert "session_id" not in anonymous  # signed-in drivers only


async def test_the_home_map_is_cached_a_minute_per_rounded_coordinate(
    rest: httpx.AsyncClient, sessions_engine: AsyncEngine, cache: redis.Redis, driver: Person
) -> None:
    lat, lng = _somewhere()
    far = await _charger(sessions_engine, *north_of(lat, lng, 3_000))
    first = await _ok(await rest.post("/v1/intent/capture", json={"lat": lat, "lng": lng}, headers=driver.headers))
    assert [c["id"] for c in first["chargers"]] == [far]
    ttl = await cache.ttl(discovery.map_key(lat, lng))
    assert 0 < ttl <= discovery.MAP_CACHE_TTL_S

    # A charger opens nearer; within the minute, the same rounded coordinate still gets the cached map — also
    # from another point that rounds to it, and another driver gets a session of their own.
    near = await _charger(sessions_engine, *north_of(lat, lng, 500))
    same_cell = {"lat": lat + 0.00003, "lng": lng - 0.00003}
    cached = await _ok(await rest.post("/v1/intent/capture", json=same_cell, headers=driver.headers))
    assert [c["id"] for c in cached["chargers"]] == [far]
    assert cached["session_id"] != first["session_id"]

    # The minute passes (the test removes the entry instead of waiting): the new charger is on the map.
    await cache.delete(discovery.map_key(lat, lng))
    fresh = await _ok(await rest.post("/v1/intent/capture", json={"lat": lat, "lng": lng}))
    assert [c["id"] for c in fresh["chargers"]] == [near, far]
    assert fresh["charger_summary"]["id"] == near


async def test_the_home_map_without_chargers_and_bad_positions(rest: httpx.AsyncClient, driver: Person) -> None:
    lat, lng = _somewhere()
    empty = await _ok(await rest.post("/v1/intent/capture", json={"lat": lat, "lng": lng}, headers=driver.headers))
    assert (empty["chargers"], empty["merchants"], empty["confidence_tier"]) == ([], [], "C")
    assert "charger_summary" not in empty and isinstance(empty["fallback_message"], str)
    # A driver with no vehicle linked is offered to link one.
    assert empty["next_actions"] == {"request_wallet_pass": False, "require_vehicle_onboarding": True}
    for body in ({"lat": 91, "lng": 0}, {"lng": 0}, {"lat": 0, "lng": 0, "accuracy_m": -1}):
        refused = await rest.post("/v1/intent/capture", json=body)
        assert refused.status_code == 400, (body, refused.text)
