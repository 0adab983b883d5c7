"""Business listings for the merchant acquisition funnel: Google Places API (New) over httpx.

`search(text, near)` is Text Search (POST /v1/places:searchText) for the businesses a merchant may be;
`listing(place_id)` is Place Details (GET /v1/places/{id}) with what a store page shows — rating, photos (each
resolved to a servable URL through GET /v1/{photo}/media?skipHttpRedirect=true), opening hours, business
status, type, time zone, phone and website. Nothing above this module knows Google's JSON or status codes:

    timeouts, connection errors, 408, 429, 5xx, unreadable answers → PlacesUnavailable (try again later)
    404                                                           → PlaceNotFound
    other 4xx (a bad or restricted key, a refused request)        → PlacesError
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

import httpx

SEARCH_FIELDS: Final = "places.id,places.displayName,places.formattedAddress,places.location,places.primaryType"
LISTING_FIELDS: Final = (
    "id,displayName,formattedAddress,location,rating,userRatingCount,businessStatus,photos,regularOpeningHours,"
    "primaryType,timeZone,nationalPhoneNumber,websiteUri"
)
SEARCH_RADIUS_M: Final = 50_000.0
PAGE_SIZE: Final = 10
# Photos a store page shows; each costs one media call.
MAX_PHOTOS: Final = 3
PHOTO_WIDTH_PX: Final = 800


class PlacesError(Exception):
    """Google refused the request (a bad key, an invalid request): retrying will not help."""

    retryable = False


class PlacesUnavailable(PlacesError):
    """Google did not answer usably now; the same call may work a moment later."""

    retryable = True


class PlaceNotFound(PlacesError):
    """No place with that id."""


@dataclasses.dataclass(frozen=True, slots=True)
class Business:
    """A search result: enough to pick one's own business from a list."""

    place_id: str
    name: str
    address: str
    lat: float
    lng: float
    category: str


@dataclasses.dataclass(frozen=True, slots=True)
class Period:
    """An opening interval: ISO day (Monday = 1) and minutes after local midnight; close < open = after midnight."""

    day_of_week: int
    open_minute: int
    close_minute: int


@dataclasses.dataclass(frozen=True, slots=True)
class Listing:
    """Place Details of one business."""

    business: Business
    rating: float | None
    rating_count: int
    business_status: str  # OPERATIONAL, CLOSED_TEMPORARILY, CLOSED_PERMANENTLY, or "" when Google does not say
    photo_urls: tuple[str, ...]
    periods: tuple[Period, ...]
    time_zone: str  # IANA, "" when not given
    phone: str
    website: str


class PlacesDirectory:
    def __init__(self, base_url: str, api_key: str, *, timeout_s: float, client: httpx.AsyncClient | None = None):
        self._key = api_key
        self._client = client or httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def search(self, text: str, near: tuple[float, float] | None) -> list[Business]:
        body: dict[str, Any] = {"textQuery": text, "pageSize": PAGE_SIZE}
        if near is not None:
            body["locationBias"] = {
                "circle": {"center": {"latitude": near[0], "longitude": near[1]}, "radius": SEARCH_RADIUS_M}
            }
        answer = await self._send("POST", "/v1/places:searchText", SEARCH_FIELDS, json=body)
        return [_business(place) for place in answer.get("places", []) if isinstance(place, dict)]

    async def listing(self, place_id: str) -> Listing:
        place = await self._send("GET", f"/v1/places/{place_id}", LISTING_FIELDS)
        photos = [p["name"] for p in place.get("photos", []) if isinstance(p, dict) and isinstance(p.get("name"), str)]
        urls = [await self._photo_url(name) for name in photos[:MAX_PHOTOS]]
        rating = place.get("rating")
        return Listing(
            business=_business(place),
            rating=float(rating) if isinstance(rating, int | float) else None,
            rating_count=int(place.get("userRatingCount", 0)),
            business_status=str(place.get("businessStatus", "")),
            photo_urls=tuple(urls),
            periods=tuple(_periods(place.get("regularOpeningHours", {}))),
            time_zone=str(place.get("timeZone", {}).get("id", "")),
            phone=str(place.get("nationalPhoneNumber", "")),
            website=str(place.get("websiteUri", "")),
        )

    async def _photo_url(self, photo_name: str) -> str:
        answer = await self._send(
            "GET", f"/v1/{photo_name}/media", None, params={"maxWidthPx": PHOTO_WIDTH_PX, "skipHttpRedirect": "true"}
        )
        return str(answer.get("photoUri", ""))

    async def _send(self, method: str, path: str, fields: str | None, **kwargs: Any) -> dict[str, Any]:
        headers = {"X-Goog-Api-Key": self._key}
        if fields is not None:
            headers["X-Goog-FieldMask"] = fields
        try:
            reply = await self._client.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise PlacesUnavailable(f"Places did not answer: {exc!r}") from exc
        if reply.status_code == 404:
            raise PlaceNotFound(reply.text[:200])
        if reply.status_code in (408, 429) or reply.status_code >= 500:
            raise PlacesUnavailable(f"Places answered {reply.status_code}")
        if reply.status_code >= 400:
            raise PlacesError(f"Places refused the request: {reply.status_code} {reply.text[:200]}")
        try:
            answer = reply.json()
        except ValueError as exc:
            raise PlacesUnavailable("Places answered something that is not JSON") from exc
        if not isinstance(answer, dict):
            raise PlacesUnavailable("Places answered JSON that is not an object")
        return answer


def _business(place: dict[str, Any]) -> Business:
    location = place.get("location", {})
    try:
        return Business(
            place_id=str(place.get("id", "")),
            name=str(place.get("displayName", {}).get("text", "")),
            address=str(place.get("formattedAddress", "")),
            lat=float(location.get("latitude", 0.0)),
            lng=float(location.get("longitude", 0.0)),
            category=str(place.get("primaryType", "")),
        )
    except (AttributeError, TypeError, ValueError) as exc:
        raise PlacesUnavailable(f"unreadable place: {exc!r}") from exc


def _periods(hours: Any) -> list[Period]:
    """Google's periods ({open, close} of {day 0 = Sunday, hour, minute}) as ISO-day intervals; a period without
    a close (open around the clock) is the whole day."""
    periods: list[Period] = []
    for period in hours.get("periods", []) if isinstance(hours, dict) else []:
        opens, closes = period.get("open", {}), period.get("close")
        day = int(opens.get("day", 0))
        open_minute = int(opens.get("hour", 0)) * 60 + int(opens.get("minute", 0))
        close_minute = open_minute if closes is None else int(closes.get("hour", 0)) * 60 + int(closes.get("minute", 0))
        periods.append(Period(day_of_week=7 if day == 0 else day, open_minute=open_minute, close_minute=close_minute))
    return periods
