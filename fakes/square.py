"""A local Square that speaks Square's wire format over real HTTP on 127.0.0.1.

Tests point the production merchants adapter (services/merchants/adapters/square.py, the official `squareup`
SDK underneath) at `base_url`, so OAuth, the JSON bodies the SDK writes, bearer tokens, the Square-Version
header, Square's error JSON and timeouts are the real ones end to end. The `make run` demo runs it as a
process (`python -m fakes.square serve --port N`, which prints its base URL) and scripts it from the
command line or the control API under /_fake/ (see `main`).

Covered (exactly what the adapter uses):
  GET  /oauth2/authorize   the seller's consent: 302 to the redirect URL with `code`, `response_type=code` and
                           `state`, or with `error=access_denied` when a test denies it (`deny_next_authorization`)
  POST /oauth2/token       grant_type authorization_code (application id and secret, one-time codes that live
                           5 minutes, the redirect URL of the authorize call) and refresh_token (the code flow:
                           a new access token, the same refresh token back)
  GET  /v2/locations       every location of the token's seller, inactive ones included, alphabetical by name
  POST /v2/orders/search   location_ids, query.filter.state_filter, query.filter.date_time_filter (one of
                           created_at / updated_at / closed_at, sorted by the same field as Square requires),
                           query.sort, limit (1 to 1000, default 500), cursor, return_entries
  GET  /v2/orders/{id}     one order of the token's seller

Errors are Square's JSON, `{"errors": [{"category", "code", "detail"[, "field"]}]}`: 401 for a missing, unknown,
expired (ACCESS_TOKEN_EXPIRED) or revoked (ACCESS_TOKEN_REVOKED) access token and for refused OAuth credentials
or codes, 403 INSUFFICIENT_SCOPES, 404 NOT_FOUND, 400 for bad requests, and scripted 5xx / 429.

Scripting from Python: `add_merchant`, `add_location`, `add_order`, `issue_code`, `approve_as`,
`deny_next_authorization`, `revoke`, `expire_access_tokens`, `fail_next(times, status)` (the next calls to the
Square API are answered with that error without being executed) and `delay_next(seconds, times)` (the next calls
are executed, then their answer waits: a client timeout after Square did the work). Reads: `requests`,
`requests_to(method, path)`, `merchant(id)`, `order(id)`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import hmac
import json
import os
import re
import secrets
import string
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

from fakes.http1 import MalformedRequest, Request, read_request, reason_phrase

# Echoed in Square-Version when a request carries none (the SDK always sends its own).
API_VERSION: Final = "2026-09-16"
ACCESS_TOKEN_TTL: Final = timedelta(days=30)
CODE_TTL: Final = timedelta(minutes=5)

# The permissions this fake knows; the adapter asks for the first three.
SCOPES: Final = frozenset(
    {"MERCHANT_PROFILE_READ", "ORDERS_READ", "PAYMENTS_READ", "ITEMS_READ", "CUSTOMERS_READ", "ORDERS_WRITE"}
)
DEFAULT_SCOPES: Final = ("MERCHANT_PROFILE_READ", "ORDERS_READ", "PAYMENTS_READ")

ORDER_STATES: Final = ("OPEN", "COMPLETED", "CANCELED", "DRAFT")
_CLOSED_STATES: Final = frozenset({"COMPLETED", "CANCELED"})
_TIME_FIELDS: Final[Mapping[str, str]] = {
    "created_at": "CREATED_AT",
    "updated_at": "UPDATED_AT",
    "closed_at": "CLOSED_AT",
}
MAX_SEARCH_LIMIT: Final = 1000
DEFAULT_SEARCH_LIMIT: Final = 500
MAX_SEARCH_LOCATIONS: Final = 10

_ALNUM_UPPER: Final = string.ascii_uppercase + string.digits
_ALNUM: Final = string.ascii_letters + string.digits
_VERSION: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MAX_BODY_BYTES: Final = 256 * 1024

JsonObject = dict[str, Any]


# -- the seller's world ----------------------------------------------------------------------------


@dataclasses.dataclass
class FakeLocation:
    id: str
    merchant_id: str
    name: str
    address_line_1: str
    locality: str
    region: str  # Square's administrative_district_level_1 (a US state)
    postal_code: str
    country: str
    lat: float | None
    lng: float | None
    timezone: str
    status: str  # "ACTIVE" or "INACTIVE"
    created_at: datetime

    def to_json(self) -> JsonObject:
        location: JsonObject = {
            "id": self.id,
            "name": self.name,
            "address": {
                "address_line_1": self.address_line_1,
                "locality": self.locality,
                "administrative_district_level_1": self.region,
                "postal_code": self.postal_code,
                "country": self.country,
            },
            "timezone": self.timezone,
            "capabilities": ["CREDIT_CARD_PROCESSING"],
            "status": self.status,
            "created_at": _rfc3339(self.created_at),
            "merchant_id": self.merchant_id,
            "country": self.country,
            "language_code": "en-US",
            "currency": "USD",
            "business_name": self.name,
            "type": "PHYSICAL",
            "mcc": "5814",
        }
        if self.lat is not None and self.lng is not None:
            location["coordinates"] = {"latitude": self.lat, "longitude": self.lng}
        return location


@dataclasses.dataclass
class FakeOrder:
    id: str
    merchant_id: str
    location_id: str
    total_cents: int
    state: str
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    currency: str = "USD"
    version: int = 1

    def time(self, field: str) -> datetime | None:
        value: datetime | None = getattr(self, field)
        return value

    def to_json(self) -> JsonObject:
        def money(amount: int) -> JsonObject:
            return {"amount": amount, "currency": self.currency}

        order: JsonObject = {
            "id": self.id,
            "location_id": self.location_id,
            "source": {"name": "Fake Square POS"},
            "line_items": [
                {
                    "uid": self.id[:22],
                    "name": "Counter sale",
                    "quantity": "1",
                    "base_price_money": money(self.total_cents),
                    "total_money": money(self.total_cents),
                }
            ],
            "created_at": _rfc3339(self.created_at),
            "updated_at": _rfc3339(self.updated_at),
            "state": self.state,
            "version": self.version,
            "total_money": money(self.total_cents),
            "total_tax_money": money(0),
            "total_discount_money": money(0),
            "total_tip_money": money(0),
            "total_service_charge_money": money(0),
            "net_amount_due_money": money(0 if self.state in _CLOSED_STATES else self.total_cents),
        }
        if self.closed_at is not None:
            order["closed_at"] = _rfc3339(self.closed_at)
        return order


@dataclasses.dataclass
class FakeMerchant:
    id: str
    business_name: str
    locations: dict[str, FakeLocation] = dataclasses.field(default_factory=dict)
    orders: dict[str, FakeOrder] = dataclasses.field(default_factory=dict)

    def snapshot(self) -> JsonObject:
        return {
            "id": self.id,
            "business_name": self.business_name,
            "locations": [location.to_json() for location in self.locations.values()],
            "orders": len(self.orders),
        }


@dataclasses.dataclass(frozen=True)
class ReceivedRequest:
    """One request as it arrived, for tests that assert on the wire format."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # names lower-cased
    json: object  # the decoded JSON body, None when there is none


@dataclasses.dataclass
class _Code:
    merchant_id: str
    scopes: frozenset[str]
    redirect_uri: str | None
    expires_at: datetime
    used: bool = False


@dataclasses.dataclass
class _Token:
    merchant_id: str
    scopes: frozenset[str]
    expires_at: datetime
    revoked: bool = False


@dataclasses.dataclass(frozen=True)
class _Response:
    status: int
    body: object = None  # JSON, or bytes sent as they are
    headers: tuple[tuple[str, str], ...] = ()


class _Refused(Exception):
    """A handler's Square error answer."""

    def __init__(self, response: _Response) -> None:
        super().__init__(response.body)
        self.response = response


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(moment: datetime) -> str:
    """Square's timestamps: UTC, milliseconds, a Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _new_id(length: int, alphabet: str = _ALNUM_UPPER, prefix: str = "") -> str:
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def _error(status: int, category: str, code: str, detail: str, *, field: str | None = None) -> _Response:
    error: JsonObject = {"category": category, "code": code, "detail": detail}
    if field is not None:
        error["field"] = field
    return _Response(status, {"errors": [error]})


def _bad_request(code: str, detail: str, *, field: str | None = None) -> _Refused:
    return _Refused(_error(400, "INVALID_REQUEST_ERROR", code, detail, field=field))


def _unauthorized(detail: str, code: str = "UNAUTHORIZED") -> _Refused:
    return _Refused(_error(401, "AUTHENTICATION_ERROR", code, detail))


# What a scripted failure answers, by status.
_FAILURES: Final[Mapping[int, tuple[str, str]]] = {
    429: ("RATE_LIMIT_ERROR", "RATE_LIMITED"),
    500: ("API_ERROR", "INTERNAL_SERVER_ERROR"),
    502: ("API_ERROR", "BAD_GATEWAY"),
    503: ("API_ERROR", "SERVICE_UNAVAILABLE"),
    504: ("API_ERROR", "GATEWAY_TIMEOUT"),
}


class FakeSquare:
    """Async context manager serving a fake Square on an ephemeral (or given) loopback port.

    Configure the adapter with `base_url`, `application_id` and `application_secret`. When `redirect_uri` is
    set it is the application's registered redirect URL: authorize calls naming another are refused, and those
    naming none go there.
    """

    def __init__(
        self,
        *,
        application_id: str | None = None,
        application_secret: str | None = None,
        redirect_uri: str | None = None,
        port: int = 0,
    ) -> None:
        self.application_id = application_id or _new_id(22, _ALNUM + "-_", "sq0idp-")
        self.application_secret = application_secret or _new_id(43, _ALNUM + "-_", "sq0csp-")
        self.redirect_uri = redirect_uri
        self.requests: list[ReceivedRequest] = []
        self._port = port
        self._merchants: dict[str, FakeMerchant] = {}
        self._locations: dict[str, FakeLocation] = {}
        self._orders: dict[str, FakeOrder] = {}
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        self._approver: str | None = None
        self._deny_next = False
        self._failures: list[int] = []
        self._delays: list[float] = []
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
        # Python 3.11's wait_closed does not wait for open connections: close them, and cancel a handler still
        # holding a delayed answer, so no task outlives the fake.
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
            raise RuntimeError("FakeSquare is not running; use it as `async with`")
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    # -- scripting -----------------------------------------------------------------------------

    def add_merchant(self, business_name: str = "Fake Coffee", *, merchant_id: str | None = None) -> FakeMerchant:
        """A Square seller; give it locations and orders, then a code (`issue_code` or the authorize page)."""
        merchant_id = merchant_id or _new_id(13, prefix="ML")
        if merchant_id in self._merchants:
            raise ValueError(f"merchant {merchant_id} exists")
        merchant = FakeMerchant(merchant_id, business_name)
        self._merchants[merchant_id] = merchant
        return merchant

    def add_location(
        self,
        merchant_id: str,
        name: str = "Main Street",
        *,
        location_id: str | None = None,
        address_line_1: str = "500 Congress Ave",
        locality: str = "Austin",
        region: str = "TX",
        postal_code: str = "78701",
        country: str = "US",
        lat: float | None = 30.2672,
        lng: float | None = -97.7431,
        timezone: str = "America/Chicago",
        status: str = "ACTIVE",
        created_at: datetime | None = None,
    ) -> FakeLocation:
        """A location of the seller; the first one created is Square's main location."""
        merchant = self._merchants[merchant_id]
        if status not in ("ACTIVE", "INACTIVE"):
            raise ValueError(f"a location is ACTIVE or INACTIVE, not {status!r}")
        location_id = location_id or _new_id(12, prefix="L")
        if location_id in self._locations:
            raise ValueError(f"location {location_id} exists")
        location = FakeLocation(
            id=location_id,
            merchant_id=merchant_id,
            name=name,
            address_line_1=address_line_1,
            locality=locality,
            region=region,
            postal_code=postal_code,
            country=country,
            lat=lat,
            lng=lng,
            timezone=timezone,
            status=status,
            created_at=_aware(created_at) if created_at is not None else _now(),
        )
        merchant.locations[location_id] = location
        self._locations[location_id] = location
        return location

    def add_order(
        self,
        location_id: str,
        total_cents: int,
        *,
        state: str = "COMPLETED",
        created_at: datetime | None = None,
        closed_at: datetime | None = None,
        currency: str = "USD",
        order_id: str | None = None,
    ) -> FakeOrder:
        """An order rung up at the location. COMPLETED and CANCELED orders are closed at `closed_at` (default:
        when created); `created_at` defaults to now."""
        location = self._locations[location_id]
        if state not in ORDER_STATES:
            raise ValueError(f"an order state is one of {ORDER_STATES}, not {state!r}")
        if total_cents < 0:
            raise ValueError("an order total is not negative")
        created = _aware(created_at) if created_at is not None else _now()
        closed: datetime | None = None
        if state in _CLOSED_STATES:
            closed = _aware(closed_at) if closed_at is not None else created
        elif closed_at is not None:
            raise ValueError(f"a {state} order is not closed")
        order_id = order_id or _new_id(27, _ALNUM)
        if order_id in self._orders:
            raise ValueError(f"order {order_id} exists")
        order = FakeOrder(
            id=order_id,
            merchant_id=location.merchant_id,
            location_id=location_id,
            total_cents=total_cents,
            state=state,
            created_at=created,
            updated_at=closed or created,
            closed_at=closed,
            currency=currency,
        )
        self._merchants[location.merchant_id].orders[order_id] = order
        self._orders[order_id] = order
        return order

    def issue_code(
        self, merchant_id: str, *, scopes: Sequence[str] = DEFAULT_SCOPES, redirect_uri: str | None = None
    ) -> str:
        """An authorization code as if the seller had just approved the application (one use, 5 minutes)."""
        if merchant_id not in self._merchants:
            raise KeyError(merchant_id)
        unknown = set(scopes) - SCOPES
        if unknown:
            raise ValueError(f"unknown scopes {sorted(unknown)}")
        code = _new_id(22, _ALNUM + "-_", "sq0cgp-")
        self._codes[code] = _Code(merchant_id, frozenset(scopes), redirect_uri, _now() + CODE_TTL)
        return code

    def approve_as(self, merchant_id: str) -> None:
        """The seller who approves at /oauth2/authorize (default: the only seller there is)."""
        if merchant_id not in self._merchants:
            raise KeyError(merchant_id)
        self._approver = merchant_id

    def deny_next_authorization(self) -> None:
        """The next seller at /oauth2/authorize declines: the redirect carries error=access_denied."""
        self._deny_next = True

    def revoke(self, merchant_id: str) -> None:
        """The seller revoked the application: every access and refresh token of theirs stops working."""
        for token in (*self._access.values(), *self._refresh.values()):
            if token.merchant_id == merchant_id:
                token.revoked = True

    def expire_access_tokens(self, merchant_id: str | None = None) -> None:
        """Every access token (of one seller, or of all) is past its 30 days; refresh tokens still work."""
        past = _now() - timedelta(seconds=1)
        for token in self._access.values():
            if merchant_id is None or token.merchant_id == merchant_id:
                token.expires_at = past

    def fail_next(self, times: int = 1, status: int = 503) -> None:
        """Answer the next `times` Square API calls (token, locations, orders) with `status` (429 or 5xx, in
        Square's error JSON) without executing them."""
        if status not in _FAILURES:
            raise ValueError(f"status is one of {sorted(_FAILURES)}")
        self._failures.extend([status] * times)

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """Execute the next `times` Square API calls, then hold each answer `seconds` (a client times out after
        Square did the work)."""
        self._delays.extend([seconds] * times)

    # -- reads -----------------------------------------------------------------------------------

    def merchant(self, merchant_id: str) -> FakeMerchant:
        return self._merchants[merchant_id]

    @property
    def merchants(self) -> list[FakeMerchant]:
        return list(self._merchants.values())

    def order(self, order_id: str) -> FakeOrder:
        return self._orders[order_id]

    def requests_to(self, method: str, path: str) -> list[ReceivedRequest]:
        return [request for request in self.requests if (request.method, request.path) == (method, path)]

    def snapshot(self) -> JsonObject:
        return {"url": self.base_url, "merchants": [merchant.snapshot() for merchant in self._merchants.values()]}

    # -- HTTP --------------------------------------------------------------------------------------

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections[task] = writer
        try:
            # Keep-alive: the SDK's httpx client reuses connections across requests.
            while True:
                try:
                    request = await read_request(reader, _MAX_BODY_BYTES)
                except MalformedRequest as exc:
                    response = _error(400, "INVALID_REQUEST_ERROR", "BAD_REQUEST", str(exc))
                    writer.write(_encode(response, keep_alive=False))
                    await writer.drain()
                    return
                if request is None:
                    return
                keep_alive = request.version == "HTTP/1.1" and request.headers.get("connection", "").lower() != "close"
                response = await self._respond(request)
                writer.write(_encode(response, keep_alive=keep_alive))
                await writer.drain()
                if not keep_alive:
                    return
        except ConnectionError:
            # The client gave up, typically a timeout while a delayed answer was pending.
            return
        finally:
            if task is not None:
                self._connections.pop(task, None)
            writer.close()

    async def _respond(self, request: Request) -> _Response:
        query = dict(parse_qsl(request.query, keep_blank_values=True))
        body: object = None
        body_error: _Response | None = None
        if request.body:
            try:
                body = json.loads(request.body)
            except ValueError:
                body_error = _error(400, "INVALID_REQUEST_ERROR", "BAD_REQUEST", "The request body is not valid JSON.")
        self.requests.append(ReceivedRequest(request.method, request.path, query, request.headers, body))

        parts = [part for part in request.path.split("/") if part]
        if parts[:1] == ["_fake"]:
            return self._control(request.method, parts[1:], body)
        if (request.method, request.path) == ("GET", "/oauth2/authorize"):
            return self._authorize(query)

        version = request.headers.get("square-version")
        if version is not None and _VERSION.fullmatch(version) is None:
            return _error(
                400, "INVALID_REQUEST_ERROR", "INVALID_SQUARE_VERSION_FORMAT", f"Invalid Square-Version {version!r}."
            )
        headers = (("Square-Version", version or API_VERSION),)
        if self._failures:
            status = self._failures.pop(0)
            category, code = _FAILURES[status]
            failed = _error(status, category, code, "The fake was told to fail this call.")
            retry_after = (("Retry-After", "1"),) if status == 429 else ()
            return dataclasses.replace(failed, headers=(*headers, *retry_after))
        try:
            if body_error is not None:
                raise _Refused(body_error)
            response = self._route(request, parts, body)
        except _Refused as refused:
            response = refused.response
        if self._delays:
            await asyncio.sleep(self._delays.pop(0))
        return dataclasses.replace(response, headers=(*headers, *response.headers))

    def _route(self, request: Request, parts: list[str], body: object) -> _Response:
        route = (request.method, request.path)
        if route == ("POST", "/oauth2/token"):
            return self._token(request, body)
        if route == ("GET", "/v2/locations"):
            return self._list_locations(self._bearer(request, "MERCHANT_PROFILE_READ"))
        if route == ("POST", "/v2/orders/search"):
            return self._search_orders(self._bearer(request, "ORDERS_READ"), body)
        if request.method == "GET" and len(parts) == 3 and parts[:2] == ["v2", "orders"]:
            return self._get_order(self._bearer(request, "ORDERS_READ"), parts[2])
        known = {"/oauth2/token", "/v2/locations", "/v2/orders/search"}
        if request.path in known or parts[:2] == ["v2", "orders"]:
            return _error(405, "INVALID_REQUEST_ERROR", "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here.")
        return _error(404, "INVALID_REQUEST_ERROR", "NOT_FOUND", f"No route for {request.method} {request.path}.")

    # -- OAuth -------------------------------------------------------------------------------------

    def _authorize(self, query: Mapping[str, str]) -> _Response:
        """Square's permission page, answered at once: the approving seller (or a denial) goes back to the
        redirect URL as Square sends it."""
        if query.get("client_id") != self.application_id:
            return _error(400, "INVALID_REQUEST_ERROR", "BAD_REQUEST", "Unknown client_id.", field="client_id")
        redirect_uri = query.get("redirect_uri") or self.redirect_uri
        if not redirect_uri:
            return _error(400, "INVALID_REQUEST_ERROR", "BAD_REQUEST", "No redirect URL.", field="redirect_uri")
        if self.redirect_uri is not None and redirect_uri != self.redirect_uri:
            return _error(
                400,
                "INVALID_REQUEST_ERROR",
                "BAD_REQUEST",
                "redirect_uri is not the registered one.",
                field="redirect_uri",
            )
        target = urlsplit(redirect_uri)
        if target.scheme not in ("http", "https") or not target.netloc:
            return _error(
                400, "INVALID_REQUEST_ERROR", "BAD_REQUEST", "redirect_uri is not a URL.", field="redirect_uri"
            )
        state = query.get("state")

        def back(**params: str) -> _Response:
            if state is not None:
                params["state"] = state
            separator = "&" if target.query else "?"
            return _Response(302, b"", (("Location", redirect_uri + separator + urlencode(params)),))

        # Square's default permissions when `scope` is left out.
        requested = query.get("scope", "MERCHANT_PROFILE_READ PAYMENTS_READ").replace("+", " ").split()
        if not requested or not set(requested) <= SCOPES:
            return back(error="invalid_scope", error_description="unknown or missing scopes")
        if self._deny_next:
            self._deny_next = False
            return back(error="access_denied", error_description="user denied the request")
        merchant_id = self._approver
        if merchant_id is None and len(self._merchants) == 1:
            merchant_id = next(iter(self._merchants))
        if merchant_id is None:
            return _error(
                400, "INVALID_REQUEST_ERROR", "BAD_REQUEST", "The fake has no seller to approve (approve_as)."
            )
        code = self.issue_code(merchant_id, scopes=requested, redirect_uri=query.get("redirect_uri"))
        return back(code=code, response_type="code")

    def _token(self, request: Request, body: object) -> _Response:
        fields = _json_object(request, body)
        client_id = _string(fields, "client_id")
        grant_type = _string(fields, "grant_type")
        if client_id != self.application_id:
            raise _unauthorized("Not Authorized: unknown client_id.")
        secret = fields.get("client_secret")
        if not isinstance(secret, str) or not hmac.compare_digest(secret.encode(), self.application_secret.encode()):
            raise _unauthorized("Invalid client_secret.")
        if grant_type == "authorization_code":
            code_value = _string(fields, "code")
            code = self._codes.get(code_value)
            if code is None:
                raise _unauthorized("Authorization code not found.")
            if code.used:
                raise _unauthorized("Authorization code is already redeemed.")
            if code.expires_at <= _now():
                raise _unauthorized("Authorization code is expired.")
            if code.redirect_uri is not None and fields.get("redirect_uri") != code.redirect_uri:
                raise _bad_request(
                    "INVALID_VALUE", "redirect_uri does not match the authorize request.", field="redirect_uri"
                )
            code.used = True
            refresh_token = _new_id(60, _ALNUM + "-_", "EQAA")
            self._refresh[refresh_token] = _Token(code.merchant_id, code.scopes, _now() + timedelta(days=3650))
            return _Response(200, self._issue(code.merchant_id, code.scopes, refresh_token))
        if grant_type == "refresh_token":
            refresh_value = _string(fields, "refresh_token")
            refresh = self._refresh.get(refresh_value)
            if refresh is None:
                raise _unauthorized("Refresh token not found.")
            if refresh.revoked:
                raise _unauthorized("Refresh token is revoked.", "ACCESS_TOKEN_REVOKED")
            return _Response(200, self._issue(refresh.merchant_id, refresh.scopes, refresh_value))
        raise _bad_request("INVALID_VALUE", f"Unsupported grant_type {grant_type!r}.", field="grant_type")

    def _issue(self, merchant_id: str, scopes: frozenset[str], refresh_token: str) -> JsonObject:
        access_token = _new_id(60, _ALNUM + "-_", "EAAA")
        expires_at = (_now() + ACCESS_TOKEN_TTL).replace(microsecond=0)
        self._access[access_token] = _Token(merchant_id, scopes, expires_at)
        return {
            "access_token": access_token,
            "token_type": "bearer",
            "expires_at": expires_at.isoformat().replace("+00:00", "Z"),
            "merchant_id": merchant_id,
            "refresh_token": refresh_token,
            "short_lived": False,
        }

    def _bearer(self, request: Request, scope: str) -> FakeMerchant:
        """The seller the request's access token speaks for, once it is valid and carries `scope`."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        token = self._access.get(value.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            raise _unauthorized(
                "This request could not be authorized. The Authorization header must be 'Bearer ACCESS_TOKEN'."
            )
        if token.revoked:
            raise _unauthorized("The access token has been revoked.", "ACCESS_TOKEN_REVOKED")
        if token.expires_at <= _now():
            raise _unauthorized("The access token has expired.", "ACCESS_TOKEN_EXPIRED")
        if scope not in token.scopes:
            raise _Refused(
                _error(403, "AUTHENTICATION_ERROR", "INSUFFICIENT_SCOPES", f"The access token lacks the {scope} scope.")
            )
        return self._merchants[token.merchant_id]

    # -- locations and orders ----------------------------------------------------------------------

    def _list_locations(self, merchant: FakeMerchant) -> _Response:
        locations = sorted(merchant.locations.values(), key=lambda location: location.name)
        return _Response(200, {"locations": [location.to_json() for location in locations]})

    def _get_order(self, merchant: FakeMerchant, order_id: str) -> _Response:
        order = merchant.orders.get(order_id)
        if order is None:
            raise _Refused(
                _error(
                    404,
                    "INVALID_REQUEST_ERROR",
                    "NOT_FOUND",
                    f"Order with ID `{order_id}` not found.",
                    field="order_id",
                )
            )
        return _Response(200, {"order": order.to_json()})

    def _search_orders(self, merchant: FakeMerchant, body: object) -> _Response:
        fields = body if isinstance(body, dict) else None
        if fields is None:
            raise _bad_request("EXPECTED_JSON_BODY", "A JSON object body is required.")
        location_ids = fields.get("location_ids")
        if not isinstance(location_ids, list) or not location_ids:
            raise _bad_request("MISSING_REQUIRED_PARAMETER", "location_ids is required.", field="location_ids")
        if len(location_ids) > MAX_SEARCH_LOCATIONS:
            raise _bad_request("ARRAY_LENGTH_TOO_LONG", "At most 10 location_ids.", field="location_ids")
        for location_id in location_ids:
            if not isinstance(location_id, str) or location_id not in merchant.locations:
                raise _bad_request("INVALID_VALUE", f"Unknown location {location_id!r}.", field="location_ids")
        limit = fields.get("limit", DEFAULT_SEARCH_LIMIT)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_SEARCH_LIMIT:
            raise _bad_request("INVALID_VALUE", f"limit must be 1 to {MAX_SEARCH_LIMIT}.", field="limit")
        query = _object(fields.get("query", {}), "query")
        filters = _object(query.get("filter", {}), "query.filter")
        sort = _object(query.get("sort", {}), "query.sort")
        sort_field = sort.get("sort_field", "CREATED_AT")
        sort_order = sort.get("sort_order", "DESC")
        if sort_field not in _TIME_FIELDS.values():
            raise _bad_request(
                "INVALID_ENUM_VALUE", f"Unknown sort_field {sort_field!r}.", field="query.sort.sort_field"
            )
        if sort_order not in ("ASC", "DESC"):
            raise _bad_request(
                "INVALID_SORT_ORDER", f"Unknown sort_order {sort_order!r}.", field="query.sort.sort_order"
            )

        states = _state_filter(filters)
        time_field, start_at, end_at = _time_filter(filters, sort_field)

        sort_attribute = next(name for name, value in _TIME_FIELDS.items() if value == sort_field)
        matches = [
            order
            for order in merchant.orders.values()
            if order.location_id in location_ids
            and (states is None or order.state in states)
            and _within(order.time(time_field) if time_field else None, time_field, start_at, end_at)
        ]
        oldest = datetime.min.replace(tzinfo=UTC)
        matches.sort(key=lambda order: order.time(sort_attribute) or oldest, reverse=sort_order == "DESC")

        offset = _decode_cursor(fields.get("cursor"))
        page = matches[offset : offset + limit]
        answer: JsonObject = {}
        if page:
            if fields.get("return_entries") is True:
                answer["order_entries"] = [
                    {"order_id": order.id, "location_id": order.location_id, "version": order.version} for order in page
                ]
            else:
                answer["orders"] = [order.to_json() for order in page]
        if offset + limit < len(matches):
            answer["cursor"] = base64.urlsafe_b64encode(json.dumps({"offset": offset + limit}).encode()).decode()
        # Square answers a search without results with an empty object.
        return _Response(200, answer)

    # -- control API ---------------------------------------------------------------------------------

    def _control(self, method: str, parts: list[str], body: object) -> _Response:
        args = body if body is not None else {}
        if not isinstance(args, dict):
            return _Response(400, {"error": "body is not a JSON object"})
        try:
            return self._control_action(method, parts, args)
        except (KeyError, TypeError, ValueError) as exc:
            return _Response(400, {"error": repr(exc)})

    def _control_action(self, method: str, parts: list[str], args: Mapping[str, Any]) -> _Response:
        if (method, parts) == ("GET", ["state"]):
            return _Response(200, self.snapshot())
        if method != "POST" or len(parts) != 1:
            return _Response(404, {"error": "no such control route"})
        action = parts[0]
        if action == "merchants":
            merchant = self.add_merchant(args.get("business_name", "Fake Coffee"), merchant_id=args.get("merchant_id"))
            return _Response(200, merchant.snapshot())
        if action == "locations":
            fields = dict(args)
            if "created_at" in fields:
                fields["created_at"] = _iso(fields["created_at"])
            return _Response(200, self.add_location(fields.pop("merchant_id"), **fields).to_json())
        if action == "orders":
            fields = dict(args)
            for name in ("created_at", "closed_at"):
                if name in fields:
                    fields[name] = _iso(fields[name])
            return _Response(
                200, self.add_order(fields.pop("location_id"), fields.pop("total_cents"), **fields).to_json()
            )
        actions: dict[str, Callable[..., object]] = {
            "codes": lambda merchant_id, **kw: {"code": self.issue_code(merchant_id, **kw)},
            "approve_as": self.approve_as,
            "deny_next_authorization": self.deny_next_authorization,
            "revoke": self.revoke,
            "expire_access_tokens": self.expire_access_tokens,
            "fail_next": self.fail_next,
            "delay_next": self.delay_next,
        }
        handler = actions.get(action)
        if handler is None:
            return _Response(404, {"error": f"no action {action!r}", "actions": sorted(actions)})
        result = handler(**args)
        return _Response(200, result if result is not None else {"ok": True})


# -- wire helpers --------------------------------------------------------------------------------------


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC)


def _iso(value: object) -> datetime:
    if not isinstance(value, str):
        raise TypeError("timestamps are ISO 8601 strings")
    return _aware(datetime.fromisoformat(value))


def _json_object(request: Request, body: object) -> Mapping[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise _bad_request("INVALID_CONTENT_TYPE", "Content-Type must be application/json.")
    if not isinstance(body, dict):
        raise _bad_request("EXPECTED_JSON_BODY", "A JSON object body is required.")
    return body


def _string(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    if value is None or value == "":
        raise _bad_request("MISSING_REQUIRED_PARAMETER", f"Missing required parameter: {name}.", field=name)
    if not isinstance(value, str):
        raise _bad_request("EXPECTED_STRING", f"{name} must be a string.", field=name)
    return value


def _object(value: object, name: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _bad_request("EXPECTED_OBJECT", f"{name} must be an object.", field=name)
    return value


def _state_filter(filters: Mapping[str, Any]) -> set[str] | None:
    """query.filter.state_filter.states; None when the search does not filter by state."""
    if "state_filter" not in filters:
        return None
    states = _object(filters["state_filter"], "query.filter.state_filter").get("states")
    if not isinstance(states, list) or not states or not set(states) <= set(ORDER_STATES):
        raise _bad_request("INVALID_VALUE", "states must list order states.", field="query.filter.state_filter")
    return set(states)


def _time_filter(filters: Mapping[str, Any], sort_field: str) -> tuple[str | None, datetime | None, datetime | None]:
    """query.filter.date_time_filter as (order attribute, start_at, end_at); Square filters on one timestamp
    and requires the results sorted by that same one."""
    if "date_time_filter" not in filters:
        return None, None, None
    date_filter = _object(filters["date_time_filter"], "query.filter.date_time_filter")
    named = [name for name in _TIME_FIELDS if name in date_filter]
    if len(named) != 1 or set(date_filter) - set(named):
        raise _bad_request(
            "CONFLICTING_PARAMETERS",
            "date_time_filter takes exactly one of created_at, updated_at and closed_at.",
            field="query.filter.date_time_filter",
        )
    time_field = named[0]
    if sort_field != _TIME_FIELDS[time_field]:
        raise _bad_request(
            "BAD_REQUEST",
            f"A date_time_filter on {time_field} requires query.sort.sort_field {_TIME_FIELDS[time_field]}.",
            field="query.sort.sort_field",
        )
    time_range = _object(date_filter[time_field], f"query.filter.date_time_filter.{time_field}")
    start_at = _parse_time(time_range.get("start_at"), f"{time_field}.start_at")
    end_at = _parse_time(time_range.get("end_at"), f"{time_field}.end_at")
    return time_field, start_at, end_at


def _parse_time(value: object, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad_request("INVALID_TIME", f"{name} must be an RFC 3339 timestamp.", field=name)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _bad_request("INVALID_TIME", f"{name} must be an RFC 3339 timestamp.", field=name) from None
    if moment.tzinfo is None:
        raise _bad_request("INVALID_TIME", f"{name} needs a UTC offset.", field=name)
    return moment


def _within(moment: datetime | None, field: str | None, start_at: datetime | None, end_at: datetime | None) -> bool:
    """Inside [start_at, end_at); an order without the filtered timestamp (an open order's closed_at) is not."""
    if field is None:
        return True
    if moment is None:
        return False
    return (start_at is None or moment >= start_at) and (end_at is None or moment < end_at)


def _decode_cursor(value: object) -> int:
    if value is None:
        return 0
    try:
        decoded = json.loads(base64.urlsafe_b64decode(str(value).encode()))
        offset = decoded["offset"]
    except (ValueError, KeyError, TypeError):
        raise _bad_request("INVALID_CURSOR", "The cursor is not valid.", field="cursor") from None
    if not isinstance(offset, int) or offset < 0:
        raise _bad_request("INVALID_CURSOR", "The cursor is not valid.", field="cursor")
    return offset


def _encode(response: _Response, *, keep_alive: bool) -> bytes:
    if isinstance(response.body, bytes):
        body = response.body
        content_type = "text/html; charset=utf-8"
    else:
        body = json.dumps(response.body if response.body is not None else {}).encode()
        content_type = "application/json"
    lines = [
        f"HTTP/1.1 {response.status} {reason_phrase(response.status)}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
        *(f"{name}: {value}" for name, value in response.headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# -- command line ----------------------------------------------------------------------------------------


def seed_demo(fake: FakeSquare, *, now: datetime | None = None) -> FakeMerchant:
    """A coffee shop with one location and a month of completed orders (AOV 1650 ¢), for `make run`."""
    now = now or _now()
    merchant = fake.add_merchant("Demo Coffee", merchant_id="MLDEMOCOFFEE1")
    location = fake.add_location(merchant.id, "Demo Coffee Congress", location_id="LDEMOCOFFEE01")
    for day in range(30):
        for index, total in enumerate((1200, 1650, 2100)):
            fake.add_order(location.id, total, created_at=now - timedelta(days=day, hours=2 + 3 * index))
    return merchant


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m fakes.square serve --port N` runs the fake and prints its base URL and sellers as one JSON line;
    the other commands script a running one over its control API (`--url`, default $FAKE_SQUARE_URL or
    http://127.0.0.1:8093) and print the answer as JSON."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        _serve(args)
        return
    path, payload = _control_request(args)
    with httpx.Client(base_url=args.url, timeout=10.0) as client:
        response = client.get(path) if payload is None else client.post(path, json=payload)
    print(json.dumps(response.json(), indent=2))
    if response.status_code != 200:
        sys.exit(1)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fakes.square", description=main.__doc__)
    parser.add_argument("--url", default=os.environ.get("FAKE_SQUARE_URL", "http://127.0.0.1:8093"))
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the fake Square")
    serve.add_argument("--port", type=int, default=8093)
    serve.add_argument("--application-id")
    serve.add_argument("--application-secret")
    serve.add_argument("--redirect-uri", help="the application's registered redirect URL")
    serve.add_argument("--demo", action="store_true", help="start with Demo Coffee, its location and orders")

    commands.add_parser("state", help="every seller, location and order count")
    merchant = commands.add_parser("add-merchant", help="add a seller")
    merchant.add_argument("--name", default="Fake Coffee")
    merchant.add_argument("--id", dest="merchant_id")
    location = commands.add_parser("add-location", help="add a location to a seller")
    location.add_argument("merchant_id")
    location.add_argument("--name", default="Main Street")
    location.add_argument("--lat", type=float)
    location.add_argument("--lng", type=float)
    order = commands.add_parser("add-order", help="ring up an order at a location")
    order.add_argument("location_id")
    order.add_argument("--total-cents", type=int, required=True)
    order.add_argument("--state", choices=ORDER_STATES, default="COMPLETED")
    code = commands.add_parser("issue-code", help="an authorization code for a seller")
    code.add_argument("merchant_id")
    approve = commands.add_parser("approve-as", help="who approves at /oauth2/authorize")
    approve.add_argument("merchant_id")
    commands.add_parser("deny-next", help="the next authorization is declined")
    revoke = commands.add_parser("revoke", help="the seller revokes the application")
    revoke.add_argument("merchant_id")
    fail = commands.add_parser("fail-next", help="answer the next API calls with an error")
    fail.add_argument("--times", type=int, default=1)
    fail.add_argument("--status", type=int, default=503)
    return parser


def _control_request(args: argparse.Namespace) -> tuple[str, JsonObject | None]:
    """The control-API call a CLI command stands for: (path, JSON body), body None for a GET."""
    command = args.command
    if command == "state":
        return "/_fake/state", None
    if command == "add-merchant":
        body: JsonObject = {"business_name": args.name}
        if args.merchant_id:
            body["merchant_id"] = args.merchant_id
        return "/_fake/merchants", body
    if command == "add-location":
        body = {"merchant_id": args.merchant_id, "name": args.name}
        if args.lat is not None and args.lng is not None:
            body.update(lat=args.lat, lng=args.lng)
        return "/_fake/locations", body
    if command == "add-order":
        return "/_fake/orders", {"location_id": args.location_id, "total_cents": args.total_cents, "state": args.state}
    if command == "issue-code":
        return "/_fake/codes", {"merchant_id": args.merchant_id}
    if command == "approve-as":
        return "/_fake/approve_as", {"merchant_id": args.merchant_id}
    if command == "deny-next":
        return "/_fake/deny_next_authorization", {}
    if command == "revoke":
        return "/_fake/revoke", {"merchant_id": args.merchant_id}
    return "/_fake/fail_next", {"times": args.times, "status": args.status}


def _serve(args: argparse.Namespace) -> None:
    async def serve() -> None:
        fake = FakeSquare(
            application_id=args.application_id,
            application_secret=args.application_secret,
            redirect_uri=args.redirect_uri,
            port=args.port,
        )
        if args.demo:
            seed_demo(fake)
        async with fake:
            print(json.dumps({**fake.snapshot(), "application_id": fake.application_id}), flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
