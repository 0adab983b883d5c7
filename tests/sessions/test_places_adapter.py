"""The charger search's geocoder (Google Places API (New) Text Search) against the local fake (fakes/places.py).

The fake is the only test double: the geocoder's httpx client talks real HTTP to it, so the request JSON, the key
and field-mask headers, Google's answers (`{}` for nothing found) and its error JSON are the ones the geocoder
will meet in production.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from fakes.places import FakePlaces, main, seed_demo
from services.sessions.adapters.places import (
    FIELD_MASK,
    GeocoderError,
    GeocoderUnavailable,
    Place,
    PlacesGeocoder,
)

ROOT = Path(__file__).resolve().parents[2]
DOWNTOWN = (30.2672, -97.7431)


@pytest_asyncio.fixture
async def places() -> AsyncIterator[FakePlaces]:
    async with FakePlaces() as fake:
        seed_demo(fake)
        yield fake


@pytest_asyncio.fixture
async def geocoder(places: FakePlaces) -> AsyncIterator[PlacesGeocoder]:
    async with PlacesGeocoder(places.api_key, base_url=places.base_url) as client:
        yield client


async def _closed_port() -> int:
    """A port nothing listens on: bind one, then close it."""
    server = await asyncio.start_server(lambda _reader, _writer: None, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


# -- found, not found ----------------------------------------------------------------------------


async def test_a_known_place_is_found_with_its_id_name_address_and_position(
    places: FakePlaces, geocoder: PlacesGeocoder
) -> None:
    soco = next(place for place in places.places if place.name == "South Congress")

    found = await geocoder.locate("South Congress")

    assert found == Place(
        place_id=soco.place_id,
        name="South Congress",
        address="S Congress Ave, Austin, TX, USA",
        lat=30.25,
        lng=-97.75,
    )


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("austin", "Austin, TX"),
        ("  AUSTIN,   tx ", "Austin, TX"),
        ("chargers near the domain", "The Domain"),
        ("Austin-Bergstrom Airport", "Austin-Bergstrom Airport"),
        ("aus", "Austin-Bergstrom Airport"),
    ],
)
async def test_texts_match_names_and_aliases_ignoring_case_and_spacing(
    geocoder: PlacesGeocoder, text: str, name: str
) -> None:
    found = await geocoder.locate(text)

    assert found is not None
    assert found.name == name


async def test_an_unknown_text_is_none(places: FakePlaces, geocoder: PlacesGeocoder) -> None:
    assert await geocoder.locate("Atlantis") is None
    assert await geocoder.locate("austinville") is None  # names match as whole words only
    assert len(places.searches) == 2


async def test_a_place_without_an_address_has_an_empty_one(places: FakePlaces, geocoder: PlacesGeocoder) -> None:
    places.add_place("Zilker Park", 30.2669, -97.7729)

    found = await geocoder.locate("zilker park")

    assert found is not None
    assert (found.name, found.address, found.lat, found.lng) == ("Zilker Park", "", 30.2669, -97.7729)


# -- the request on the wire ---------------------------------------------------------------------


async def test_the_request_carries_the_key_the_field_mask_and_one_result_in_the_region(
    places: FakePlaces, geocoder: PlacesGeocoder
) -> None:
    await geocoder.locate(" South Congress ")

    [request] = places.requests
    assert (request.method, request.path) == ("POST", "/v1/places:searchText")
    assert request.headers["x-goog-api-key"] == places.api_key
    assert request.headers["x-goog-fieldmask"] == FIELD_MASK
    assert FIELD_MASK == "places.id,places.displayName,places.formattedAddress,places.location"
    assert request.headers["content-type"] == "application/json"
    assert request.body == {"textQuery": "South Congress", "pageSize": 1, "regionCode": "US"}


async def test_near_sends_a_50_km_location_bias_around_it(places: FakePlaces, geocoder: PlacesGeocoder) -> None:
    await geocoder.locate("The Domain", near=DOWNTOWN)

    [body] = places.searches
    assert body["locationBias"] == {
        "circle": {"center": {"latitude": 30.2672, "longitude": -97.7431}, "radius": 50000},
    }
    assert body["textQuery"] == "The Domain"
    assert body["pageSize"] == 1


async def test_the_bias_picks_the_nearer_of_two_places_of_the_same_name(places: FakePlaces) -> None:
    in_dallas = places.add_place("Whole Foods Market", 32.7767, -96.7970, "Dallas, TX")
    in_austin = places.add_place("Whole Foods Market", 30.2707, -97.7531, "525 N Lamar Blvd, Austin, TX")

    async with PlacesGeocoder(places.api_key, base_url=places.base_url, region_code="") as geocoder:
        unbiased = await geocoder.locate("whole foods market")
        near_downtown = await geocoder.locate("whole foods market", near=DOWNTOWN)

    assert unbiased is not None
    assert unbiased.place_id == in_dallas.place_id  # no bias: the fake's first
    assert near_downtown is not None
    assert near_downtown.place_id == in_austin.place_id
    assert "regionCode" not in places.searches[0]


async def test_one_client_serves_many_searches_over_kept_alive_connections(
    places: FakePlaces, geocoder: PlacesGeocoder
) -> None:
    found = await asyncio.gather(*(geocoder.locate(text) for text in ["austin", "soco", "the domain"] * 3))

    assert [place.name if place else None for place in found] == ["Austin, TX", "South Congress", "The Domain"] * 3
    assert len(places.searches) == 9


# -- refusals and outages ------------------------------------------------------------------------


async def test_a_bad_key_is_a_geocoder_error_with_googles_status(places: FakePlaces) -> None:
    async with PlacesGeocoder("AIza-not-our-key", base_url=places.base_url) as geocoder:
        with pytest.raises(GeocoderError) as refused:
            await geocoder.locate("austin")

    assert not isinstance(refused.value, GeocoderUnavailable)
    assert refused.value.retryable is False
    assert refused.value.http_status == 403
    assert refused.value.status == "PERMISSION_DENIED"
    assert refused.value.detail == "API key not valid. Please pass a valid API key."
    assert "PERMISSION_DENIED" in str(refused.value)


@pytest.mark.parametrize(("status", "google_status"), [(400, "INVALID_ARGUMENT"), (403, "PERMISSION_DENIED")])
async def test_refused_requests_are_not_retryable(
    places: FakePlaces, geocoder: PlacesGeocoder, status: int, google_status: str
) -> None:
    places.fail_next(1, status)

    with pytest.raises(GeocoderError) as refused:
        await geocoder.locate("austin")

    assert type(refused.value) is GeocoderError
    assert (refused.value.http_status, refused.value.status) == (status, google_status)


@pytest.mark.parametrize(
    ("status", "google_status"),
    [(429, "RESOURCE_EXHAUSTED"), (500, "INTERNAL"), (503, "UNAVAILABLE"), (504, "DEADLINE_EXCEEDED")],
)
async def test_overload_and_server_errors_are_unavailable_then_it_recovers(
    places: FakePlaces, geocoder: PlacesGeocoder, status: int, google_status: str
) -> None:
    places.fail_next(2, status)

    for _ in range(2):
        with pytest.raises(GeocoderUnavailable) as unavailable:
            await geocoder.locate("austin")
        assert unavailable.value.retryable is True
        assert (unavailable.value.http_status, unavailable.value.status) == (status, google_status)

    found = await geocoder.locate("austin")
    assert found is not None
    assert found.name == "Austin, TX"


async def test_a_timeout_is_unavailable(places: FakePlaces) -> None:
    places.response_delay = 0.5
    async with PlacesGeocoder(places.api_key, base_url=places.base_url, timeout=0.05) as impatient:
        with pytest.raises(GeocoderUnavailable, match="timed out") as unavailable:
            await impatient.locate("austin")

    assert unavailable.value.http_status is None


async def test_an_unreachable_api_is_unavailable() -> None:
    port = await _closed_port()
    async with PlacesGeocoder("AIza-key", base_url=f"http://127.0.0.1:{port}") as geocoder:
        with pytest.raises(GeocoderUnavailable, match="unreachable"):
            await geocoder.locate("austin")


async def test_an_unreadable_answer_is_unavailable() -> None:
    async def html_page(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b"<html>captive portal</html>"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n")
        writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(html_page, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with PlacesGeocoder("AIza-key", base_url=f"http://127.0.0.1:{port}") as geocoder:
            with pytest.raises(GeocoderUnavailable, match="not a JSON object"):
                await geocoder.locate("austin")
    finally:
        server.close()
        await server.wait_closed()


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
async def test_blank_text_is_a_value_error_and_sends_nothing(
    places: FakePlaces, geocoder: PlacesGeocoder, text: str
) -> None:
    with pytest.raises(ValueError, match="blank"):
        await geocoder.locate(text)

    assert places.requests == []


@pytest.mark.parametrize("near", [(91.0, 0.0), (0.0, -181.0), (float("nan"), 0.0)])
async def test_an_impossible_near_is_a_value_error(geocoder: PlacesGeocoder, near: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="near"):
        await geocoder.locate("austin", near=near)


def test_a_geocoder_needs_a_key() -> None:
    with pytest.raises(ValueError, match="key"):
        PlacesGeocoder("")


# -- the fake itself: what the geocoder does not send -------------------------------------------


async def test_the_fake_answers_like_google_to_requests_the_geocoder_never_makes(places: FakePlaces) -> None:
    url = places.base_url + "/v1/places:searchText"
    key = {"X-Goog-Api-Key": places.api_key}
    mask = {"X-Goog-FieldMask": "places.displayName"}
    async with httpx.AsyncClient() as client:
        no_mask = await client.post(url, headers=key, json={"textQuery": "austin"})
        no_key = await client.post(url, headers=mask, json={"textQuery": "austin"})
        nothing = await client.post(url, headers=key | mask, json={"textQuery": "atlantis"})
        masked = await client.post(url, headers=key | mask, json={"textQuery": "austin"})
        every_field = await client.post(url, headers=key | {"X-Goog-FieldMask": "*"}, json={"textQuery": "soco"})
        unknown_field = await client.post(url, headers=key | {"X-Goog-FieldMask": "places.rating"}, json={})
        too_wide = await client.post(
            url,
            headers=key | mask,
            json={
                "textQuery": "austin",
                "locationBias": {"circle": {"center": {"latitude": 30.0, "longitude": -97.0}, "radius": 50001}},
            },
        )

    assert no_mask.status_code == 400
    assert no_mask.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "FieldMask" in no_mask.json()["error"]["message"]
    assert no_key.status_code == 403
    assert no_key.json()["error"] == {
        "code": 403,
        "message": "The request is missing a valid API key.",
        "status": "PERMISSION_DENIED",
    }
    assert (nothing.status_code, nothing.json()) == (200, {})
    assert masked.json() == {"places": [{"displayName": {"text": "Austin, TX", "languageCode": "en"}}]}
    [soco] = every_field.json()["places"]
    assert set(soco) == {"name", "id", "displayName", "formattedAddress", "location"}
    assert soco["name"] == f"places/{soco['id']}"
    assert unknown_field.status_code == 400
    assert too_wide.status_code == 400
    assert "radius" in too_wide.json()["error"]["message"]


@pytest.mark.parametrize(("page_size", "expected"), [(None, 3), (0, 3), (2, 2), (1, 1), (99, 3)])
async def test_the_fake_honours_page_size(places: FakePlaces, page_size: int | None, expected: int) -> None:
    places.add_place("Starbucks", 30.26, -97.74)
    places.add_place("Starbucks", 30.27, -97.75)
    places.add_place("Starbucks", 30.28, -97.76)
    body: dict[str, Any] = {"textQuery": "starbucks"}
    if page_size is not None:
        body["pageSize"] = page_size
    headers = {"X-Goog-Api-Key": places.api_key, "X-Goog-FieldMask": "places.id"}
    async with httpx.AsyncClient(base_url=places.base_url) as client:
        answer = await client.post("/v1/places:searchText", headers=headers, json=body)
        negative = await client.post("/v1/places:searchText", headers=headers, json=body | {"pageSize": -1})

    assert len(answer.json()["places"]) == expected
    assert negative.status_code == 400


# -- the fake's control API and command line -----------------------------------------------------


async def _cli(places: FakePlaces, capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    # The CLI is a synchronous httpx client: run it off the loop the fake serves on.
    await asyncio.to_thread(main, ["--url", places.base_url, *argv])
    printed: dict[str, Any] = json.loads(capsys.readouterr().out)
    return printed


async def test_the_cli_scripts_a_running_fake(
    places: FakePlaces, geocoder: PlacesGeocoder, capsys: pytest.CaptureFixture[str]
) -> None:
    added = await _cli(
        places, capsys, "add-place", "Mueller", "--lat", "30.2988", "--lng", "-97.7058", "--alias", "mueller lake"
    )
    failing = await _cli(places, capsys, "fail-next", "--times", "1", "--status", "503")

    with pytest.raises(GeocoderUnavailable):
        await geocoder.locate("mueller")
    found = await geocoder.locate("Mueller Lake Park")
    state = await _cli(places, capsys, "state")

    assert added["name"] == "Mueller"
    assert added["aliases"] == ["mueller lake"]
    assert failing["fail_next"] == {"times": 1, "status": 503}
    assert found == Place(added["place_id"], "Mueller", "", 30.2988, -97.7058)
    assert state["fail_next"]["times"] == 0
    assert state["requests"] == 2
    assert [place["name"] for place in state["places"]][-1] == "Mueller"
    with pytest.raises(SystemExit):
        await asyncio.to_thread(main, ["--url", places.base_url, "fail-next", "--status", "200"])
    assert "error" in json.loads(capsys.readouterr().out)


async def test_the_control_api_lists_and_adds_places(places: FakePlaces) -> None:
    async with httpx.AsyncClient(base_url=places.base_url) as client:
        added = await client.post("/_fake/places", json={"name": "Barton Springs", "lat": 30.264, "lng": -97.771})
        listed = await client.get("/_fake/places")
        missing_lat = await client.post("/_fake/places", json={"name": "Nowhere"})
        unknown = await client.get("/_fake/nothing")

    assert added.status_code == 200
    assert listed.json()["places"][-1] == added.json()
    assert missing_lat.status_code == 400
    assert unknown.status_code == 404
    assert places.requests == []  # control calls are not Places requests


async def test_serve_demo_runs_the_fake_as_a_process() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fakes.places",
        "serve",
        "--port",
        "0",
        "--api-key",
        "AIza-make-run",
        "--demo",
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=20)
        announced = json.loads(line)
        assert announced["api_key"] == "AIza-make-run"
        assert announced["places"] == 4
        async with PlacesGeocoder(announced["api_key"], base_url=announced["url"]) as geocoder:
            airport = await geocoder.locate("Austin-Bergstrom Airport", near=DOWNTOWN)
            domain = await geocoder.locate("the domain")
    finally:
        process.terminate()
        await process.wait()

    assert airport is not None
    assert (airport.lat, airport.lng) == (30.1975, -97.6664)
    assert domain is not None
    assert (domain.lat, domain.lng) == (30.4021, -97.7253)
