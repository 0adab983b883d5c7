"""Geocoding for the charger search box: Google Places API (New) Text Search.

`PlacesGeocoder.locate("south congress", near=(lat, lng))` asks POST /v1/places:searchText for the single best
match (pageSize 1) of the driver's text, biased to a 50 km circle around the map when the caller knows where the
driver is looking, and answers a `Place` (id, display name, formatted address, position) or None when Google has
no place for the text (Google answers `{}` then, not an empty list).

Text Search (New) has no default fields: the X-Goog-FieldMask header names the four we read, which also keeps
the request in the cheapest billing tier that returns a position. The key travels in X-Goog-Api-Key.

One long-lived httpx.AsyncClient per geocoder (closed by `aclose` / `async with`). Every httpx exception and
every error answer becomes one of two typed errors in `_send`/`_error`, so nothing above this module knows
Google's status codes:

    timeouts, connection errors, 408, 429, 5xx, unreadable answers → GeocoderUnavailable (try again later)
    400, 401, 403, 404, … (a bad or restricted key, a request Google refuses) → GeocoderError

Google's error JSON (`{"error": {"code", "message", "status"}}`) is carried on the exception as `http_status`,
`status` (e.g. "PERMISSION_DENIED") and `detail` (Google's message).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from types import TracebackType
from typing import Any, Final, Self

import httpx

_log = logging.getLogger(__name__)

DEFAULT_BASE_URL: Final = "https://places.googleapis.com"
SEARCH_TEXT_PATH: Final = "/v1/places:searchText"
# Exactly what `Place` is made of; Google bills by the most expensive field asked for.
FIELD_MASK: Final = "places.id,places.displayName,places.formattedAddress,places.location"
# The largest location-bias circle Text Search accepts: the area a driver's map roughly shows and beyond.
BIAS_RADIUS_M: Final = 50_000.0

_TRANSIENT_STATUSES: Final = frozenset({408, 429})


class GeocoderError(Exception):
    """The geocoder could not answer. Raised as is when Google refuses the request (a bad or restricted key, a
    request it finds invalid): retrying the same call will not help.

    `http_status` is the HTTP status (None when no answer came back); `status` and `detail` are Google's
    canonical status ("PERMISSION_DENIED", "INVALID_ARGUMENT", …) and message from its error JSON, when given.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        status: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.status = status
        self.detail = detail


class GeocoderUnavailable(GeocoderError):
    """Google did not answer in time, could not be reached, was overloaded (429) or failed (5xx), or answered
    something unreadable: the same call may well work a moment later."""

    retryable = True


@dataclasses.dataclass(frozen=True, slots=True)
class Place:
    """The best match for a search text."""

    place_id: str  # Google's place id ("ChIJ…"); "" if the answer had none
    name: str  # display name, e.g. "South Congress"
    address: str  # formatted address; "" when Google gives none
    lat: float
    lng: float


class PlacesGeocoder:
    """Text → Place over Google Places API (New) Text Search. Use as `async with`, or call `aclose` once."""

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 3.0,
        region_code: str = "US",
    ) -> None:
        if not api_key:
            raise ValueError("a Google Places API key is required")
        self._url = base_url.rstrip("/") + SEARCH_TEXT_PATH
        self._region_code = region_code
        # A driver is waiting on the search box: give up quickly and let the search answer without a location.
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
            headers={
                "Accept": "application/json",
                "X-Goog-Api-Key": api_key,
                "X-Goog-FieldMask": FIELD_MASK,
            },
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release connections; call once at shutdown."""
        await self._http.aclose()

    async def locate(self, text: str, *, near: tuple[float, float] | None = None) -> Place | None:
        """The place Google finds first for `text`, preferring ones within 50 km of `near` (lat, lng) when
        given; None when it finds none. Raises ValueError for blank text or an impossible `near`, else only
        GeocoderError (GeocoderUnavailable when retrying may help)."""
        query = text.strip()
        if not query:
            raise ValueError("the search text is blank")
        body: dict[str, Any] = {"textQuery": query, "pageSize": 1}
        if self._region_code:
            body["regionCode"] = self._region_code
        if near is not None:
            lat, lng = near
            if not (math.isfinite(lat) and math.isfinite(lng) and -90 <= lat <= 90 and -180 <= lng <= 180):
                raise ValueError(f"near is not a position: {near!r}")
            body["locationBias"] = {
                "circle": {"center": {"latitude": lat, "longitude": lng}, "radius": BIAS_RADIUS_M},
            }
        response = await self._send(body)
        answer = _json(response)
        if response.status_code != 200:
            raise self._error(response, answer)
        if not isinstance(answer, dict):
            raise GeocoderUnavailable("Google Places text search: the answer is not a JSON object", http_status=200)
        places = answer.get("places", [])
        if not isinstance(places, list):
            raise GeocoderUnavailable("Google Places text search: `places` is not a list", http_status=200)
        if not places:
            return None
        return _place(places[0])

    # -- the boundary ------------------------------------------------------------------------

    async def _send(self, body: dict[str, Any]) -> httpx.Response:
        try:
            return await self._http.post(self._url, json=body)
        except httpx.TimeoutException as exc:
            raise GeocoderUnavailable("Google Places text search timed out") from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise GeocoderUnavailable(f"Google Places text search unreachable: {exc!r}") from exc
        except httpx.HTTPError as exc:
            # Bad URL, proxy or protocol configuration: repeats identically.
            raise GeocoderError(f"Google Places text search could not be sent: {exc!r}") from exc

    def _error(self, response: httpx.Response, answer: object) -> GeocoderError:
        http_status = response.status_code
        status, detail = _google_error(answer)
        message = f"Google Places text search: HTTP {http_status} {status or ''}".rstrip()
        if detail:
            message = f"{message}: {detail}"
        if http_status in _TRANSIENT_STATUSES or http_status >= 500:
            return GeocoderUnavailable(message, http_status=http_status, status=status, detail=detail)
        # Our configuration (the key, its restrictions, the API not enabled) or our request: say so loudly.
        _log.error("Google Places refused our request", extra={"http_status": http_status, "status": status})
        return GeocoderError(message, http_status=http_status, status=status, detail=detail)


# -- JSON → our types ------------------------------------------------------------------------------


def _place(item: object) -> Place:
    if not isinstance(item, dict):
        raise GeocoderUnavailable("Google Places text search: a place is not a JSON object", http_status=200)
    location = item.get("location")
    lat = _number(location.get("latitude")) if isinstance(location, dict) else None
    lng = _number(location.get("longitude")) if isinstance(location, dict) else None
    if lat is None or lng is None or not (-90 <= lat <= 90 and -180 <= lng <= 180):
        raise GeocoderUnavailable("Google Places text search: the place has no position", http_status=200)
    display_name = item.get("displayName")
    return Place(
        place_id=_text(item.get("id")),
        name=_text(display_name.get("text")) if isinstance(display_name, dict) else "",
        address=_text(item.get("formattedAddress")),
        lat=lat,
        lng=lng,
    )


def _google_error(answer: object) -> tuple[str | None, str | None]:
    """(status, message) of Google's `{"error": {"code", "message", "status"}}`; None for what is missing."""
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(error, dict):
        return None, None
    status = error.get("status")
    message = error.get("message")
    return (
        status if isinstance(status, str) and status else None,
        message if isinstance(message, str) and message else None,
    )


def _json(response: httpx.Response) -> object:
    try:
        decoded: object = response.json()
    except ValueError:
        return None
    return decoded


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
