"""A local Google Places API (New) that speaks Text Search's wire format over real HTTP on 127.0.0.1.

Tests point the production geocoder (services/sessions/adapters/places.py, httpx underneath) at `base_url` with
`api_key`, so the request JSON, the X-Goog-Api-Key and X-Goog-FieldMask headers, Google's answers and its error
JSON are the real ones end to end. Built on asyncio.start_server and fakes/http1.py.

    POST /v1/places:searchText   {"textQuery", "pageSize"?, "regionCode"?, "locationBias"?: {"circle": {"center":
                                 {"latitude", "longitude"}, "radius"}}} → {"places": [...]}, or {} when nothing
                                 matches (Google leaves the empty list out)
    GET  /v1/places/{id}         Place Details: the place's fields the mask names (paths without `places.`);
                                 404 NOT_FOUND for an unknown id
    GET  /v1/places/{id}/photos/{ref}/media?maxWidthPx=N&skipHttpRedirect=true
                                 → {"name", "photoUri"} (without skipHttpRedirect Google redirects; this fake
                                 refuses that form with 400, the merchants service never asks for it)

Beyond id, name and position a place may carry what a business listing shows (`add_place(..., rating=4.6,
user_rating_count=120, business_status="OPERATIONAL", photo_uris=(...), periods=(...), primary_type="cafe",
time_zone="America/Chicago", phone=..., website=...)`), printed as Google prints them: `rating`,
`userRatingCount`, `businessStatus`, `photos[].name`, `regularOpeningHours.periods[]` ({open, close} of {day
(0 = Sunday), hour, minute}), `primaryType`, `timeZone.id`, `nationalPhoneNumber`, `websiteUri`.

As Google does: a missing or wrong key is 403 PERMISSION_DENIED; a missing field mask, a body that is not JSON, a
blank textQuery, a negative pageSize or a bias circle outside 0 to 50 000 m is 400 INVALID_ARGUMENT; pageSize 0
means 20 and more than 20 is capped at 20; each place carries only the fields the mask asks for (`places.*` or
`*` for all); errors are `{"error": {"code", "message", "status"}}`.

Places are scripted (`add_place(name, lat, lng, address, aliases)`, or `seed_demo` for a few in Austin). A query
matches a place when, ignoring case and repeated spaces, it equals or contains the place's name or one of its
aliases, as whole words; an exact match comes first, then the most specific (longest matched text), then, with
a location bias, the nearest the circle's centre; ties in the order added.
`fail_next(times, status)` answers the next searches with a Google error; `response_delay` holds every answer
back (real seconds) to drive client timeouts. Every search request is recorded in `requests`.

Control API (JSON, no key) under /_fake/: GET state, GET and POST places, POST fail_next — used by the CLI:
`python -m fakes.places serve --port N [--api-key K] [--demo]` prints one JSON line {"url", "api_key", "places"};
`python -m fakes.places --url URL state | add-place NAME --lat --lng [--address] [--alias …] |
fail-next [--times] [--status]` script a running one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import re
import secrets
import string
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

import httpx

from fakes.http1 import MalformedRequest, Request, read_request, reason_phrase

SEARCH_TEXT_PATH: Final = "/v1/places:searchText"
DEFAULT_PAGE_SIZE: Final = 20  # pageSize 0 or absent; also the most one page holds
MAX_BIAS_RADIUS_M: Final = 50_000.0

# Google's canonical status for an HTTP status it answers with.
STATUS_NAMES: Final[Mapping[int, str]] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# Fields of a Place this fake can give; a mask naming another is refused, as Google refuses unknown fields.
PLACE_FIELDS: Final = frozenset(
    {
        "id",
        "name",
        "displayName",
        "formattedAddress",
        "location",
        "rating",
        "userRatingCount",
        "businessStatus",
        "photos",
        "regularOpeningHours",
        "primaryType",
        "timeZone",
        "nationalPhoneNumber",
        "websiteUri",
    }
)
PLACES_PREFIX: Final = "/v1/places/"

_MAX_BODY_BYTES: Final = 64 * 1024
_ID_ALPHABET: Final = string.ascii_letters + string.digits + "-_"

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class FakePlace:
    """A place the fake knows; `aliases` are further texts that find it."""

    place_id: str
    name: str
    lat: float
    lng: float
    address: str = ""
    aliases: tuple[str, ...] = ()
    rating: float | None = None
    user_rating_count: int = 0
    business_status: str = ""
    photo_uris: tuple[str, ...] = ()
    # ((open day 0-6 with 0 = Sunday, open "HH:MM"), (close day, close "HH:MM")), as Google counts days.
    periods: tuple[tuple[tuple[int, str], tuple[int, str]], ...] = ()
    primary_type: str = ""
    time_zone: str = ""
    phone: str = ""
    website: str = ""

    def snapshot(self) -> JsonObject:
        return {
            "place_id": self.place_id,
            "name": self.name,
            "lat": self.lat,
            "lng": self.lng,
            "address": self.address,
            "aliases": list(self.aliases),
            "rating": self.rating,
            "business_status": self.business_status,
            "photo_uris": list(self.photo_uris),
        }

    def photo_name(self, index: int) -> str:
        return f"places/{self.place_id}/photos/photo{index}"

    def resource(self) -> JsonObject:
        """The place as Text Search returns it, every field this fake knows (proto3 JSON: empty ones left out)."""
        place: JsonObject = {
            "name": f"places/{self.place_id}",
            "id": self.place_id,
            "displayName": {"text": self.name, "languageCode": "en"},
            "location": {"latitude": self.lat, "longitude": self.lng},
        }
        if self.address:
            place["formattedAddress"] = self.address
        if self.rating is not None:
            place["rating"] = self.rating
        if self.user_rating_count:
            place["userRatingCount"] = self.user_rating_count
        if self.business_status:
            place["businessStatus"] = self.business_status
        if self.photo_uris:
            place["photos"] = [
                {"name": self.photo_name(i), "widthPx": 1600, "heightPx": 1200} for i in range(len(self.photo_uris))
            ]
        if self.periods:
            place["regularOpeningHours"] = {
                "periods": [{"open": _point(opens), "close": _point(closes)} for opens, closes in self.periods]
            }
        if self.primary_type:
            place["primaryType"] = self.primary_type
        if self.time_zone:
            place["timeZone"] = {"id": self.time_zone}
        if self.phone:
            place["nationalPhoneNumber"] = self.phone
        if self.website:
            place["websiteUri"] = self.website
        return place


def _point(point: tuple[int, str]) -> JsonObject:
    day, clock = point
    hour, minute = clock.split(":")
    return {"day": day, "hour": int(hour), "minute": int(minute)}


@dataclass(frozen=True)
class ReceivedRequest:
    """One Places API request as it arrived, for tests that assert on the wire format."""

    method: str
    path: str
    headers: Mapping[str, str]  # names lower-cased
    body: Any  # the decoded JSON body; None when absent or not JSON


@dataclass(frozen=True)
class _Response:
    status: int
    body: Any
    headers: tuple[tuple[str, str], ...] = ()


class _Refused(Exception):
    def __init__(self, response: _Response) -> None:
        super().__init__(response.body)
        self.response = response


def google_error(status: int, message: str) -> _Response:
    """Google's error answer: `{"error": {"code", "message", "status"}}`."""
    return _Response(
        status, {"error": {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}}
    )


def _invalid(message: str) -> _Refused:
    return _Refused(google_error(400, message))


def normalize(text: str) -> str:
    """Lower case, runs of whitespace as one space, no space at the ends: how the fake compares texts."""
    return re.sub(r"\s+", " ", text).strip().lower()


def new_place_id() -> str:
    """Looks like Google's: "ChIJ" and 23 URL-safe characters."""
    return "ChIJ" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(23))


class FakePlaces:
    """Async context manager serving a fake Places API (New) Text Search on an ephemeral loopback port.

    Point the client at `base_url` with `api_key`. Knobs: `add_place`, `fail_next(times, status)`,
    `response_delay`. Reads: `places`, `requests`, `searches` (the decoded request bodies).
    """

    def __init__(self, *, api_key: str | None = None, port: int = 0) -> None:
        self.api_key = api_key or "AIza" + secrets.token_urlsafe(26)
        self.response_delay = 0.0
        self.requests: list[ReceivedRequest] = []
        self._port = port
        self._places: list[FakePlace] = []
        self._failures_left = 0
        self._failure_status = 503
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve_connection, "127.0.0.1", self._port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        # Python 3.11's wait_closed does not wait for open connections: close them so idle keep-alive handlers
        # finish, and cancel one still sleeping in `response_delay`, so no task outlives the fake.
        for writer in list(self._connections.values()):
            writer.transport.abort()
        if self._connections:
            _, pending = await asyncio.wait(list(self._connections), timeout=1.0)
            for connection in pending:
                connection.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await server.wait_closed()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakePlaces is not running; use it as `async with`")
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    # -- the world ---------------------------------------------------------------------------

    def add_place(
        self,
        name: str,
        lat: float,
        lng: float,
        address: str = "",
        aliases: Sequence[str] = (),
        *,
        place_id: str | None = None,
        **listing: Any,
    ) -> FakePlace:
        """A place searches can find by `name` or any of `aliases`."""
        if not normalize(name):
            raise ValueError("a place needs a name")
        lat, lng = float(lat), float(lng)
        if not (math.isfinite(lat) and math.isfinite(lng) and -90 <= lat <= 90 and -180 <= lng <= 180):
            raise ValueError(f"not a position: {lat}, {lng}")
        if isinstance(aliases, str):
            raise TypeError("aliases is a sequence of texts, not one text")
        place = FakePlace(
            place_id=place_id or new_place_id(),
            name=name,
            lat=lat,
            lng=lng,
            address=address,
            aliases=tuple(alias for alias in aliases if normalize(alias)),
            **listing,
        )
        self._places.append(place)
        return place

    def update_place(self, place_id: str, **changes: Any) -> FakePlace:
        """Google's listing changes (a new rating, other hours): the place with `changes` applied."""
        for index, place in enumerate(self._places):
            if place.place_id == place_id:
                self._places[index] = dataclasses.replace(place, **changes)
                return self._places[index]
        raise KeyError(place_id)

    @property
    def places(self) -> list[FakePlace]:
        return list(self._places)

    def fail_next(self, times: int = 1, status: int = 503) -> None:
        """Answer the next `times` searches with Google's error JSON for `status` (before checking anything)."""
        if times < 0 or not 400 <= status <= 599:
            raise ValueError("fail_next needs times >= 0 and an error status")
        self._failures_left = times
        self._failure_status = status

    @property
    def searches(self) -> list[Any]:
        """The decoded JSON bodies of every search request, oldest first."""
        return [request.body for request in self.requests if request.path == SEARCH_TEXT_PATH]

    def state(self) -> JsonObject:
        return {
            "url": self.base_url,
            "api_key": self.api_key,
            "places": [place.snapshot() for place in self._places],
            "fail_next": {"times": self._failures_left, "status": self._failure_status},
            "requests": len(self.requests),
        }

    # -- HTTP --------------------------------------------------------------------------------

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections[task] = writer
        try:
            # Keep-alive: the geocoder's long-lived client reuses connections across searches.
            while True:
                try:
                    request = await read_request(reader, _MAX_BODY_BYTES)
                except MalformedRequest as exc:
                    writer.write(_encode(google_error(400, f"malformed request: {exc}"), keep_alive=False))
                    await writer.drain()
                    return
                if request is None:
                    return
                keep_alive = request.version == "HTTP/1.1" and request.headers.get("connection", "").lower() != "close"
                if self.response_delay > 0:
                    await asyncio.sleep(self.response_delay)
                try:
                    response = self._handle(request)
                except Exception as exc:  # a bug in the fake must show, not hang the client
                    response = google_error(500, f"fake places bug: {exc!r}")
                writer.write(_encode(response, keep_alive=keep_alive))
                await writer.drain()
                if not keep_alive:
                    return
        except ConnectionError:
            return
        finally:
            if task is not None:
                self._connections.pop(task, None)
            writer.close()

    def _handle(self, request: Request) -> _Response:
        parts = [part for part in request.path.split("/") if part]
        if parts[:1] == ["_fake"]:
            return self._control(request, parts[1:])
        self.requests.append(ReceivedRequest(request.method, request.path, request.headers, _decoded(request.body)))
        if request.method == "GET" and request.path.startswith(PLACES_PREFIX):
            try:
                return self._place_get(request, request.path.removeprefix(PLACES_PREFIX).split("/"), request.query)
            except _Refused as refused:
                return refused.response
        if request.path != SEARCH_TEXT_PATH:
            return google_error(404, f"The requested URL {request.path} was not found on this server.")
        if request.method != "POST":
            return google_error(404, f"The requested URL {request.path} was not found for {request.method}.")
        try:
            return self._search_text(request)
        except _Refused as refused:
            return refused.response

    def _refusal(self, request: Request) -> _Response | None:
        """A scripted failure or a key Google would refuse; None when the request may be answered."""
        if self._failures_left > 0:
            self._failures_left -= 1
            status = self._failure_status
            return google_error(status, f"Scripted failure: HTTP {status}.")
        key = request.headers.get("x-goog-api-key", "")
        if not key:
            return google_error(403, "The request is missing a valid API key.")
        if not secrets.compare_digest(key.encode(), self.api_key.encode()):
            return google_error(403, "API key not valid. Please pass a valid API key.")
        return None

    def _place_get(self, request: Request, parts: list[str], query: str) -> _Response:
        """Place Details (`places/{id}`) or a photo's media (`places/{id}/photos/{ref}/media`)."""
        refused = self._refusal(request)
        if refused is not None:
            return refused
        place = next((p for p in self._places if p.place_id == parts[0]), None)
        if len(parts) == 1:
            fields = _field_mask(request.headers.get("x-goog-fieldmask", ""), prefix="")
            if place is None:
                return google_error(404, f"Place '{parts[0]}' not found.")
            return _Response(200, _masked(place.resource(), fields))
        if len(parts) == 4 and parts[1] == "photos" and parts[3] == "media":
            arguments = dict(pair.partition("=")[::2] for pair in query.split("&") if pair)
            if arguments.get("skipHttpRedirect") != "true" or not arguments.get("maxWidthPx", "").isdigit():
                raise _invalid("This fake answers photo media only with maxWidthPx and skipHttpRedirect=true.")
            name = f"places/{parts[0]}/photos/{parts[2]}"
            index = (
                next((i for i in range(len(place.photo_uris)) if place.photo_name(i) == name), None) if place else None
            )
            if place is None or index is None:
                return google_error(404, f"Photo '{name}' not found.")
            return _Response(200, {"name": f"{name}/media", "photoUri": place.photo_uris[index]})
        return google_error(404, f"The requested URL {request.path} was not found on this server.")

    def _search_text(self, request: Request) -> _Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        fields = _field_mask(request.headers.get("x-goog-fieldmask", ""))
        body = _decoded(request.body)
        if not isinstance(body, dict):
            raise _invalid("Invalid JSON payload received: the body is not a JSON object.")
        text = body.get("textQuery")
        if not isinstance(text, str) or not normalize(text):
            raise _invalid("textQuery is required and must not be empty.")
        page_size = _page_size(body.get("pageSize"))
        center = _bias_center(body.get("locationBias"))
        query = normalize(text)
        ranked = sorted(
            ((rank, place) for place in self._places if (rank := _rank(query, place, center)) is not None),
            key=lambda pair: pair[0],
        )
        if not ranked:
            return _Response(200, {})
        return _Response(200, {"places": [_masked(place.resource(), fields) for _, place in ranked[:page_size]]})

    # -- control -----------------------------------------------------------------------------

    def _control(self, request: Request, parts: list[str]) -> _Response:
        try:
            args: object = json.loads(request.body) if request.body else {}
        except ValueError:
            return _Response(400, {"error": "body is not JSON"})
        if not isinstance(args, dict):
            return _Response(400, {"error": "body is not a JSON object"})
        route = (request.method, parts)
        try:
            if route == ("GET", ["state"]):
                return _Response(200, self.state())
            if route == ("GET", ["places"]):
                return _Response(200, {"places": [place.snapshot() for place in self._places]})
            if route == ("POST", ["places"]):
                place = self.add_place(
                    str(args["name"]),
                    float(args["lat"]),
                    float(args["lng"]),
                    address=str(args.get("address", "")),
                    aliases=[str(alias) for alias in args.get("aliases", [])],
                    place_id=str(args["place_id"]) if args.get("place_id") else None,
                )
                return _Response(200, place.snapshot())
            if route == ("POST", ["fail_next"]):
                self.fail_next(int(args.get("times", 1)), int(args.get("status", 503)))
                return _Response(200, self.state())
        except (KeyError, TypeError, ValueError) as exc:
            return _Response(400, {"error": repr(exc)})
        return _Response(404, {"error": "no such control route", "routes": _CONTROL_ROUTES})


_CONTROL_ROUTES: Final = ["GET /_fake/state", "GET /_fake/places", "POST /_fake/places", "POST /_fake/fail_next"]


def seed_demo(fake: FakePlaces) -> list[FakePlace]:
    """A few places in Austin, where the demo chargers are."""
    return [
        fake.add_place("Austin, TX", 30.2672, -97.7431, "Austin, TX, USA", aliases=("austin", "austin texas")),
        fake.add_place("South Congress", 30.2500, -97.7500, "S Congress Ave, Austin, TX, USA", aliases=("soco",)),
        fake.add_place("The Domain", 30.4021, -97.7253, "11410 Century Oaks Terrace, Austin, TX 78758, USA"),
        fake.add_place(
            "Austin-Bergstrom Airport",
            30.1975,
            -97.6664,
            "3600 Presidential Blvd, Austin, TX 78719, USA",
            aliases=("aus", "austin airport", "austin bergstrom"),
        ),
    ]


# -- request checks ----------------------------------------------------------------------------


def _decoded(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _field_mask(header: str, prefix: str = "places") -> frozenset[str] | None:
    """The Place fields a field mask asks for; None for every field (`*` or `places`). Text Search names them
    under `places.`, Place Details bare (prefix "")."""
    paths = [path.strip() for path in header.split(",") if path.strip()]
    if not paths:
        raise _invalid(
            "FieldMask is a required parameter: send the X-Goog-FieldMask header or the $fields or fields URL "
            "parameter."
        )
    fields: set[str] = set()
    for path in paths:
        if path in ("*", "places", "places.*"):
            return None
        if not prefix:
            head, rest = "places", path
        else:
            head, _, rest = path.partition(".")
        if head == "nextPageToken" and not rest:
            continue
        place_field = rest.partition(".")[0]
        if head != "places" or place_field not in PLACE_FIELDS:
            raise _invalid(f"Error expanding 'fields' parameter. Cannot find matching fields for path '{path}'.")
        fields.add(place_field)
    return frozenset(fields)


def _masked(place: JsonObject, fields: frozenset[str] | None) -> JsonObject:
    if fields is None:
        return place
    return {name: value for name, value in place.items() if name in fields}


def _page_size(value: object) -> int:
    if value is None:
        return DEFAULT_PAGE_SIZE
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"Invalid value at 'page_size' (TYPE_INT32), {json.dumps(value)}")
    if value < 0:
        raise _invalid("page_size must not be negative.")
    return min(value or DEFAULT_PAGE_SIZE, DEFAULT_PAGE_SIZE)


def _bias_center(value: object) -> tuple[float, float] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"circle", "rectangle"} or len(value) != 1:
        raise _invalid("location_bias must set exactly one of circle or rectangle.")
    circle = value.get("circle")
    if not isinstance(circle, dict):
        raise _invalid("This fake only supports a location_bias circle.")
    center = circle.get("center")
    radius = circle.get("radius", 0.0)
    if not isinstance(center, dict):
        raise _invalid("location_bias.circle.center is required.")
    lat, lng = center.get("latitude", 0.0), center.get("longitude", 0.0)
    numbers = (lat, lng, radius)
    if any(isinstance(number, bool) or not isinstance(number, int | float) for number in numbers):
        raise _invalid("location_bias.circle needs numeric latitude, longitude and radius.")
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        raise _invalid("location_bias.circle.center is not a valid position.")
    if not 0 <= radius <= MAX_BIAS_RADIUS_M:
        raise _invalid("location_bias.circle.radius must be between 0.0 and 50000.0, inclusive.")
    return float(lat), float(lng)


def _rank(query: str, place: FakePlace, center: tuple[float, float] | None) -> tuple[bool, int, float] | None:
    """How well `place` answers `query` (smaller is better), None when it does not match: a query equal to a name
    or alias first, then the place whose matched text is longest (the most specific), then the nearest to the
    bias centre. A name or alias matches as whole words: "aus" is inside "aus airport" but not "austin"."""
    found = [
        known
        for known in map(normalize, (place.name, *place.aliases))
        if re.search(rf"(?<!\w){re.escape(known)}(?!\w)", query)
    ]
    if not found:
        return None
    distance = _distance_m(center, (place.lat, place.lng)) if center is not None else 0.0
    return query not in found, -max(map(len, found)), distance


def _distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lng1, lat2, lng2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lng2 - lng1) / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(h))


def _encode(response: _Response, *, keep_alive: bool) -> bytes:
    body = json.dumps(response.body).encode()
    lines = [
        f"HTTP/1.1 {response.status} {reason_phrase(response.status)}",
        "Content-Type: application/json; charset=UTF-8",
        f"Content-Length: {len(body)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
        *(f"{name}: {value}" for name, value in response.headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# -- command line ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m fakes.places serve …` runs the fake; the other commands script a running one over its
    control API (`--url`, default $FAKE_PLACES_URL) and print its answer as JSON."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        _serve(args)
        return
    if not args.url:
        sys.exit("--url (or FAKE_PLACES_URL) is required")
    path, payload = _control_request(args)
    with httpx.Client(base_url=args.url, timeout=10.0) as client:
        response = client.get(path) if payload is None else client.post(path, json=payload)
    print(json.dumps(response.json(), indent=2))
    if response.status_code != 200:
        sys.exit(1)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fakes.places", description=main.__doc__)
    parser.add_argument("--url", default=os.environ.get("FAKE_PLACES_URL", ""))
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the fake Places API")
    serve.add_argument("--port", type=int, default=0, help="0: any free port (the URL is printed)")
    serve.add_argument("--api-key", help="the key to accept (default: a random one, printed)")
    serve.add_argument("--demo", action="store_true", help="start with a few places in Austin")

    commands.add_parser("state", help="the places, the scripted failures and the request count")
    add = commands.add_parser("add-place", help="a place searches can find")
    add.add_argument("name")
    add.add_argument("--lat", type=float, required=True)
    add.add_argument("--lng", type=float, required=True)
    add.add_argument("--address", default="")
    add.add_argument("--alias", dest="aliases", action="append", default=[])
    fail = commands.add_parser("fail-next", help="answer the next searches with an error")
    fail.add_argument("--times", type=int, default=1)
    fail.add_argument("--status", type=int, default=503)
    return parser


def _control_request(args: argparse.Namespace) -> tuple[str, JsonObject | None]:
    """The control-API call a CLI command stands for: (path, JSON body), body None for a GET."""
    if args.command == "add-place":
        return "/_fake/places", {
            "name": args.name,
            "lat": args.lat,
            "lng": args.lng,
            "address": args.address,
            "aliases": args.aliases,
        }
    if args.command == "fail-next":
        return "/_fake/fail_next", {"times": args.times, "status": args.status}
    return "/_fake/state", None


def _serve(args: argparse.Namespace) -> None:
    async def serve() -> None:
        fake = FakePlaces(api_key=args.api_key, port=args.port)
        if args.demo:
            seed_demo(fake)
        async with fake:
            announcement = {"url": fake.base_url, "api_key": fake.api_key, "places": len(fake.places)}
            print(json.dumps(announcement), flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
