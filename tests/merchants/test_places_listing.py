"""The funnel's Places client (services/merchants/adapters/places.py) against the fake Places API over real HTTP:
the requests it sends, the listing it reads, and how Google's refusals and outages reach the service."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from fakes.places import FakePlaces
from services.merchants.adapters.places import (
    LISTING_FIELDS,
    MAX_PHOTOS,
    Period,
    PlaceNotFound,
    PlacesDirectory,
    PlacesError,
    PlacesUnavailable,
)


@pytest_asyncio.fixture
async def places() -> AsyncIterator[FakePlaces]:
    async with FakePlaces() as fake:
        yield fake


@pytest_asyncio.fixture
async def directory(places: FakePlaces) -> AsyncIterator[PlacesDirectory]:
    client = PlacesDirectory(places.base_url, places.api_key, timeout_s=2.0)
    yield client
    await client.aclose()


async def test_a_listing_carries_googles_rating_photos_hours_and_status(
    places: FakePlaces, directory: PlacesDirectory
) -> None:
    photos = tuple(f"https://photos.example/{n}.jpg" for n in range(MAX_PHOTOS + 2))
    place = places.add_place(
        "Jo's Coffee",
        30.25,
        -97.75,
        address="1300 S Congress Ave",
        rating=4.5,
        user_rating_count=2100,
        business_status="OPERATIONAL",
        photo_uris=photos,
        # Sunday 08:00-14:00; Friday 07:00 to Saturday 01:00 (past midnight).
        periods=(((0, "08:00"), (0, "14:00")), ((5, "07:00"), (6, "01:00"))),
        primary_type="coffee_shop",
        time_zone="America/Chicago",
        website="https://joscoffee.example/",
    )

    listing = await directory.listing(place.place_id)

    assert (listing.business.name, listing.business.address, listing.business.category) == (
        "Jo's Coffee",
        "1300 S Congress Ave",
        "coffee_shop",
    )
    assert (listing.rating, listing.rating_count, listing.business_status) == (4.5, 2100, "OPERATIONAL")
    assert listing.photo_urls == photos[:MAX_PHOTOS]  # only the photos a store page shows are resolved
    assert listing.periods == (Period(7, 8 * 60, 14 * 60), Period(5, 7 * 60, 1 * 60))
    assert (listing.time_zone, listing.website) == ("America/Chicago", "https://joscoffee.example/")
    details, *media = [r for r in places.requests if r.path.startswith(f"/v1/places/{place.place_id}")]
    assert details.headers["x-goog-fieldmask"] == LISTING_FIELDS
    assert details.headers["x-goog-api-key"] == places.api_key
    assert len(media) == MAX_PHOTOS


async def test_a_place_without_a_listing_reads_as_unknown(places: FakePlaces, directory: PlacesDirectory) -> None:
    place = places.add_place("Bare Place", 30.0, -97.0)
    listing = await directory.listing(place.place_id)
    assert (listing.rating, listing.rating_count, listing.business_status) == (None, 0, "")
    assert (listing.photo_urls, listing.periods, listing.time_zone) == ((), (), "")


async def test_search_sends_the_text_near_the_point(places: FakePlaces, directory: PlacesDirectory) -> None:
    near = places.add_place("Franklin Barbecue", 30.27, -97.73, primary_type="barbecue_restaurant")
    places.add_place("Franklin Barbecue", 40.0, -100.0)
    found = await directory.search("franklin barbecue", (30.27, -97.73))
    assert (len(found), found[0].place_id) == (2, near.place_id)
    assert found[0].category == "barbecue_restaurant"
    assert places.searches[-1]["locationBias"]["circle"]["center"] == {"latitude": 30.27, "longitude": -97.73}


async def test_refusals_and_outages_are_typed(places: FakePlaces) -> None:
    wrong_key = PlacesDirectory(places.base_url, "AIza-wrong", timeout_s=2.0)
    try:
        with pytest.raises(PlacesError) as refused:
            await wrong_key.search("anything", None)
        assert not refused.value.retryable
    finally:
        await wrong_key.aclose()
    directory = PlacesDirectory(places.base_url, places.api_key, timeout_s=2.0)
    try:
        with pytest.raises(PlaceNotFound):
            await directory.listing("ChIJnothere")
        places.fail_next(times=1, status=503)
        with pytest.raises(PlacesUnavailable):
            await directory.listing("ChIJnothere")
    finally:
        await directory.aclose()
