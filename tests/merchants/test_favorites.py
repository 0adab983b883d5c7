"""Drivers' favorites (stores and chargers) and amenity votes, through the gateway as the driver app calls them."""

from __future__ import annotations

import httpx

from tests.merchants.helpers import Store
from tests.support.people import NewPerson, Person


async def test_votes_count_once_per_driver_and_show_on_the_store_page(
    shop: Store, driver: Person, person: NewPerson, rest: httpx.AsyncClient
) -> None:
    vote = f"/v1/merchants/{shop.id}/amenities/bathroom/vote"
    first = await rest.post(vote, json={"vote_type": "up"}, headers=driver.headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"ok": True, "upvotes": 1, "downvotes": 0}
    again = await rest.post(vote, json={"vote_type": "up"}, headers=driver.headers)
    assert again.json() == {"ok": True, "upvotes": 1, "downvotes": 0}  # one vote per driver
    other = await person()
    changed = await rest.post(vote, json={"vote_type": "down"}, headers=other.headers)
    assert changed.json() == {"ok": True, "upvotes": 1, "downvotes": 1}
    flipped = await rest.post(vote, json={"vote_type": "down"}, headers=driver.headers)
    assert flipped.json() == {"ok": True, "upvotes": 0, "downvotes": 2}  # a new vote replaces theirs

    page = await rest.get(f"/v1/merchants/{shop.id}")
    assert page.json()["merchant"]["amenities"] == {
        "bathroom": {"upvotes": 0, "downvotes": 2},
        "wifi": {"upvotes": 0, "downvotes": 0},
    }

    for path, body in (
        (f"/v1/merchants/{shop.id}/amenities/parking/vote", {"vote_type": "up"}),
        (vote, {"vote_type": "meh"}),
    ):
        assert (await rest.post(path, json=body, headers=driver.headers)).status_code == 400
    assert (await rest.post(vote, json={"vote_type": "up"})).status_code == 401
    unknown = await rest.post(
        "/v1/merchants/m_nope/amenities/wifi/vote", json={"vote_type": "up"}, headers=driver.headers
    )
    assert unknown.status_code == 404


async def test_a_driver_keeps_favorite_stores_and_chargers_of_their_own(
    shop: Store, driver: Person, person: NewPerson, rest: httpx.AsyncClient
) -> None:
    added = await rest.post(f"/v1/merchants/{shop.id}/favorite", headers=driver.headers)
    assert added.json() == {"ok": True, "favorited": True}
    assert (await rest.post(f"/v1/merchants/{shop.id}/favorite", headers=driver.headers)).status_code == 200
    charger = await rest.post(f"/v1/chargers/{shop.charger_id}/favorite", headers=driver.headers)
    assert charger.json() == {"ok": True, "favorited": True}

    stores = (await rest.get("/v1/merchants/favorites", headers=driver.headers)).json()["favorites"]
    assert [(s["merchant_id"], s["name"]) for s in stores] == [(shop.id, "Test Coffee")]
    chargers = (await rest.get("/v1/chargers/favorites", headers=driver.headers)).json()["favorites"]
    assert [(c["charger_id"], c["name"]) for c in chargers] == [(shop.charger_id, "Merchant test charger")]

    stranger = await person()
    assert (await rest.get("/v1/merchants/favorites", headers=stranger.headers)).json() == {"favorites": []}

    removed = await rest.delete(f"/v1/merchants/{shop.id}/favorite", headers=driver.headers)
    assert removed.json() == {"ok": True, "favorited": False}
    assert (await rest.delete(f"/v1/chargers/{shop.charger_id}/favorite", headers=driver.headers)).status_code == 200
    assert (await rest.get("/v1/merchants/favorites", headers=driver.headers)).json() == {"favorites": []}
    assert (await rest.get("/v1/chargers/favorites", headers=driver.headers)).json() == {"favorites": []}

    assert (await rest.post("/v1/merchants/m_nope/favorite", headers=driver.headers)).status_code == 404
    assert (await rest.post("/v1/chargers/no-such-charger/favorite", headers=driver.headers)).status_code == 404
    assert (await rest.get("/v1/merchants/favorites")).status_code == 401
