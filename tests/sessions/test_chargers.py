"""The chargers catalog: import, search by text and by position, one charger, "am I at a charger", and the
nearest-charger match the charging sessions use — over real gRPC, a few through the real Envoy with the apps'
paths, and at 100 000 chargers with the query plans and timings.

The mesh and its database are shared by every test of the run: each test puts its chargers around a random
point of its own (nobody else's charger is within tens of kilometres) and gives them words no other test uses.
The 100 000-charger test loads its own fresh database."""

from __future__ import annotations

import asyncio
import datetime
import json
import math
import random
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import httpx
import pytest
import sqlalchemy as sa
from nerava.sessions.v1 import sessions_pb2 as pb
from nerava.sessions.v1 import sessions_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from fakes.places import FakePlaces
from fakes.twilio_verify import FakeTwilioVerify
from services.accounts.seed import ensure_phone_user
from services.common.db import create_engine, single_statement_reads
from services.sessions import chargers, store
from services.sessions.chargers import EARTH_RADIUS_M, great_circle_m
from tests.support.database import fresh_database
from tests.support.mesh import Mesh
from tests.support.people import Person
from tests.support.rpc import bad_fields, error_reason, phone_login, random_phone

NewPerson = Callable[..., Awaitable[Person]]
JsonObject = dict[str, Any]
if TYPE_CHECKING:
    Stub = sessions_pb2_grpc.SessionsServiceAsyncStub


# --- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture
async def accounts_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, "accounts")
    yield engine
    await engine.dispose()


@pytest.fixture
async def sessions_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, "sessions")
    yield engine
    await engine.dispose()


@pytest.fixture
def person(mesh: Mesh, twilio: FakeTwilioVerify, accounts_engine: AsyncEngine) -> NewPerson:
    """A new signed-in user holding the given roles (driver by default)."""

    async def make(*roles: str) -> Person:
        phone = random_phone()
        if roles:
            await ensure_phone_user(accounts_engine, phone, list(roles))
        login = await phone_login(mesh.channels["accounts"], twilio, phone)
        return Person(user_id=login.user.public_id, token=login.access_token)

    return make


@pytest.fixture
async def admin(person: NewPerson) -> Person:
    return await person("admin")


@pytest.fixture
async def driver(person: NewPerson) -> Person:
    return await person()


# --- places and records --------------------------------------------------------------------------------------


def destination(lat: float, lng: float, bearing_deg: float, distance_m: float) -> tuple[float, float]:
    """The point `distance_m` (great-circle) from (lat, lng) in the direction `bearing_deg` (0 = north)."""
    delta, theta = distance_m / EARTH_RADIUS_M, math.radians(bearing_deg)
    phi1, lambda1 = math.radians(lat), math.radians(lng)
    phi2 = math.asin(math.sin(phi1) * math.cos(delta) + math.cos(phi1) * math.sin(delta) * math.cos(theta))
    lambda2 = lambda1 + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(phi1), math.cos(delta) - math.sin(phi1) * math.sin(phi2)
    )
    return math.degrees(phi2), (math.degrees(lambda2) + 540) % 360 - 180


def lonely_point() -> tuple[float, float]:
    """A random point of the inhabited latitudes; no other test's charger is anywhere near it."""
    return random.uniform(-55, 55), random.uniform(-175, 175)


def word() -> str:
    """A word no other test's charger has."""
    return f"zq{uuid.uuid4().hex[:10]}"


def record(lat: float, lng: float, **fields: Any) -> pb.ChargerRecord:
    fields.setdefault("external_id", uuid.uuid4().hex)
    fields.setdefault("name", f"Charger {fields['external_id'][:8]}")
    return pb.ChargerRecord(lat=lat, lng=lng, **fields)


async def import_(
    stub: Stub, admin: Person, *records: pb.ChargerRecord, source: str = "nrel"
) -> pb.ImportChargersResponse:
    return await stub.ImportChargers(pb.ImportChargersRequest(source=source, chargers=records), metadata=admin.auth)


async def refused(call: Awaitable[Any], code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value


# --- import --------------------------------------------------------------------------------------------------


async def test_import_is_an_idempotent_upsert_keyed_by_source_and_external_id(sessions: Stub, admin: Person) -> None:
    lat, lng = lonely_point()
    ids = [uuid.uuid4().hex for _ in range(3)]
    records = [
        record(
            lat + i * 0.001,
            lng,
            external_id=ids[i],
            name=f"Station {i}",
            network_name="ChargePoint",
            power_kw=62.5,
            num_evse=4,
            connector_types=["CCS1", "J1772"],
            pricing_per_kwh_cents=39,
            address=f"{100 + i} Main St",
            city="Springfield",
            state="IL",
            zone_id="springfield",
        )
        for i in range(3)
    ]
    assert await import_(sessions, admin, *records) == pb.ImportChargersResponse(created=3)
    assert await import_(sessions, admin, *records) == pb.ImportChargersResponse(unchanged=3)

    records[1].name = "Station 1 (renamed)"
    records[1].ClearField("power_kw")
    extra = record(lat, lng + 0.001, external_id=uuid.uuid4().hex)
    reply = await import_(sessions, admin, *records, extra)
    assert reply == pb.ImportChargersResponse(created=1, updated=1, unchanged=2)

    # NREL ids are "nrel-<station id>"; the update is what GetCharger serves.
    changed = await sessions.GetCharger(pb.GetChargerRequest(charger_id=f"nrel-{ids[1]}"))
    assert (changed.name, changed.HasField("power_kw"), changed.num_evse) == ("Station 1 (renamed)", False, 4)
    kept = await sessions.GetCharger(pb.GetChargerRequest(charger_id=f"nrel-{ids[0]}"))
    assert (kept.name, kept.network_name, kept.power_kw, kept.pricing_per_kwh_cents) == (
        "Station 0",
        "ChargePoint",
        62.5,
        39,
    )
    assert (list(kept.connector_types), kept.address, kept.city, kept.state) == (
        ["CCS1", "J1772"],
        "100 Main St",
        "Springfield",
        "IL",
    )
    assert (kept.zone_id, kept.status, kept.lat, kept.lng) == ("springfield", "available", lat, lng)

    # The same external id from another source is another charger.
    assert await import_(sessions, admin, records[0], source="osm") == pb.ImportChargersResponse(created=1)
    await sessions.GetCharger(pb.GetChargerRequest(charger_id=f"osm-{ids[0]}"))


async def test_a_manual_charger_keeps_its_id_which_may_not_look_like_an_imported_one(
    sessions: Stub, admin: Person
) -> None:
    lat, lng = lonely_point()
    own = f"nerava-{uuid.uuid4().hex[:8]}"
    assert await import_(
        sessions, admin, record(lat, lng, external_id=own), source="manual"
    ) == pb.ImportChargersResponse(created=1)
    assert (await sessions.GetCharger(pb.GetChargerRequest(charger_id=own))).id == own

    error = await refused(
        import_(sessions, admin, record(lat, lng), record(lat, lng, external_id="nrel-1"), source="manual"),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_fields(error) == ["chargers[1].external_id"]


async def test_concurrent_imports_of_the_same_records_create_each_charger_once(sessions: Stub, admin: Person) -> None:
    lat, lng = lonely_point()
    records = [record(lat, lng + i * 0.0005) for i in range(50)]
    replies = await asyncio.gather(*(import_(sessions, admin, *records) for _ in range(4)))
    assert sum(r.created for r in replies) == 50
    assert all(r.created + r.unchanged == 50 and r.updated == 0 for r in replies)


async def test_only_an_admin_imports_chargers(sessions: Stub, admin: Person, driver: Person, person: NewPerson) -> None:
    request = pb.ImportChargersRequest(source="nrel", chargers=[record(*lonely_point())])
    for who in (driver, await person("sponsor"), await person("admin_readonly")):
        error = await refused(sessions.ImportChargers(request, metadata=who.auth), grpc.StatusCode.PERMISSION_DENIED)
        assert error_reason(error) == "PERMISSION_DENIED"
    await refused(sessions.ImportChargers(request), grpc.StatusCode.UNAUTHENTICATED)
    assert (await sessions.ImportChargers(request, metadata=admin.auth)).created == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: setattr(r, "lat", 91.0), "chargers[0].lat"),
        (lambda r: setattr(r, "lng", 181.0), "chargers[0].lng"),
        (lambda r: setattr(r, "lng", math.nan), "chargers[0].lng"),
        (lambda r: setattr(r, "lat", math.inf), "chargers[0].lat"),
        (lambda r: setattr(r, "name", ""), "chargers[0].name"),
        (lambda r: setattr(r, "external_id", ""), "chargers[0].external_id"),
        (lambda r: setattr(r, "state", "tx"), "chargers[0].state"),
        (lambda r: setattr(r, "power_kw", 0.0), "chargers[0].power_kw"),
        (lambda r: setattr(r, "num_evse", 0), "chargers[0].num_evse"),
    ],
)
async def test_a_bad_record_is_refused_naming_its_field(
    sessions: Stub, admin: Person, change: Callable[[pb.ChargerRecord], None], field: str
) -> None:
    bad = record(*lonely_point())
    change(bad)
    error = await refused(import_(sessions, admin, bad), grpc.StatusCode.INVALID_ARGUMENT)
    assert set(bad_fields(error)) == {field}  # NaN breaks two rules of the field: finite, and the range


async def test_an_import_with_repeated_ids_or_an_unknown_source_is_refused(sessions: Stub, admin: Person) -> None:
    twice = record(*lonely_point())
    error = await refused(import_(sessions, admin, twice, twice), grpc.StatusCode.INVALID_ARGUMENT)
    assert bad_fields(error) == ["chargers"]
    error = await refused(
        import_(sessions, admin, record(*lonely_point()), source="google"), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert bad_fields(error) == ["source"]
    error = await refused(import_(sessions, admin), grpc.StatusCode.INVALID_ARGUMENT)
    assert bad_fields(error) == ["chargers"]


# --- search --------------------------------------------------------------------------------------------------


async def _ring(stub: Stub, admin: Person, lat: float, lng: float, distances: Iterable[float]) -> dict[float, str]:
    """Chargers at the given distances from (lat, lng), each in a random direction: distance → id."""
    placed = await _placed(stub, admin, lat, lng, distances)
    return {distance: charger.id for distance, charger in placed.items()}


async def _placed(
    stub: Stub, admin: Person, lat: float, lng: float, distances: Iterable[float]
) -> dict[float, pb.Charger]:
    """Chargers at the given distances from (lat, lng), each in a random direction: distance → charger."""
    records = [record(*destination(lat, lng, random.uniform(0, 360), distance)) for distance in distances]
    await import_(stub, admin, *records)
    return {
        distance: pb.Charger(id=f"nrel-{r.external_id}", lat=r.lat, lng=r.lng)
        for distance, r in zip(distances, records, strict=True)
    }


async def test_a_search_around_a_point_lists_the_chargers_within_the_radius_nearest_first(
    sessions: Stub, admin: Person
) -> None:
    lat, lng = lonely_point()
    placed = await _ring(sessions, admin, lat, lng, [4_000, 60, 24_000, 900, 26_000, 300])

    everything = await sessions.SearchChargers(pb.SearchChargersRequest(lat=lat, lng=lng))  # 25 km by default
    assert [c.id for c in everything.chargers] == [placed[d] for d in (60, 300, 900, 4_000, 24_000)]
    for charger, distance in zip(everything.chargers, (60, 300, 900, 4_000, 24_000), strict=True):
        assert charger.distance_m == pytest.approx(distance, abs=0.1)
    assert everything.next_page_token == ""
    assert not everything.HasField("location")

    near = await sessions.SearchChargers(pb.SearchChargersRequest(lat=lat, lng=lng, radius_m=1_000))
    assert [c.id for c in near.chargers] == [placed[d] for d in (60, 300, 900)]
    wide = await sessions.SearchChargers(pb.SearchChargersRequest(lat=lat, lng=lng, radius_m=100_000))
    assert [c.id for c in wide.chargers][-1] == placed[26_000]


async def test_search_pages_follow_each_other_and_a_token_only_fits_its_own_search(
    sessions: Stub, admin: Person
) -> None:
    lat, lng = lonely_point()
    placed = await _ring(sessions, admin, lat, lng, [100.0 * (i + 1) for i in range(7)])
    request = pb.SearchChargersRequest(lat=lat, lng=lng, radius_m=5_000, page_size=3)
    seen: list[str] = []
    sizes: list[int] = []
    while True:
        page = await sessions.SearchChargers(request)
        seen += [c.id for c in page.chargers]
        sizes.append(len(page.chargers))
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
        if len(sizes) == 2:
            token = page.next_page_token
    assert sizes == [3, 3, 1]
    assert seen == [placed[d] for d in sorted(placed)]

    other = pb.SearchChargersRequest(lat=lat, lng=lng, radius_m=6_000, page_size=3, page_token=token)
    error = await refused(sessions.SearchChargers(other), grpc.StatusCode.INVALID_ARGUMENT)
    assert bad_fields(error) == ["page_token"]
    forged = pb.SearchChargersRequest(lat=lat, lng=lng, page_token="bm90LWEtdG9rZW4")
    assert bad_fields(await refused(sessions.SearchChargers(forged), grpc.StatusCode.INVALID_ARGUMENT)) == [
        "page_token"
    ]


async def test_a_text_search_matches_word_prefixes_of_name_network_address_and_city(
    sessions: Stub, admin: Person
) -> None:
    lat, lng = lonely_point()
    name_word, city_word, street_word = word(), word(), word()
    by_name = record(lat, lng, name=f"Volta {name_word.upper()} Plaza", network_name="Volta", city="Springfield")
    by_city = record(
        lat + 0.01, lng, name="Corner Charger", network_name="Blink", city=f"{city_word.capitalize()}ville"
    )
    by_street = record(lat + 0.02, lng, name="Garage", network_name="EVgo", address=f"12 {street_word} Rd")
    await import_(sessions, admin, by_name, by_city, by_street)

    async def found(q: str, **more: Any) -> list[str]:
        reply = await sessions.SearchChargers(pb.SearchChargersRequest(q=q, page_size=100, **more))
        return [c.id for c in reply.chargers]

    assert await found(name_word) == [f"nrel-{by_name.external_id}"]
    assert await found(name_word[:6].upper()) == [f"nrel-{by_name.external_id}"]  # a prefix, in any case
    assert await found(f"volt {name_word} plaz") == [f"nrel-{by_name.external_id}"]  # every word must match
    assert await found(f"blink {name_word}") == []
    assert await found(f"{city_word} blink") == [f"nrel-{by_city.external_id}"]
    assert await found(f"{street_word}, evgo") == [f"nrel-{by_street.external_id}"]
    assert await found(name_word[2:]) == []  # inside a word does not match: prefixes only

    # With a point: only within the radius, nearest first, with distances.
    near = await sessions.SearchChargers(pb.SearchChargersRequest(q=name_word, lat=lat, lng=lng + 0.5))
    assert list(near.chargers) == []  # ~50 km away
    close = await sessions.SearchChargers(pb.SearchChargersRequest(q=name_word, lat=lat + 0.001, lng=lng))
    assert [c.id for c in close.chargers] == [f"nrel-{by_name.external_id}"]
    assert close.chargers[0].distance_m == pytest.approx(great_circle_m(lat + 0.001, lng, lat, lng), abs=0.1)
    assert close.chargers[0].network_name == "Volta"

    # Without a point, no distance.
    listed = await sessions.SearchChargers(pb.SearchChargersRequest(q=name_word))
    assert not listed.chargers[0].HasField("distance_m")


async def test_any_text_is_a_query_never_an_error(sessions: Stub) -> None:
    alphabet = "aZ9 '\"\\:*&|!()<->,.;-_@/#%$€ßü\t"
    for _ in range(40):
        # A letter first: a text of blanks only is no query (refused, tested below), not an odd one.
        q = "a" + "".join(random.choice(alphabet) for _ in range(random.randint(0, 39)))
        await sessions.SearchChargers(pb.SearchChargersRequest(q=q))
    for q in ("'", "\\", ":*", "&", "!", "a & | b", "x' OR '1'='1", "zq:*", "''':*"):
        await sessions.SearchChargers(pb.SearchChargersRequest(q=q))


async def test_a_search_needs_a_text_or_a_point_and_sane_bounds(sessions: Stub) -> None:
    for request, field in (
        (pb.SearchChargersRequest(), "q"),
        (pb.SearchChargersRequest(q="   "), "q"),
        (pb.SearchChargersRequest(lat=1.0, lng=1.0, radius_m=50), "radius_m"),
        (pb.SearchChargersRequest(lat=1.0, lng=1.0, radius_m=100_001), "radius_m"),
        (pb.SearchChargersRequest(q="x", page_size=101), "page_size"),
        (pb.SearchChargersRequest(q="x" * 201), "q"),
    ):
        assert bad_fields(await refused(sessions.SearchChargers(request), grpc.StatusCode.INVALID_ARGUMENT)) == [field]
    # lat without lng: a rule over both fields.
    await refused(sessions.SearchChargers(pb.SearchChargersRequest(lat=1.0)), grpc.StatusCode.INVALID_ARGUMENT)


@pytest.mark.parametrize(
    ("lat", "lng", "field"),
    [
        (91.0, 0.0, "lat"),
        (-90.5, 0.0, "lat"),
        (0.0, 181.0, "lng"),
        (0.0, -180.5, "lng"),
        (math.nan, 0.0, "lat"),
        (0.0, math.nan, "lng"),
        (math.inf, 0.0, "lat"),
    ],
)
async def test_a_position_off_the_globe_is_refused_naming_the_field(
    sessions: Stub, driver: Person, lat: float, lng: float, field: str
) -> None:
    calls = (
        sessions.SearchChargers(pb.SearchChargersRequest(lat=lat, lng=lng)),
        sessions.GetCharger(pb.GetChargerRequest(charger_id="any", lat=lat, lng=lng)),
        sessions.CheckLocation(pb.CheckLocationRequest(lat=lat, lng=lng), metadata=driver.auth),
    )
    for call in calls:
        error = await refused(call, grpc.StatusCode.INVALID_ARGUMENT)
        assert set(bad_fields(error)) == {field}
        assert error_reason(error) == "INVALID_ARGUMENT"


async def test_the_search_wraps_around_the_antimeridian_and_over_the_poles(sessions: Stub, admin: Person) -> None:
    lat = random.uniform(-60, 60)
    east = record(lat, 179.9995)
    await import_(sessions, admin, east)
    west = await sessions.SearchChargers(pb.SearchChargersRequest(lat=lat, lng=-179.9995, radius_m=1_000))
    assert [c.id for c in west.chargers] == [f"nrel-{east.external_id}"]
    assert west.chargers[0].distance_m == pytest.approx(great_circle_m(lat, 179.9995, lat, -179.9995), abs=0.1)
    assert west.chargers[0].distance_m < 120

    # 50 m past the north pole, on the other side of the globe.
    polar = record(89.99955, random.uniform(-180, 180))
    await import_(sessions, admin, polar)
    opposite = (polar.lng + 360) % 360 - 180
    across = await sessions.SearchChargers(pb.SearchChargersRequest(lat=89.9999, lng=opposite, radius_m=100))
    assert f"nrel-{polar.external_id}" in [c.id for c in across.chargers]


# --- one charger ---------------------------------------------------------------------------------------------


async def test_a_charger_is_public_with_its_distance_and_drive_time(sessions: Stub, admin: Person) -> None:
    lat, lng = lonely_point()
    charger = record(lat, lng, name="Drive-time test", network_name="EVgo", connector_types=["CCS1"], zone_id="z-1")
    await import_(sessions, admin, charger)
    charger_id = f"nrel-{charger.external_id}"

    plain = await sessions.GetCharger(pb.GetChargerRequest(charger_id=charger_id))
    assert (plain.id, plain.name, plain.network_name, list(plain.connector_types), plain.zone_id) == (
        charger_id,
        "Drive-time test",
        "EVgo",
        ["CCS1"],
        "z-1",
    )
    assert not plain.HasField("distance_m") and not plain.HasField("drive_time_min")
    assert not plain.HasField("power_kw") and not plain.HasField("num_evse")
    assert (plain.total_sessions_30d, plain.unique_drivers_30d, plain.drivers_charging_now) == (0, 0, 0)

    there = destination(lat, lng, 90, 9_990)  # 9.99 km at 40 km/h: 14.985 min, rounded up
    far = await sessions.GetCharger(pb.GetChargerRequest(charger_id=charger_id, lat=there[0], lng=there[1]))
    assert far.distance_m == pytest.approx(9_990, abs=0.1)
    assert far.drive_time_min == 15
    nudge = destination(lat, lng, 0, 10_010)
    rounded_up = await sessions.GetCharger(pb.GetChargerRequest(charger_id=charger_id, lat=nudge[0], lng=nudge[1]))
    assert rounded_up.drive_time_min == 16


async def test_a_charger_shows_its_last_30_days_of_sessions(
    sessions: Stub, admin: Person, sessions_engine: AsyncEngine
) -> None:
    charger = record(*lonely_point())
    await import_(sessions, admin, charger)
    charger_id = f"nrel-{charger.external_id}"
    now = datetime.datetime.now(datetime.UTC)
    ana, bob, cy, dee = (str(uuid.uuid4()) for _ in range(4))

    def session(driver: str, *, ended_days_ago: float | None, minutes: int = 0) -> dict[str, Any]:
        end = None if ended_days_ago is None else now - datetime.timedelta(days=ended_days_ago)
        start = (end or now) - datetime.timedelta(minutes=minutes or 20)
        return {
            "id": uuid.uuid4(),
            "driver_id": driver,
            "vehicle_id": uuid.uuid4().hex,
            "source": pb.SESSION_SOURCE_TESLA_API,
            "session_start": start,
            "session_end": end,
            "duration_minutes": minutes if end else None,
            "ended_reason": pb.END_REASON_UNPLUGGED if end else None,
            "charger_id": charger_id,
            "last_telemetry_at": end or now,
        }

    async with sessions_engine.begin() as conn:
        await conn.execute(
            sa.insert(store.charging_sessions),
            [
                session(ana, ended_days_ago=1, minutes=30),
                session(ana, ended_days_ago=29, minutes=15),
                session(bob, ended_days_ago=3, minutes=45),
                session(dee, ended_days_ago=31, minutes=90),  # before the window
                session(cy, ended_days_ago=None),  # charging now
            ],
        )
        await conn.execute(  # another charger's session
            sa.insert(store.charging_sessions), [session(dee, ended_days_ago=1, minutes=60) | {"charger_id": "other"}]
        )
    detail = await sessions.GetCharger(pb.GetChargerRequest(charger_id=charger_id))
    assert (detail.total_sessions_30d, detail.unique_drivers_30d, detail.drivers_charging_now) == (3, 3, 1)
    assert detail.avg_duration_min == 30.0  # (30 + 15 + 45) / 3


async def test_an_unknown_charger_is_not_found(sessions: Stub) -> None:
    error = await refused(
        sessions.GetCharger(pb.GetChargerRequest(charger_id="no-such-charger")), grpc.StatusCode.NOT_FOUND
    )
    assert error_reason(error) == "CHARGER_NOT_FOUND"
    assert bad_fields(await refused(sessions.GetCharger(pb.GetChargerRequest()), grpc.StatusCode.INVALID_ARGUMENT)) == [
        "charger_id"
    ]


# --- am I at a charger ---------------------------------------------------------------------------------------


async def test_check_location_says_whether_the_device_is_within_150_m_of_the_nearest_charger(
    sessions: Stub, admin: Person, driver: Person
) -> None:
    lat, lng = lonely_point()
    charger = record(lat, lng, name="Curbside")
    farther = record(*destination(lat, lng, 180, 400), name="Across the street")
    await import_(sessions, admin, charger, farther)

    async def check(distance: float, bearing: float = 0) -> pb.CheckLocationResponse:
        at = destination(lat, lng, bearing, distance)
        return await sessions.CheckLocation(pb.CheckLocationRequest(lat=at[0], lng=at[1]), metadata=driver.auth)

    inside = await check(149, bearing=45)
    assert inside.in_charger_radius
    assert (inside.nearest_charger_id, inside.nearest_charger_name, inside.radius_m) == (
        f"nrel-{charger.external_id}",
        "Curbside",
        150,
    )
    assert inside.distance_m == pytest.approx(149, abs=0.1)
    assert (await check(0)).in_charger_radius
    outside = await check(151, bearing=45)  # inside a 150 m box, outside the circle
    assert not outside.in_charger_radius
    assert outside.nearest_charger_id == f"nrel-{charger.external_id}"
    assert (await check(260, bearing=180)).nearest_charger_id == f"nrel-{farther.external_id}"

    town = await check(20_000, bearing=0)
    assert (town.in_charger_radius, town.nearest_charger_id) == (False, f"nrel-{charger.external_id}")
    nowhere = await check(30_000, bearing=0)
    assert (nowhere.in_charger_radius, nowhere.nearest_charger_id, nowhere.nearest_charger_name) == (False, "", "")
    assert not nowhere.HasField("distance_m")
    assert nowhere.radius_m == 150


async def test_check_location_is_for_signed_in_drivers(sessions: Stub, person: NewPerson) -> None:
    request = pb.CheckLocationRequest(lat=1.0, lng=1.0)
    assert (
        error_reason(await refused(sessions.CheckLocation(request), grpc.StatusCode.UNAUTHENTICATED))
        == "UNAUTHENTICATED"
    )
    sponsor = await person("sponsor")
    await refused(sessions.CheckLocation(request, metadata=sponsor.auth), grpc.StatusCode.PERMISSION_DENIED)
    missing = await refused(
        sessions.CheckLocation(pb.CheckLocationRequest(lat=1.0), metadata=(await person()).auth),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_fields(missing) == ["lng"]


# --- nearest charger (the charging sessions' match) ---------------------------------------------------------


async def test_the_nearest_charger_within_500_m_is_matched_by_great_circle_distance(
    sessions: Stub, admin: Person, sessions_engine: AsyncEngine
) -> None:
    lat, lng = lonely_point()
    charger = record(lat, lng)
    await import_(sessions, admin, charger)
    for bearing in (0, 45, 90, 135, 225, 315):
        at_499 = destination(lat, lng, bearing, 499)
        at_501 = destination(lat, lng, bearing, 501)
        assert great_circle_m(lat, lng, *at_499) == pytest.approx(499, abs=1e-3)
        assert great_circle_m(lat, lng, *at_501) == pytest.approx(501, abs=1e-3)
        matched = await chargers.nearest_charger(sessions_engine, *at_499)
        assert matched is not None and matched.id == f"nrel-{charger.external_id}", bearing
        assert matched.distance_m == pytest.approx(499, abs=1e-3)
        # On the diagonals 501 m is well inside a ±500 m box (🐞 the original matched up to ~707 m).
        assert await chargers.nearest_charger(sessions_engine, *at_501) is None, bearing
        assert (await chargers.nearest_charger(sessions_engine, *at_501, within_m=502)) is not None

    # Inside the poll's own transaction, too.
    async with sessions_engine.begin() as conn:
        inside = await chargers.nearest_charger(conn, *destination(lat, lng, 10, 5), within_m=500)
        assert inside is not None and inside.id == f"nrel-{charger.external_id}"
        assert (inside.name, inside.lat, inside.lng) == (charger.name, lat, lng)


async def test_the_nearest_of_several_chargers_wins(
    sessions: Stub, admin: Person, sessions_engine: AsyncEngine
) -> None:
    lat, lng = lonely_point()
    placed = await _placed(sessions, admin, lat, lng, [350, 120, 480, 2_500])
    nearest = await chargers.nearest_charger(sessions_engine, lat, lng)
    assert nearest is not None and nearest.id == placed[120].id
    assert nearest.distance_m == pytest.approx(120, abs=1e-3)
    # 10 km away: past the first steps (1 km, 5 km) of a wide search.
    away = destination(lat, lng, random.uniform(0, 360), 10_000)
    wide = await chargers.nearest_charger(sessions_engine, *away, within_m=25_000)
    best = min(placed.values(), key=lambda c: great_circle_m(away[0], away[1], c.lat, c.lng))
    assert wide is not None and wide.id == best.id
    assert wide.distance_m == pytest.approx(great_circle_m(away[0], away[1], best.lat, best.lng), abs=1e-6)


def test_bounding_boxes_contain_every_point_of_the_circle() -> None:
    rng = random.Random(7)
    for _ in range(2_000):
        lat, lng = rng.uniform(-89.9, 89.9), rng.uniform(-180, 180)
        radius = rng.choice([1.0, 150.0, 500.0, 25_000.0, 100_000.0, 2_000_000.0])
        boxes = chargers.bounding_boxes(lat, lng, radius)
        assert 1 <= len(boxes) <= 2
        for _ in range(8):
            point_lat, point_lng = destination(lat, lng, rng.uniform(0, 360), radius * math.sqrt(rng.random()))
            assert any(b.south <= point_lat <= b.north and b.west <= point_lng <= b.east for b in boxes), (
                lat,
                lng,
                radius,
                point_lat,
                point_lng,
                boxes,
            )


# --- through Envoy, with the apps' paths ---------------------------------------------------------------------


def _auth(who: Person) -> dict[str, str]:
    return {"Authorization": f"Bearer {who.token}"}


def _ok(reply: httpx.Response) -> JsonObject:
    assert reply.status_code == 200, f"{reply.request.method} {reply.request.url}: {reply.text}"
    body: JsonObject = reply.json()
    return body


def _refused_rest(reply: httpx.Response, http_status: int) -> JsonObject:
    assert reply.status_code == http_status, f"{reply.request.method} {reply.request.url}: {reply.text}"
    body: JsonObject = reply.json()
    return body


def _rest_reason(body: JsonObject) -> str:
    infos = [d for d in body.get("details", []) if str(d.get("@type", "")).endswith("google.rpc.ErrorInfo")]
    return str(infos[0]["reason"]) if infos else ""


def _rest_fields(body: JsonObject) -> list[str]:
    return [
        v["field"]
        for d in body.get("details", [])
        if str(d.get("@type", "")).endswith("google.rpc.BadRequest")
        for v in d["field_violations"]
    ]


async def test_the_driver_app_searches_opens_and_checks_chargers_over_rest(
    rest: httpx.AsyncClient, admin: Person, driver: Person
) -> None:
    lat, lng = lonely_point()
    name = word()
    body = {
        "source": "manual",
        "chargers": [
            {
                "external_id": f"rest-{name}",
                "name": f"Tesla Supercharger {name}",
                "lat": lat,
                "lng": lng,
                "network_name": "Tesla",
                "power_kw": 250,
                "num_evse": 8,
                "connector_types": ["NACS"],
                "pricing_per_kwh_cents": 45,
                "address": "1 Test Way",
                "city": "Austin",
                "state": "TX",
                "zone_id": "austin-downtown",
            }
        ],
    }
    assert _ok(await rest.post("/v1/admin/chargers:import", json=body, headers=_auth(admin))) == {
        "created": 1,
        "updated": 0,
        "unchanged": 0,
    }
    _refused_rest(await rest.post("/v1/admin/chargers:import", json=body, headers=_auth(driver)), 403)
    _refused_rest(await rest.post("/v1/admin/chargers:import", json=body), 401)

    # "Search this area": empty q and the map centre; public.
    at = destination(lat, lng, 30, 200)
    found = _ok(await rest.get("/v1/chargers/search", params={"q": "", "lat": at[0], "lng": at[1]}))
    assert [c["id"] for c in found["chargers"]] == [f"rest-{name}"]
    charger = found["chargers"][0]
    assert charger["distance_m"] == pytest.approx(200, abs=0.1)
    assert (charger["name"], charger["network_name"], charger["power_kw"], charger["num_evse"]) == (
        f"Tesla Supercharger {name}",
        "Tesla",
        250,
        8,
    )
    assert (charger["connector_types"], charger["pricing_per_kwh_cents"], charger["zone_id"]) == (
        ["NACS"],
        45,
        "austin-downtown",
    )
    assert found["next_page_token"] == ""
    by_text = _ok(await rest.get("/v1/chargers/search", params={"q": f"tesla {name}"}))
    assert [c["id"] for c in by_text["chargers"]] == [f"rest-{name}"]
    assert "distance_m" not in by_text["chargers"][0]

    # The detail sheet, at both paths.
    for path in (f"/v1/chargers/rest-{name}", f"/v1/chargers/rest-{name}/detail"):
        detail = _ok(await rest.get(path, params={"lat": at[0], "lng": at[1]}))
        assert (detail["id"], detail["status"], detail["drive_time_min"]) == (f"rest-{name}", "available", 1)
        assert detail["distance_m"] == pytest.approx(200, abs=0.1)
        assert (detail["total_sessions_30d"], detail["avg_duration_min"], detail["drivers_charging_now"]) == (0, 0, 0)
    missing = _refused_rest(await rest.get(f"/v1/chargers/nope-{name}"), 404)
    assert _rest_reason(missing) == "CHARGER_NOT_FOUND"

    # "Am I at a charger": signed in; never null.
    _refused_rest(await rest.get("/v1/drivers/location/check", params={"lat": at[0], "lng": at[1]}), 401)
    here = _ok(await rest.get("/v1/drivers/location/check", params={"lat": at[0], "lng": at[1]}, headers=_auth(driver)))
    assert here["in_charger_radius"] is False  # 200 m > 150 m
    assert (here["nearest_charger_id"], here["nearest_charger_name"], here["radius_m"]) == (
        f"rest-{name}",
        f"Tesla Supercharger {name}",
        150,
    )
    assert here["distance_m"] == pytest.approx(200, abs=0.1)
    close = destination(lat, lng, 30, 100)
    assert _ok(
        await rest.get("/v1/drivers/location/check", params={"lat": close[0], "lng": close[1]}, headers=_auth(driver))
    )["in_charger_radius"]
    empty_lat, empty_lng = destination(lat, lng, 0, 40_000)
    nowhere = _ok(
        await rest.get("/v1/drivers/location/check", params={"lat": empty_lat, "lng": empty_lng}, headers=_auth(driver))
    )
    # No charger: the ids are absent, never "" (the app would send "" back as a charger id) nor null.
    assert nowhere == {"in_charger_radius": False, "radius_m": 150}


async def test_bad_positions_over_rest_are_400_naming_the_field(rest: httpx.AsyncClient, driver: Person) -> None:
    cases: list[tuple[dict[str, str | float], str]] = [
        ({"lat": 91, "lng": 0}, "lat"),
        ({"lat": 0, "lng": 181}, "lng"),
        ({"lat": "NaN", "lng": 0}, "lat"),
    ]
    for params, field in cases:
        body = _refused_rest(await rest.get("/v1/drivers/location/check", params=params, headers=_auth(driver)), 400)
        assert set(_rest_fields(body)) == {field}
        body = _refused_rest(await rest.get("/v1/chargers/search", params=params), 400)
        assert set(_rest_fields(body)) == {field}


# --- at 100 000 chargers -------------------------------------------------------------------------------------

BULK = 100_000
# Chargers cluster in cities, as they do: 80 % within a few km of one of 60 city centres of the continental
# US (about 1 300 a city), the rest spread over it.
CITIES = 60
NETWORKS = ("Tesla", "ChargePoint", "EVgo", "Electrify America", "Blink", "Volta")
_BULK_COLUMNS = (
    "id",
    "source",
    "external_id",
    "name",
    "lat",
    "lng",
    "network_name",
    "power_kw",
    "num_evse",
    "connector_types",
    "city",
    "state",
)
Centres = list[tuple[float, float]]


def _bulk_rows(rng: random.Random) -> tuple[Centres, list[tuple[Any, ...]]]:
    centres = [(rng.uniform(26, 48), rng.uniform(-122, -71)) for _ in range(CITIES)]
    rows = []
    for i in range(BULK):
        if i % 5:
            k = rng.randrange(CITIES)
            clat, clng = centres[k]
            lat = clat + rng.gauss(0, 0.06)
            lng = clng + rng.gauss(0, 0.06 / math.cos(math.radians(clat)))
            city = f"City{k}"
        else:
            lat, lng, city = rng.uniform(25, 49), rng.uniform(-124, -67), "Countryside"
        network = NETWORKS[i % len(NETWORKS)]
        name = f"{network} {city} #{i}"
        rows.append(
            (f"osm-bulk{i}", "osm", f"bulk{i}", name, lat, lng, network, 50.0 + i % 300, 1 + i % 12, ["CCS1"], city, "")
        )
    return centres, rows


def _plan_values(plan: Any, key: str) -> set[str]:
    """Every value of `key` (e.g. "Index Name", "Node Type") anywhere in a JSON plan."""
    found: set[str] = set()
    if isinstance(plan, dict):
        if key in plan:
            found.add(plan[key])
        for value in plan.values():
            found |= _plan_values(value, key)
    elif isinstance(plan, list):
        for value in plan:
            found |= _plan_values(value, key)
    return found


def _literal_sql(statement: tuple[sa.TextClause, dict[str, Any]], dialect: sa.Dialect) -> str:
    text, parameters = statement
    bound = text.bindparams(**parameters)
    return str(bound.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, max {ordered[-1] * 1000:.2f} ms"


async def test_100k_chargers_are_searched_through_the_indexes(
    database_server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(2024)
    centres, rows = _bulk_rows(rng)
    async with fresh_database(database_server_url) as url:
        raw = await asyncpg.connect(url)
        try:
            started = time.perf_counter()
            await raw.copy_records_to_table("chargers", schema_name="sessions", columns=_BULK_COLUMNS, records=rows)
            loaded = time.perf_counter() - started
            await raw.execute("VACUUM ANALYZE sessions.chargers")  # what autovacuum does after a bulk load
        finally:
            await raw.close()
        engine = create_engine(url, "sessions")
        try:
            await _check_the_plans(engine, centres)
            reads = single_statement_reads(engine)  # as the service reads
            timings = await _time_the_queries(reads, centres, rng)
            await _check_against_brute_force(reads, centres, rows, rng)
        finally:
            await engine.dispose()
    with capsys.disabled():
        print(f"\n[chargers at {BULK:,}] COPY of {BULK:,} rows with their indexes: {loaded:.2f} s")
        for name, samples in timings.items():
            print(f"[chargers at {BULK:,}] {name}: {_percentiles(samples)} ({len(samples)} calls)")


async def _check_the_plans(engine: AsyncEngine, centres: Centres) -> None:
    lat, lng = centres[3]
    geo = {
        "search around a point": chargers.search_statement(text="", near=(lat, lng), radius_m=25_000, limit=21),
        "text around a point": chargers.search_statement(text="evgo", near=(lat, lng), radius_m=25_000, limit=21),
        "nearest within 500 m": chargers.nearest_statement(lat, lng, 500),
        "nearest within 25 km": chargers.nearest_statement(lat, lng, 25_000),
        "across the antimeridian": chargers.nearest_statement(10.0, 179.999, 5_000),
    }
    async with engine.connect() as conn:

        async def plan_of(sql: str) -> Any:
            plan = (await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}")).scalar_one()
            return json.loads(plan) if isinstance(plan, str) else plan

        for name, statement in geo.items():
            plan = await plan_of(_literal_sql(statement, engine.dialect))
            assert "chargers_geo_point" in _plan_values(plan, "Index Name"), (name, plan)
            assert "Seq Scan" not in _plan_values(plan, "Node Type"), (name, plan)
        # Around a point, the candidates come from the index alone.
        plan = await plan_of(_literal_sql(geo["search around a point"], engine.dialect))
        assert "Index Only Scan" in _plan_values(plan, "Node Type"), plan
        # Text alone: the GIN index, for a rare word and for a common one ("tesla": one charger in six).
        for words in ("city12 evgo", "tesla"):
            plan = await plan_of(
                _literal_sql(chargers.search_statement(text=words, near=None, radius_m=0, limit=21), engine.dialect)
            )
            assert "chargers_search" in _plan_values(plan, "Index Name"), (words, plan)

        # The service's statements are prepared (asyncpg) and may be planned once for any parameters, as a
        # generic plan: that plan uses the index too.
        text, parameters = chargers.nearest_statement(lat, lng, 500)
        compiled = text.bindparams(**parameters).compile(dialect=engine.dialect)
        values = ", ".join(repr(compiled.params[name]) for name in compiled.positiontup or ())
        await conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        await conn.exec_driver_sql(f"PREPARE nearest_generic AS {compiled}")
        generic = await plan_of(f"EXECUTE nearest_generic({values})")
        assert "chargers_geo_point" in _plan_values(generic, "Index Name"), generic
        assert "$1" in json.dumps(generic)  # planned without the values
        await conn.exec_driver_sql("DEALLOCATE nearest_generic")
        await conn.exec_driver_sql("RESET plan_cache_mode")


async def _time_the_queries(engine: AsyncEngine, centres: Centres, rng: random.Random) -> dict[str, list[float]]:
    """Each call as the service makes it (its own connection from the pool, one statement), 400 times at
    places in cities (three in four) and in the countryside."""
    timings: dict[str, list[float]] = {}

    async def timed(name: str, call: Awaitable[Any]) -> None:
        started = time.perf_counter()
        await call
        timings.setdefault(name, []).append(time.perf_counter() - started)

    for i in range(400):
        if i % 4:
            clat, clng = centres[i % CITIES]
            lat, lng = clat + rng.gauss(0, 0.05), clng + rng.gauss(0, 0.05)
        else:
            lat, lng = rng.uniform(25, 49), rng.uniform(-124, -67)
        city = f"city{10 + i % 50}"  # two digits: the prefix names one city
        await timed("nearest_charger within 500 m (the poll's match)", chargers.nearest_charger(engine, lat, lng))
        await timed(
            "nearest_charger within 25 km (CheckLocation)", chargers.nearest_charger(engine, lat, lng, within_m=25_000)
        )
        await timed(
            "search around a point, 25 km, first 20", chargers.search_chargers(engine, near=(lat, lng), limit=21)
        )
        await timed(
            "search around a point, 100 km, first 20",
            chargers.search_chargers(engine, near=(lat, lng), radius_m=100_000, limit=21),
        )
        await timed(
            "search 'evgo' around a point, 25 km",
            chargers.search_chargers(engine, text="evgo", near=(lat, lng), limit=21),
        )
        await timed(
            "search text '<city> evgo' (~220 matches)", chargers.search_chargers(engine, text=f"{city} evgo", limit=21)
        )
        await timed("search text 'tesla' (16 667 matches)", chargers.search_chargers(engine, text="tesla", limit=21))
    return timings


async def _check_against_brute_force(
    engine: AsyncEngine, centres: Centres, rows: list[tuple[Any, ...]], rng: random.Random
) -> None:
    """The index-backed answers equal a scan of every charger."""
    for i in range(12):
        clat, clng = centres[i]
        lat, lng = clat + rng.gauss(0, 0.05), clng + rng.gauss(0, 0.05)
        distances = sorted((great_circle_m(lat, lng, row[4], row[5]), row[0]) for row in rows)
        nearest = await chargers.nearest_charger(engine, lat, lng, within_m=25_000)
        assert nearest is not None and nearest.id == distances[0][1]
        assert nearest.distance_m == pytest.approx(distances[0][0], abs=1e-6)
        radius = rng.choice([300, 2_000, 10_000])
        within = [charger_id for distance, charger_id in distances if distance <= radius]
        found = await chargers.search_chargers(engine, near=(lat, lng), radius_m=radius, limit=100)
        assert [c.id for c in found] == within[:100]


async def test_a_search_text_naming_a_place_finds_the_chargers_around_it(
    sessions: Stub, places_fake: FakePlaces, charger: tuple[str, float, float]
) -> None:
    charger_id, lat, lng = charger
    town = f"Geotown {uuid.uuid4().hex[:8]}"
    places_fake.add_place(town, lat + 0.002, lng, address="1 Main St")
    found = await sessions.SearchChargers(pb.SearchChargersRequest(q=town))
    assert found.location.name == town and found.location.lat == pytest.approx(lat + 0.002)
    assert found.chargers[0].id == charger_id  # the test's own charger is the one nearest that place
    assert found.chargers[0].distance_m == pytest.approx(great_circle_m(lat + 0.002, lng, lat, lng), abs=0.5)
    # Google asked with the driver's position as a bias when the app sends one.
    await sessions.SearchChargers(pb.SearchChargersRequest(q=town, lat=lat, lng=lng))
    assert places_fake.searches[-1]["locationBias"]["circle"]["center"] == {"latitude": lat, "longitude": lng}


async def test_without_a_place_or_with_google_down_the_text_matches_names(
    sessions: Stub, places_fake: FakePlaces, engine: AsyncEngine
) -> None:
    name_word = f"Zyx{uuid.uuid4().hex[:8]}"
    lat, lng = random.uniform(-60, -40), random.uniform(100, 140)
    await chargers.import_chargers(
        engine,
        "manual",
        [chargers.ChargerRecord(external_id=f"t-{name_word}", name=f"{name_word} Plaza", lat=lat, lng=lng)],
    )
    unknown = await sessions.SearchChargers(pb.SearchChargersRequest(q=name_word))
    assert not unknown.HasField("location") and [c.name for c in unknown.chargers] == [f"{name_word} Plaza"]
    places_fake.fail_next(times=5, status=503)
    down = await sessions.SearchChargers(pb.SearchChargersRequest(q=name_word))
    assert not down.HasField("location") and [c.name for c in down.chargers] == [f"{name_word} Plaza"]
    # The geocoder may not use every scripted failure: leave none for the other Places callers of the session
    # (the merchants funnel).
    places_fake.fail_next(times=0)
