"""The merchant app's acquisition funnel over REST through Envoy, against the fake Google Places: find a business,
resolve it into a store with Google's listing and a signed preview, open the preview, claim the store."""

from __future__ import annotations

import secrets
import urllib.parse
from typing import Any

import httpx
import sqlalchemy as sa
from nerava.merchants.v1 import merchants_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from fakes.places import FakePlace, FakePlaces
from fakes.sendgrid import FakeSendGrid
from services.merchants.store import merchant_claims as C
from tests.merchants.helpers import Merchants, Store
from tests.support.people import Person

AUSTIN = (30.2672, -97.7431)
# Open around the clock every day, as Google lists it (Sunday = 0): open now whenever the test runs.
ALWAYS_OPEN = tuple(((day, "00:00"), ((day + 1) % 7, "00:00")) for day in range(7))


def _business(places: FakePlaces, **listing: Any) -> FakePlace:
    """A cafe on Google with a full listing and a website of its own, cafe-<random>.example."""
    tag = secrets.token_hex(4)
    name = f"Funnel Cafe {tag}"
    fields: dict[str, Any] = {
        "website": f"https://www.cafe-{tag}.example/",
        "rating": 4.6,
        "user_rating_count": 120,
        "business_status": "OPERATIONAL",
        "photo_uris": ("https://photos.example/one.jpg", "https://photos.example/two.jpg"),
        "periods": ALWAYS_OPEN,
        "primary_type": "cafe",
        "time_zone": "America/Chicago",
        "phone": "(512) 555-0100",
        **listing,
    }
    return places.add_place(name, AUSTIN[0] + 0.001, AUSTIN[1], address="1 Congress Ave, Austin, TX", **fields)


def _reason(body: dict[str, Any]) -> str:
    return next((d["reason"] for d in body.get("details", []) if "reason" in d and "@type" in d), "")


async def _resolve(rest: httpx.AsyncClient, place_id: str) -> dict[str, Any]:
    reply = await rest.post("/v1/merchant/funnel/resolve", json={"place_id": place_id})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def _claim_token(sendgrid: FakeSendGrid, email: str) -> str:
    text = sendgrid.last_to(email).text
    link = next(word for word in text.split() if "/claim/verify?" in word)
    return urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["token"][0]


async def test_a_merchant_finds_previews_and_claims_their_business(
    rest: httpx.AsyncClient,
    places_fake: FakePlaces,
    sendgrid: FakeSendGrid,
    driver: Person,
    merchants_engine: AsyncEngine,
) -> None:
    place = _business(places_fake)

    # 1. Find: public, near the device.
    found = await rest.get(
        "/v1/merchant/funnel/search", params={"query": place.name, "lat": AUSTIN[0], "lng": AUSTIN[1]}
    )
    assert found.status_code == 200, found.text
    first = found.json()["businesses"][0]
    assert (first["place_id"], first["name"], first["category"]) == (place.place_id, place.name, "cafe")
    assert (first["merchant_id"], first["claimed"]) == ("", False)

    # 2. Resolve: a store from Google's listing, and a signed link; again the same store.
    resolved = await _resolve(rest, place.place_id)
    merchant_id = resolved["merchant_id"]
    assert (await _resolve(rest, place.place_id))["merchant_id"] == merchant_id
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(resolved["preview_url"]).query))
    assert query == {"merchant_id": merchant_id, "exp": str(resolved["exp"]), "sig": resolved["sig"]}
    again = await rest.get("/v1/merchant/funnel/search", params={"query": place.name})
    assert again.json()["businesses"][0]["merchant_id"] == merchant_id

    # 3. Preview: Google's rating, photos, hours and business status, not made-up values.
    preview = await rest.get("/v1/merchant/funnel/preview", params=query)
    assert preview.status_code == 200, preview.text
    page = preview.json()
    assert (page["id"], page["name"], page["place_id"]) == (merchant_id, place.name, place.place_id)
    assert (page["rating"], page["user_rating_count"], page["business_status"]) == (4.6, 120, "OPERATIONAL")
    assert page["photo_urls"] == list(place.photo_uris)
    assert page["photo_url"] == place.photo_uris[0]
    assert (page["open_now"], page["open_until"], page["claimed"]) == (True, "00:00", False)

    # Google's listing changes: the next resolve refreshes the store.
    places_fake.update_place(place.place_id, rating=3.9, business_status="CLOSED_TEMPORARILY", photo_uris=())
    await _resolve(rest, place.place_id)
    page = (await rest.get("/v1/merchant/funnel/preview", params=query)).json()
    assert (page["rating"], page["business_status"], page["photo_urls"]) == (3.9, "CLOSED_TEMPORARILY", [])

    # 4. Claim: before sign-in, with the link, for an address at the store's own web domain.
    domain = place.website.removeprefix("https://www.").rstrip("/")
    email = f"owner@{domain}"
    claim_body = {**query, "email": f"Owner@{domain}"}
    forged = await rest.post("/v1/merchant/funnel/claim", json={**claim_body, "sig": "0" * 64})
    assert (forged.status_code, _reason(forged.json())) == (403, "PREVIEW_LINK_INVALID")
    claimed = await rest.post("/v1/merchant/funnel/claim", json=claim_body)
    assert claimed.status_code == 200, claimed.text
    claim = claimed.json()["claim"]
    assert (claim["merchant_id"], claim["merchant_name"], claim["email"]) == (merchant_id, place.name, email)
    assert claim["status"] == "MERCHANT_CLAIM_STATUS_PENDING"
    # Asking again (here signed in as someone) answers the same claim and emails a fresh link.
    repeat = (await rest.post("/v1/merchant/funnel/claim", json=claim_body, headers=driver.headers)).json()
    assert repeat["claim"]["id"] == claim["id"]
    # An address elsewhere cannot claim it, and leaves no claim behind.
    stranger = await rest.post("/v1/merchant/funnel/claim", json={**query, "email": "owner@gmail.com"})
    assert (stranger.status_code, _reason(stranger.json())) == (403, "CLAIM_NOT_OWNER")

    # 5. The emailed link (the sign-in's claim link) makes that address's account the owner, merchant role.
    opened = await rest.get("/v1/merchant/claim/verify-magic-link", params={"token": _claim_token(sendgrid, email)})
    assert opened.status_code == 200, opened.text
    signed_in = opened.json()
    assert (signed_in["merchant_id"], signed_in["user"]["roles"]) == (merchant_id, ["ROLE_MERCHANT"])
    owner = {"authorization": f"Bearer {signed_in['access_token']}"}
    mine = await rest.get("/v1/merchants/me", headers=owner)
    assert mine.json()["merchant"]["id"] == merchant_id
    assert (await rest.get("/v1/merchant/funnel/preview", params=query)).json()["claimed"] is True
    async with merchants_engine.connect() as conn:
        claims = (await conn.execute(sa.select(C.c.email, C.c.status).where(C.c.merchant_id == merchant_id))).all()
    assert [(row.email, row.status) for row in claims] == [(email, pb.MERCHANT_CLAIM_STATUS_VERIFIED)]
    taken = await rest.post("/v1/merchant/funnel/claim", json=claim_body)
    assert (taken.status_code, _reason(taken.json())) == (400, "MERCHANT_ALREADY_CLAIMED")


async def test_google_unknown_or_down(rest: httpx.AsyncClient, places_fake: FakePlaces) -> None:
    missing = await rest.post("/v1/merchant/funnel/resolve", json={"place_id": "ChIJdoesNotExist"})
    assert (missing.status_code, _reason(missing.json())) == (404, "PLACE_NOT_FOUND")

    known = _business(places_fake)
    merchant_id = (await _resolve(rest, known.place_id))["merchant_id"]
    new = _business(places_fake)
    places_fake.fail_next(times=1, status=503)
    down = await rest.post("/v1/merchant/funnel/resolve", json={"place_id": new.place_id})
    assert (down.status_code, _reason(down.json())) == (503, "PLACES_UNAVAILABLE")
    # A store already known keeps its stored listing while Google is down.
    places_fake.fail_next(times=1, status=503)
    assert (await _resolve(rest, known.place_id))["merchant_id"] == merchant_id
    places_fake.fail_next(times=1, status=503)
    search = await rest.get("/v1/merchant/funnel/search", params={"query": known.name})
    assert (search.status_code, _reason(search.json())) == (503, "PLACES_UNAVAILABLE")


async def test_an_owned_store_cannot_be_claimed(
    rest: httpx.AsyncClient, shop: Store, admin: Person, driver: Person
) -> None:
    link = await rest.post(f"/v1/admin/merchants/{shop.id}/preview-links", json={}, headers=admin.headers)
    assert link.status_code == 200, link.text
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(link.json()["preview_url"]).query))
    assert (await rest.get("/v1/merchant/funnel/preview", params=query)).json()["claimed"] is True
    refused = await rest.post(
        "/v1/merchant/funnel/claim", json={**query, "email": "someone@else.example"}, headers=driver.headers
    )
    assert (refused.status_code, _reason(refused.json())) == (400, "MERCHANT_ALREADY_CLAIMED")


async def test_an_owned_stores_listing_stays_its_owners(
    rest: httpx.AsyncClient, places_fake: FakePlaces, merchants: Merchants, admin: Person, owner: Person
) -> None:
    """Resolving the place of a store someone runs refreshes only Google's judgement of it (rating, status)."""
    place = _business(places_fake)
    store = await merchants.create_store(admin, owner, place_id=place.place_id, name="The Owner's Name")
    resolved = await _resolve(rest, place.place_id)
    assert resolved["merchant_id"] == store.id
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(resolved["preview_url"]).query))
    page = (await rest.get("/v1/merchant/funnel/preview", params=query)).json()
    assert (page["name"], page["address"], page["photo_urls"]) == ("The Owner's Name", "1 Test Street", [])
    assert (page["rating"], page["user_rating_count"], page["business_status"]) == (4.6, 120, "OPERATIONAL")
