"""Square onboarding over REST through Envoy, against the fake Square: the owner asks to connect, the browser
follows Square's authorization URL (the fake approves as the seller the test picks and redirects with a code and
the state), and the portal forwards code and state to the callback. A new PENDING store or the owner's own store
gets the recommended perk from the seller's average order value, and the tokens are stored sealed. Then the
refusals (state reused, someone else's, expired; declined on Square; Square down; another owner's Square
account; a driver), and the checkout's access token, refreshed near its expiry."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from fakes.square import FakeMerchant, FakeSquare
from services.common.config import Env
from services.common.errors import FailedPrecondition, Unavailable
from services.merchants import domain, store
from services.merchants.adapters.square import SquareAccounts
from services.merchants.config import MerchantsSettings
from services.merchants.onboarding import SquareOnboarding
from services.merchants.records import token_cipher
from tests.conftest import SQUARE_REDIRECT_URI
from tests.merchants.helpers import Merchants, Store
from tests.support.mesh import Mesh
from tests.support.people import NewPerson, Person

CONNECT = "/v1/merchants/square/connect"
CALLBACK = "/v1/merchants/square/callback"
S = store.square_connections
STATES = store.square_oauth_states
M = store.merchants


def seller(square: FakeSquare, *, orders: tuple[int, ...] = (), name: str = "Bean There") -> FakeMerchant:
    """A Square seller with one location in Austin and these COMPLETED orders, closed in the last days."""
    merchant = square.add_merchant(name)
    location = square.add_location(merchant.id, f"{name} Congress", address_line_1="600 Congress Ave")
    now = datetime.datetime.now(datetime.UTC)
    for day, total in enumerate(orders, start=1):
        square.add_order(location.id, total, created_at=now - datetime.timedelta(days=day))
    return merchant


async def authorize(
    rest: httpx.AsyncClient, square: FakeSquare, who: Person, as_seller: FakeMerchant | None, merchant_id: str = ""
) -> dict[str, str]:
    """ConnectSquare, then the browser at Square's authorization URL: the redirect's query (code or error,
    and the state). `as_seller` None: the seller declines."""
    params = {"merchant_id": merchant_id} if merchant_id else {}
    started = await rest.get(CONNECT, params=params, headers=who.headers)
    assert started.status_code == 200, started.text
    body = started.json()
    url = body["authorization_url"]
    assert url.startswith(f"{square.base_url}/oauth2/authorize?")
    assert dict(parse_qsl(urlsplit(url).query))["state"] == body["state"]
    if as_seller is None:
        square.deny_next_authorization()
    else:
        square.approve_as(as_seller.id)
    async with httpx.AsyncClient(follow_redirects=False, timeout=5) as browser:
        redirect = await browser.get(url)
    assert redirect.status_code == 302, redirect.text
    location = redirect.headers["location"]
    assert location.startswith(SQUARE_REDIRECT_URI + "?")
    query = dict(parse_qsl(urlsplit(location).query))
    assert query["state"] == body["state"]
    # What the portal page forwards.
    return {name: value for name, value in query.items() if name in {"code", "state", "error", "error_description"}}


async def callback(rest: httpx.AsyncClient, who: Person, query: dict[str, str]) -> httpx.Response:
    return await rest.get(CALLBACK, params=query, headers=who.headers)


def reason(response: httpx.Response) -> str:
    details: list[dict[str, Any]] = response.json().get("details", [])
    return next((str(detail["reason"]) for detail in details if "reason" in detail), "")


async def connection(engine: AsyncEngine, square_merchant_id: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(S).where(S.c.square_merchant_id == square_merchant_id))).first()


async def stores_of(engine: AsyncEngine, owner: Person) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.select(M.c.id).where(M.c.owner_user_id == owner.user_id))).scalars())


async def used_at(engine: AsyncEngine, state: str) -> datetime.datetime | None:
    async with engine.connect() as conn:
        value: datetime.datetime | None = (
            await conn.execute(sa.select(STATES.c.used_at).where(STATES.c.state == state))
        ).scalar_one()
    return value


@pytest.fixture
def settings(mesh: Mesh) -> MerchantsSettings:
    """The merchants service's own settings (its token keys among them)."""
    return MerchantsSettings.from_env(Env(mesh.env))


@pytest.fixture
async def square_client(square_fake: FakeSquare) -> AsyncIterator[SquareAccounts]:
    async with SquareAccounts(
        application_id=square_fake.application_id,
        application_secret=square_fake.application_secret,
        redirect_uri=SQUARE_REDIRECT_URI,
        base_url=square_fake.base_url,
        timeout=2,
        max_retries=0,
    ) as client:
        yield client


@pytest.fixture
def rpcs(
    mesh: Mesh, merchants_engine: AsyncEngine, settings: MerchantsSettings, square_client: SquareAccounts
) -> SquareOnboarding:
    """The onboarding core over the test's own engine and Square client, with the service's token keys."""
    return SquareOnboarding(merchants_engine, square_client, token_cipher(settings.square_token_keys.value))


async def test_connecting_square_creates_a_pending_store_with_the_recommended_perk(
    rest: httpx.AsyncClient,
    square_fake: FakeSquare,
    owner: Person,
    merchants_engine: AsyncEngine,
    settings: MerchantsSettings,
    square_client: SquareAccounts,
) -> None:
    bean = seller(square_fake, orders=(1800, 2200, 1900, 2100))  # AOV 2000 ¢
    location = next(iter(bean.locations.values()))
    query = await authorize(rest, square_fake, owner, bean)
    done = await callback(rest, owner, query)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["average_order_value_cents"] == 2000
    assert body["recommended_perk_cents"] == domain.recommended_perk_cents(2000) == 300
    merchant = body["merchant"]
    assert merchant["id"] == body["merchant_id"]
    assert merchant["status"] == "MERCHANT_STATUS_PENDING"
    assert merchant["name"] == "Bean There Congress"
    assert merchant["address"] == "600 Congress Ave, Austin, TX 78701"
    assert (merchant["lat"], merchant["lng"]) == (location.lat, location.lng)
    assert merchant["hours"]["time_zone"] == "America/Chicago"
    assert merchant["owner_user_id"] == owner.user_id
    assert merchant["square_connected"] is True
    assert merchant["perk"]["recommended_perk_cents"] == 300
    assert (merchant["perk"]["perk_cents"], merchant["perk"]["source"]) == (300, "PERK_SOURCE_RECOMMENDED")
    assert merchant["perk"]["label"] == "$3 off any order"
    assert await stores_of(merchants_engine, owner) == [body["merchant_id"]]
    assert await used_at(merchants_engine, query["state"]) is not None

    async with merchants_engine.connect() as conn:
        row = (await conn.execute(sa.select(M).where(M.c.id == body["merchant_id"]))).one()
    assert row.average_order_value_cents == 2000 and len(row.qr_token) == 43
    assert body["qr_url"] == settings.checkout_page_url.replace("{token}", row.qr_token)
    # Not live yet: a PENDING store's QR code is not a checkout.
    scanned = await rest.get(f"/v1/checkout/qr/{row.qr_token}")
    assert scanned.status_code == 404 and reason(scanned) == "QR_TOKEN_UNKNOWN"

    # The tokens are sealed: the bytes do not hold them, the service's keys open them, and they are the seller's.
    sealed = await connection(merchants_engine, bean.id)
    assert (sealed.merchant_id, sealed.location_id, sealed.connected_by_user_id) == (
        body["merchant_id"],
        location.id,
        owner.user_id,
    )
    cipher = token_cipher(settings.square_token_keys.value)
    access_token = cipher.decrypt(bytes(sealed.access_token)).decode()
    refresh_token = cipher.decrypt(bytes(sealed.refresh_token)).decode()
    assert access_token.encode() not in bytes(sealed.access_token)
    assert refresh_token.encode() not in bytes(sealed.refresh_token)
    assert sealed.expires_at > datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=29)
    main = await square_client.main_location(access_token)
    assert main is not None and main.id == location.id
    assert (await square_client.refresh(refresh_token)).square_merchant_id == bean.id


async def test_a_seller_without_orders_gets_the_default_order_value(
    rest: httpx.AsyncClient, square_fake: FakeSquare, owner: Person
) -> None:
    quiet = seller(square_fake, name="Quiet Corner")
    done = await callback(rest, owner, await authorize(rest, square_fake, owner, quiet))
    assert done.status_code == 200, done.text
    assert done.json()["average_order_value_cents"] == domain.DEFAULT_AOV_CENTS == 1500
    assert done.json()["recommended_perk_cents"] == domain.recommended_perk_cents(None) == 250


async def test_connecting_an_existing_store_updates_its_perk_and_fills_what_it_lacks(
    rest: httpx.AsyncClient, square_fake: FakeSquare, shop: Store, merchants_engine: AsyncEngine
) -> None:
    bean = seller(square_fake, orders=(3000, 3000))
    query = await authorize(rest, square_fake, shop.owner, bean, merchant_id=shop.id)
    done = await callback(rest, shop.owner, query)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["merchant_id"] == shop.id
    assert body["recommended_perk_cents"] == domain.recommended_perk_cents(3000) == 450
    merchant = body["merchant"]
    assert merchant["status"] == "MERCHANT_STATUS_ACTIVE"  # stays as it was
    assert (merchant["name"], merchant["address"]) == ("Test Coffee", "1 Test Street")  # its own are kept
    assert (merchant["lat"], merchant["lng"]) == (shop.merchant.lat, shop.merchant.lng)
    assert merchant["hours"]["time_zone"] == "America/Chicago"  # it had none (UTC): Square's
    assert merchant["square_connected"] is True
    assert (merchant["perk"]["perk_cents"], merchant["perk"]["source"]) == (450, "PERK_SOURCE_RECOMMENDED")
    # Drivers see the new perk at checkout.
    scanned = (await rest.get(f"/v1/checkout/qr/{shop.qr_token}")).json()
    assert scanned["perk"] == {"perk_cents": 450, "label": "$4.50 off any order"}
    assert (await connection(merchants_engine, bean.id)).merchant_id == shop.id
    assert await stores_of(merchants_engine, shop.owner) == [shop.id]


async def test_reconnecting_the_same_square_account_updates_its_store(
    rest: httpx.AsyncClient, square_fake: FakeSquare, owner: Person, merchants_engine: AsyncEngine
) -> None:
    bean = seller(square_fake, orders=(1000,))
    first = (await callback(rest, owner, await authorize(rest, square_fake, owner, bean))).json()
    assert first["recommended_perk_cents"] == domain.recommended_perk_cents(1000)
    before = await connection(merchants_engine, bean.id)
    location = next(iter(bean.locations.values()))
    square_fake.add_order(location.id, 5000)  # AOV now 3000
    again = await callback(rest, owner, await authorize(rest, square_fake, owner, bean))
    assert again.status_code == 200, again.text
    assert again.json()["merchant_id"] == first["merchant_id"]
    assert again.json()["recommended_perk_cents"] == domain.recommended_perk_cents(3000)
    assert await stores_of(merchants_engine, owner) == [first["merchant_id"]]
    after = await connection(merchants_engine, bean.id)
    assert bytes(after.access_token) != bytes(before.access_token)  # the new grant's token


async def test_a_store_takes_a_new_square_account_and_an_account_moves_between_own_stores(
    rest: httpx.AsyncClient,
    square_fake: FakeSquare,
    merchants: Merchants,
    shop: Store,
    admin: Person,
    merchants_engine: AsyncEngine,
) -> None:
    owner = shop.owner
    first, second = seller(square_fake, name="First Pos"), seller(square_fake, name="Second Pos")
    await callback(rest, owner, await authorize(rest, square_fake, owner, first, merchant_id=shop.id))
    replaced = await callback(rest, owner, await authorize(rest, square_fake, owner, second, merchant_id=shop.id))
    assert replaced.status_code == 200, replaced.text
    assert await connection(merchants_engine, first.id) is None  # one Square account per store
    assert (await connection(merchants_engine, second.id)).merchant_id == shop.id

    other_shop = await merchants.create_store(admin, owner, name="Second Shop")
    moved = await callback(rest, owner, await authorize(rest, square_fake, owner, second, merchant_id=other_shop.id))
    assert moved.status_code == 200, moved.text
    assert (await connection(merchants_engine, second.id)).merchant_id == other_shop.id
    async with merchants_engine.connect() as conn:
        left = (await conn.execute(sa.select(S).where(S.c.merchant_id == shop.id))).first()
    assert left is None
    assert sorted(await stores_of(merchants_engine, owner)) == sorted([shop.id, other_shop.id])


async def test_an_admin_connects_an_owners_store(
    rest: httpx.AsyncClient, square_fake: FakeSquare, shop: Store, admin: Person, merchants_engine: AsyncEngine
) -> None:
    bean = seller(square_fake)
    done = await callback(rest, admin, await authorize(rest, square_fake, admin, bean, merchant_id=shop.id))
    assert done.status_code == 200, done.text
    assert done.json()["merchant"]["owner_user_id"] == shop.owner.user_id  # still the owner's store
    row = await connection(merchants_engine, bean.id)
    assert (row.merchant_id, row.connected_by_user_id) == (shop.id, admin.user_id)


async def test_another_owners_square_account_is_refused(
    rest: httpx.AsyncClient, square_fake: FakeSquare, owner: Person, person: NewPerson, merchants_engine: AsyncEngine
) -> None:
    bean = seller(square_fake)
    first = (await callback(rest, owner, await authorize(rest, square_fake, owner, bean))).json()
    intruder = await person("merchant")
    refused = await callback(rest, intruder, await authorize(rest, square_fake, intruder, bean))
    assert refused.status_code == 403 and reason(refused) == "SQUARE_ACCOUNT_TAKEN"
    assert first["merchant_id"] not in refused.text
    assert await stores_of(merchants_engine, intruder) == []
    kept = await connection(merchants_engine, bean.id)
    assert (kept.merchant_id, kept.connected_by_user_id) == (first["merchant_id"], owner.user_id)


async def test_a_state_works_once(rest: httpx.AsyncClient, square_fake: FakeSquare, owner: Person) -> None:
    query = await authorize(rest, square_fake, owner, seller(square_fake))
    assert (await callback(rest, owner, query)).status_code == 200
    replayed = await callback(rest, owner, query)
    assert replayed.status_code == 403 and reason(replayed) == "OAUTH_STATE_INVALID"
    unknown = await callback(rest, owner, {**query, "state": "A" * 43})
    assert unknown.status_code == 403 and reason(unknown) == "OAUTH_STATE_INVALID"


async def test_someone_elses_state_is_refused_and_stays_theirs(
    rest: httpx.AsyncClient, square_fake: FakeSquare, owner: Person, person: NewPerson, merchants_engine: AsyncEngine
) -> None:
    query = await authorize(rest, square_fake, owner, seller(square_fake))
    other = await person("merchant")
    stolen = await callback(rest, other, query)
    assert stolen.status_code == 403 and reason(stolen) == "OAUTH_STATE_INVALID"
    assert await used_at(merchants_engine, query["state"]) is None
    assert await stores_of(merchants_engine, other) == []
    assert (await callback(rest, owner, query)).status_code == 200


async def test_an_expired_state_is_refused(
    rest: httpx.AsyncClient, square_fake: FakeSquare, owner: Person, merchants_engine: AsyncEngine
) -> None:
    started = (await rest.get(CONNECT, headers=owner.headers)).json()
    issued = datetime.datetime.fromisoformat(started["expires_at"].replace("Z", "+00:00"))
    now = datetime.datetime.now(datetime.UTC)
    assert now + datetime.timedelta(minutes=9) < issued <= now + datetime.timedelta(minutes=10, seconds=5)
    query = await authorize(rest, square_fake, owner, seller(square_fake))
    async with merchants_engine.begin() as conn:
        await conn.execute(
            sa.update(STATES)
            .where(STATES.c.state == query["state"])
            .values(expires_at=sa.func.now() - datetime.timedelta(seconds=1))
        )
    expired = await callback(rest, owner, query)
    assert expired.status_code == 403 and reason(expired) == "OAUTH_STATE_INVALID"
    assert await stores_of(merchants_engine, owner) == []


async def test_declining_on_square_spends_the_state(
    rest: httpx.AsyncClient, square_fake: FakeSquare, owner: Person, merchants_engine: AsyncEngine
) -> None:
    seller(square_fake)
    query = await authorize(rest, square_fake, owner, None)
    assert query["error"] == "access_denied" and "code" not in query
    denied = await callback(rest, owner, query)
    assert denied.status_code == 400 and reason(denied) == "OAUTH_DENIED"
    assert await used_at(merchants_engine, query["state"]) is not None
    again = await callback(rest, owner, query)
    assert again.status_code == 403 and reason(again) == "OAUTH_STATE_INVALID"
    assert await stores_of(merchants_engine, owner) == []


async def test_a_refused_code_is_oauth_denied(
    rest: httpx.AsyncClient, square_fake: FakeSquare, owner: Person, merchants_engine: AsyncEngine
) -> None:
    query = await authorize(rest, square_fake, owner, seller(square_fake))
    refused = await callback(rest, owner, {**query, "code": "sq0cgp-not-a-code-Square-issued"})
    assert refused.status_code == 400 and reason(refused) == "OAUTH_DENIED"
    assert await stores_of(merchants_engine, owner) == []


async def test_a_square_account_without_a_location_is_refused(
    rest: httpx.AsyncClient, square_fake: FakeSquare, owner: Person, merchants_engine: AsyncEngine
) -> None:
    closed = square_fake.add_merchant("Closed Shop")
    square_fake.add_location(closed.id, "Old Place", status="INACTIVE")
    refused = await callback(rest, owner, await authorize(rest, square_fake, owner, closed))
    assert refused.status_code == 400 and reason(refused) == "SQUARE_NO_LOCATION"
    assert await connection(merchants_engine, closed.id) is None
    assert await stores_of(merchants_engine, owner) == []


async def test_square_down_writes_nothing_and_the_redirect_can_be_retried(
    rest: httpx.AsyncClient, square_fake: FakeSquare, owner: Person, merchants_engine: AsyncEngine
) -> None:
    bean = seller(square_fake)
    query = await authorize(rest, square_fake, owner, bean)
    token_calls = len(square_fake.requests_to("POST", "/oauth2/token"))
    square_fake.fail_next(times=2, status=503)  # the token call and the service's one retry
    down = await callback(rest, owner, query)
    assert down.status_code == 503 and reason(down) == "SQUARE_UNAVAILABLE"
    assert len(square_fake.requests_to("POST", "/oauth2/token")) == token_calls + 2
    assert await connection(merchants_engine, bean.id) is None
    assert await stores_of(merchants_engine, owner) == []
    assert await used_at(merchants_engine, query["state"]) is None
    # Square never ran the exchange, so the same code and state still connect.
    retried = await callback(rest, owner, query)
    assert retried.status_code == 200, retried.text
    assert (await connection(merchants_engine, bean.id)).merchant_id == retried.json()["merchant_id"]


async def test_only_merchants_and_admins_connect_and_only_their_own_stores(
    rest: httpx.AsyncClient, driver: Person, shop: Store, person: NewPerson
) -> None:
    refused = await rest.get(CONNECT, headers=driver.headers)
    assert refused.status_code == 403
    anonymous = await rest.get(CONNECT)
    assert anonymous.status_code == 401
    stranger = await person("merchant")
    hidden = await rest.get(CONNECT, params={"merchant_id": shop.id}, headers=stranger.headers)
    assert hidden.status_code == 404 and reason(hidden) == "MERCHANT_NOT_FOUND"


async def test_the_checkout_token_is_refreshed_near_its_expiry(
    rest: httpx.AsyncClient,
    square_fake: FakeSquare,
    owner: Person,
    shop: Store,
    merchants_engine: AsyncEngine,
    rpcs: SquareOnboarding,
    square_client: SquareAccounts,
) -> None:
    bean = seller(square_fake)
    location = next(iter(bean.locations.values()))
    merchant_id = (await callback(rest, owner, await authorize(rest, square_fake, owner, bean))).json()["merchant_id"]
    assert await rpcs.square_access_token(shop.id) is None  # not connected

    token_calls = len(square_fake.requests_to("POST", "/oauth2/token"))
    fresh = await rpcs.square_access_token(merchant_id)
    assert fresh is not None and fresh[1] == location.id
    assert len(square_fake.requests_to("POST", "/oauth2/token")) == token_calls  # 30 days left: as stored

    async def expiring_in(delta: datetime.timedelta) -> None:
        async with merchants_engine.begin() as conn:
            await conn.execute(
                sa.update(S).where(S.c.merchant_id == merchant_id).values(expires_at=sa.func.now() + delta)
            )

    # Square down while the token still works: the current one.
    await expiring_in(datetime.timedelta(hours=2))
    square_fake.fail_next(times=1, status=503)
    assert await rpcs.square_access_token(merchant_id) == fresh

    # Less than a day left: refreshed, stored sealed, and the new token works.
    refreshed = await rpcs.square_access_token(merchant_id)
    assert refreshed is not None and refreshed[0] != fresh[0] and refreshed[1] == location.id
    row = await connection(merchants_engine, bean.id)
    assert row.expires_at > datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=29)
    assert rpcs.token_cipher.decrypt(bytes(row.access_token)).decode() == refreshed[0]
    assert await rpcs.square_access_token(merchant_id) == refreshed
    main = await square_client.main_location(refreshed[0])
    assert main is not None and main.id == location.id

    # Expired and Square down: no usable token.
    await expiring_in(-datetime.timedelta(minutes=1))
    square_fake.fail_next(times=1, status=503)
    with pytest.raises(Unavailable) as down:
        await rpcs.square_access_token(merchant_id)
    assert down.value.reason == "SQUARE_UNAVAILABLE"

    # The seller revoked the application: the owner has to connect again.
    square_fake.revoke(bean.id)
    with pytest.raises(FailedPrecondition) as revoked:
        await rpcs.square_access_token(merchant_id)
    assert revoked.value.reason == "SQUARE_NOT_CONNECTED"
