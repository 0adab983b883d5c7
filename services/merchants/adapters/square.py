"""Square for merchants: connecting a seller's Square account (OAuth), its main location, its average order
value, and the orders drivers redeem Nova against at checkout.

Built on the official SDK (`squareup`: `square.AsyncSquare`, httpx and pydantic underneath), used only through its
async client over one shared httpx connection pool, so a slow Square never blocks the event loop. Calls for a
seller carry that seller's OAuth access token (one light AsyncSquare per call, all on the same pool); the OAuth
token calls carry none. Every exception the SDK or httpx raises becomes one of ours in a single place
(`_translate`), so nothing above this module knows Square's or httpx's error classes.

What the service keeps from a connection is `SquareTokens` (seal the tokens before storing them), the
`SquareLocation` that becomes the merchant's place, and the average order value the recommended perk is computed
from (that rule lives in the service's domain, not here). At checkout `get_order` gives Square's own total and
location for an order id, so the client's total is never trusted.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self, TypeVar
from urllib.parse import urlencode

import httpx
from square import AsyncSquare
from square.core.api_error import ApiError
from square.core.request_options import RequestOptions
from square.requests.search_orders_query import SearchOrdersQueryParams
from square.types.location import Location
from square.types.order import Order

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

DEFAULT_BASE_URL: Final = "https://connect.squareup.com"
# What a merchant is asked to grant: the business and its locations, its orders (AOV and checkout), its payments.
DEFAULT_SCOPES: Final = ("MERCHANT_PROFILE_READ", "ORDERS_READ", "PAYMENTS_READ")
# The average order value is taken over the COMPLETED orders closed in this window, newest first, at most this many.
AOV_WINDOW: Final = datetime.timedelta(days=30)
AOV_MAX_ORDERS: Final = 100
# Orders the checkout page lists at most (a till's last minutes).
RECENT_ORDERS_MAX: Final = 50

# Square's ids are short alphanumerics; anything else cannot name an order and must not reach a URL path.
_SQUARE_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,192}")


class SquareError(Exception):
    """Square could not do what was asked. Raised as such when Square answered no for a reason of its own
    (400 and other 4xx: a malformed request, a redirect URL the code was not issued for) or answered with
    something that is not what was asked for. Subclasses say more; `retryable` says whether asking again can help.

    `http_status`, `code` (Square's `errors[0].code`, e.g. "ACCESS_TOKEN_REVOKED") and `category` are kept for
    logs and support tickets.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: str | None = None,
        category: str | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.category = category


class SquareUnavailable(SquareError):
    """No usable answer: timeout, connection error, 5xx, 408, 429, or an unreadable body. Retryable.

    A call may have been executed before its answer was lost; for `exchange_code` that means the one-time code
    may be spent, and the merchant has to connect again."""

    retryable = True


class SquareAuthError(SquareError):
    """Square refused the credentials (401/403): an access token expired or revoked by the seller
    (`code` ACCESS_TOKEN_EXPIRED / ACCESS_TOKEN_REVOKED / UNAUTHORIZED), a token without the needed scope
    (INSUFFICIENT_SCOPES), an authorization code or refresh token that is unknown, used or expired, or our
    application id/secret. Refresh, or have the merchant connect again."""


class SquareNotFound(SquareError):
    """No such object for this seller (404), e.g. an unknown order id."""


@dataclass(frozen=True, slots=True)
class SquareTokens:
    """A seller's OAuth grant. The tokens are secrets: they stay out of repr and logs."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime.datetime | None  # when the access token stops working (30 days after issue)
    square_merchant_id: str


@dataclass(frozen=True, slots=True)
class SquareLocation:
    """A seller's business location as Square knows it."""

    id: str
    name: str
    address: str  # one line, e.g. "500 Congress Ave, Austin, TX 78701"; empty when Square has none
    lat: float | None
    lng: float | None
    timezone: str | None  # IANA name, e.g. "America/Chicago"


@dataclass(frozen=True, slots=True)
class SquareOrder:
    """An order as Square has it now."""

    id: str
    location_id: str
    total_cents: int | None  # total_money.amount, smallest currency unit; None when Square gives no total
    state: str  # "OPEN", "COMPLETED", "CANCELED" or "DRAFT"
    currency: str | None = None
    created_at: datetime.datetime | None = None


class SquareAccounts:
    """The merchants service's Square client: OAuth for the application `application_id`, then calls on behalf
    of each connected seller with that seller's access token.

    `timeout` bounds each HTTP attempt (connect, send, wait, read). `max_retries` is the SDK's own retry of 408,
    409, 429 and 5xx answers with exponential backoff from 1 s (it honours Retry-After up to 60 s); timeouts and
    connection errors are not retried by the SDK. Every call here is a read, or a one-time code exchange that a
    retry cannot spend twice.
    """

    def __init__(
        self,
        *,
        application_id: str,
        application_secret: str,
        redirect_uri: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        max_retries: int = 2,
        api_version: str | None = None,
    ) -> None:
        if not application_id or not application_secret:
            raise ValueError("a Square application id and secret are required")
        if not redirect_uri:
            raise ValueError("a Square OAuth redirect URL is required")
        if timeout <= 0:
            raise ValueError("the timeout must be positive")
        if max_retries < 0:
            raise ValueError("max_retries cannot be negative")
        self._application_id = application_id
        self._application_secret = application_secret
        self._redirect_uri = redirect_uri
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._api_version = api_version
        self._options: RequestOptions = {"max_retries": max_retries}
        # API calls never redirect; a redirect would be a misconfigured base URL, better seen than followed.
        self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

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

    # -- OAuth ---------------------------------------------------------------------------------

    def authorization_url(self, state: str, scopes: Sequence[str] = DEFAULT_SCOPES) -> str:
        """Square's permission page for the merchant: after approving, Square sends the browser to the redirect
        URL with `code` and this `state` (or `error=access_denied` and the state when the merchant declines).
        `session=false` makes Square ask the merchant to sign in rather than reuse whatever session the browser
        has."""
        if not state:
            raise ValueError("an OAuth state is required")
        if not scopes:
            raise ValueError("at least one scope is required")
        query = urlencode(
            {
                "client_id": self._application_id,
                "scope": " ".join(scopes),
                "session": "false",
                "state": state,
                "redirect_uri": self._redirect_uri,
            }
        )
        return f"{self._base_url}/oauth2/authorize?{query}"

    async def exchange_code(self, code: str) -> SquareTokens:
        """Trade the authorization code from the redirect for the seller's tokens. A code works once and for
        a few minutes: a used, expired or unknown one is SquareAuthError."""
        if not code:
            raise ValueError("an authorization code is required")
        answer = await self._call(
            "exchange authorization code",
            self._square(None).o_auth.obtain_token(
                client_id=self._application_id,
                client_secret=self._application_secret,
                grant_type="authorization_code",
                code=code,
                redirect_uri=self._redirect_uri,
                request_options=self._options,
            ),
        )
        tokens = _tokens(answer.access_token, answer.refresh_token, answer.expires_at, answer.merchant_id)
        _log.info("Square seller connected", extra={"square_merchant_id": tokens.square_merchant_id})
        return tokens

    async def refresh(self, refresh_token: str) -> SquareTokens:
        """A new access token for a connected seller. With the code flow Square keeps the refresh token the
        same; a revoked or unknown one is SquareAuthError (the merchant has to connect again)."""
        if not refresh_token:
            raise ValueError("a refresh token is required")
        answer = await self._call(
            "refresh access token",
            self._square(None).o_auth.obtain_token(
                client_id=self._application_id,
                client_secret=self._application_secret,
                grant_type="refresh_token",
                refresh_token=refresh_token,
                request_options=self._options,
            ),
        )
        return _tokens(
            answer.access_token, answer.refresh_token or refresh_token, answer.expires_at, answer.merchant_id
        )

    # -- the seller's data -----------------------------------------------------------------------

    async def main_location(self, access_token: str) -> SquareLocation | None:
        """The seller's main location: the first-created of its ACTIVE locations (Square's main location is the
        first one created, and Square lists locations by name). None when no location is active."""
        answer = await self._call(
            "list locations", self._square(access_token).locations.list(request_options=self._options)
        )
        active = [location for location in answer.locations or [] if location.status == "ACTIVE" and location.id]
        if not active:
            return None
        # min() keeps the first of equals, so locations without a creation time fall back to Square's order.
        main = min(
            active,
            key=lambda location: _time(location.created_at) or datetime.datetime.max.replace(tzinfo=datetime.UTC),
        )
        return _location(main)

    async def average_order_value_cents(
        self, access_token: str, location_id: str, now: datetime.datetime
    ) -> int | None:
        """The mean total, in cents rounded down, of the location's COMPLETED orders closed in the 30 days before
        `now`: the newest 100 at most. None when there are none."""
        if not location_id:
            raise ValueError("a location id is required")
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        query: SearchOrdersQueryParams = {
            "filter": {
                "state_filter": {"states": ["COMPLETED"]},
                "date_time_filter": {"closed_at": {"start_at": _rfc3339(now - AOV_WINDOW), "end_at": _rfc3339(now)}},
            },
            # Square requires sorting by the field a time range filters on.
            "sort": {"sort_field": "CLOSED_AT", "sort_order": "DESC"},
        }
        answer = await self._call(
            "search orders",
            self._square(access_token).orders.search(
                location_ids=[location_id], query=query, limit=AOV_MAX_ORDERS, request_options=self._options
            ),
        )
        totals = [
            order.total_money.amount
            for order in (answer.orders or [])[:AOV_MAX_ORDERS]
            if order.state == "COMPLETED" and order.total_money is not None and order.total_money.amount is not None
        ]
        if not totals:
            return None
        return int(sum(totals)) // len(totals)

    async def recent_orders(
        self, access_token: str, location_id: str, since: datetime.datetime, limit: int = RECENT_ORDERS_MAX
    ) -> list[SquareOrder]:
        """The location's OPEN and COMPLETED orders created since `since`, newest first (at most `limit`): what
        a driver at the till picks their order from."""
        if not location_id:
            raise ValueError("a location id is required")
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        query: SearchOrdersQueryParams = {
            "filter": {
                "state_filter": {"states": ["OPEN", "COMPLETED"]},
                "date_time_filter": {"created_at": {"start_at": _rfc3339(since)}},
            },
            "sort": {"sort_field": "CREATED_AT", "sort_order": "DESC"},
        }
        answer = await self._call(
            "search orders",
            self._square(access_token).orders.search(
                location_ids=[location_id], query=query, limit=limit, request_options=self._options
            ),
        )
        return [_order(order) for order in (answer.orders or [])[:limit] if order.id]

    async def get_order(self, access_token: str, order_id: str) -> SquareOrder:
        """One order of the seller; SquareNotFound when the seller has no such order."""
        if _SQUARE_ID.fullmatch(order_id) is None:
            # Not a Square id, so not an order of theirs; and it never becomes part of a URL path.
            raise SquareNotFound(f"Square get order: {order_id!r} is not a Square order id")
        answer = await self._call(
            "get order", self._square(access_token).orders.get(order_id, request_options=self._options)
        )
        order = answer.order
        if order is None or not order.id:
            raise SquareNotFound(f"Square get order: no order {order_id} in the answer")
        return _order(order)

    # -- the boundary ------------------------------------------------------------------------------

    def _square(self, access_token: str | None) -> AsyncSquare:
        """An SDK client on the shared pool, with the seller's token or (for OAuth) none. Passing the token
        explicitly also keeps the SDK from picking up a SQUARE_TOKEN environment variable."""
        if access_token is not None and not access_token:
            raise ValueError("an access token is required")
        return AsyncSquare(
            base_url=self._base_url,
            token=access_token,
            httpx_client=self._http,
            timeout=self._timeout,
            version=self._api_version,
        )

    async def _call(self, operation: str, request: Coroutine[Any, Any, _T]) -> _T:
        """Await one SDK request; the only place its exceptions are caught."""
        try:
            return await request
        except (ApiError, httpx.HTTPError) as error:
            raise _translate(error, operation) from error


def _translate(error: ApiError | httpx.HTTPError, operation: str) -> SquareError:
    """Map an exception of the SDK (ApiError for any non-2xx or unreadable answer) or of httpx (no answer) to
    ours. The one place that knows their classes."""
    if isinstance(error, httpx.HTTPError):
        return SquareUnavailable(f"Square {operation}: {type(error).__name__} {error}".rstrip())
    status = error.status_code
    first = error.errors[0] if error.errors else None
    code = str(first.code) if first is not None and first.code is not None else None
    category = str(first.category) if first is not None and first.category is not None else None
    detail = first.detail if first is not None and first.detail else None
    message = f"Square {operation}: HTTP {status} {code or ''} {detail or ''}".rstrip()
    fields: dict[str, Any] = {"http_status": status, "code": code, "category": category}
    if status is None or status < 400 or status >= 500 or status in (408, 429):
        # No usable answer: a server failure, "slow down", or a 2xx body the SDK could not read.
        return SquareUnavailable(message, **fields)
    if status in (401, 403):
        return SquareAuthError(message, **fields)
    if status == 404:
        return SquareNotFound(message, **fields)
    return SquareError(message, **fields)


def _tokens(
    access_token: str | None, refresh_token: str | None, expires_at: str | None, merchant_id: str | None
) -> SquareTokens:
    if not access_token or not refresh_token or not merchant_id:
        # A 200 without the grant: asking again with the same (now spent) code cannot help.
        raise SquareError("Square obtain token: the answer has no access token, refresh token or merchant id")
    return SquareTokens(
        access_token=access_token,
        refresh_token=refresh_token,
        expires_at=_time(expires_at),
        square_merchant_id=merchant_id,
    )


def _order(order: Order) -> SquareOrder:
    money = order.total_money
    return SquareOrder(
        id=str(order.id),
        location_id=order.location_id,
        total_cents=money.amount if money is not None else None,
        state=str(order.state or ""),
        currency=str(money.currency) if money is not None and money.currency is not None else None,
        created_at=_time(order.created_at),
    )


def _location(location: Location) -> SquareLocation:
    address = location.address
    lines: list[str] = []
    if address is not None:
        region = " ".join(part for part in (address.administrative_district_level1, address.postal_code) if part)
        lines = [part for part in (address.address_line1, address.address_line2, address.locality, region) if part]
    coordinates = location.coordinates
    return SquareLocation(
        id=str(location.id),
        name=location.name or location.business_name or "",
        address=", ".join(lines),
        lat=coordinates.latitude if coordinates is not None else None,
        lng=coordinates.longitude if coordinates is not None else None,
        timezone=location.timezone,
    )


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _time(value: str | None) -> datetime.datetime | None:
    """A Square timestamp (RFC 3339) as an aware UTC datetime; None when absent or unreadable."""
    if not value:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC)
