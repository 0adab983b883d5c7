"""Reading a car, whoever makes it: the one interface the sessions service uses for vehicle APIs.

A `VehicleReader` is bound to one driver's vehicle connection and answers two questions: what is the car doing
now (`read`, a `VehicleReading`) and "please wake up" (`wake`). The Tesla Fleet API (tesla.py) and Smartcar
(smartcar.py) implement it; everything provider-specific (URLs, JSON shapes, status codes, token rotation)
stays in those modules and comes out as the typed errors below, so the poll can decide from the type alone:

    VehicleAsleep       the car sleeps (Tesla 408, Smartcar 409 ASLEEP): an answer, not a failure; wake it
                        only when the domain rules allow (waking costs fleet-API money)
    RateLimited         429: back off for `retry_after_s`
    VehicleUnavailable  timeout, connection error, 5xx, an unreadable answer, a car that is offline: retry later
    TokenExpired        the provider refused our refresh token: the driver must connect again
    NoConnection        there are no usable tokens for this vehicle (raised by the service's Credentials)
    VehicleNotFound     the vehicle is not on the connected account
    VehicleApiRefused   any other refusal (missing scopes, bad client credentials): configuration, not retryable

Access tokens are kept fresh by `TokenKeeper`: refreshed shortly before they expire and once after a 401, with
the rotated refresh token handed to `Credentials.store` before it is used (Tesla and Smartcar both rotate
refresh tokens: the old one stops working as soon as the new one is issued).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import email.utils
import functools
import hashlib
import hmac
import json
import math
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final, Protocol, TypeVar

from services.sessions import domain

_T = TypeVar("_T")

Clock = Callable[[], datetime]

# Refresh an access token this long before it expires, so a read never starts with a token that dies on the
# way (the original refreshed 5 minutes ahead too).
DEFAULT_REFRESH_MARGIN: Final = timedelta(minutes=5)

# When a 429 carries no usable Retry-After: a minute is what both providers document as their shortest window.
DEFAULT_RETRY_AFTER_S: Final = 60.0


def utc_now() -> datetime:
    return datetime.now(UTC)


# -- errors ------------------------------------------------------------------------------------


class VehicleApiError(Exception):
    """The vehicle API did not give us a reading. Subclasses say why; `retryable` says whether the same call
    may work later without anyone doing anything.

    `http_status` and `provider_code` (Tesla's `error`, Smartcar's `type:code`) are kept for logs and metrics.
    """

    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, http_status: int | None = None, provider_code: str | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.provider_code = provider_code


class VehicleAsleep(VehicleApiError):
    """The car is asleep (or offline) and did not answer. Waking it is a separate, billed call."""

    retryable = True


class VehicleUnavailable(VehicleApiError):
    """No usable answer: timeout, connection error, 5xx, malformed body, or a car that did not wake."""

    retryable = True


class RateLimited(VehicleApiError):
    """429: too many calls for this vehicle or application. Do not call again for `retry_after_s` seconds."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float,
        http_status: int | None = 429,
        provider_code: str | None = None,
    ) -> None:
        super().__init__(message, http_status=http_status, provider_code=provider_code)
        self.retry_after_s = retry_after_s


class AccessTokenRejected(VehicleApiError):
    """401 from a vehicle endpoint: the access token is expired or revoked. TokenKeeper answers it with one
    refresh; callers of a Reader never see it (it becomes TokenExpired when the refresh does not help)."""


class TokenExpired(VehicleApiError):
    """The provider refused our refresh token (revoked, expired, already rotated): only a new consent helps."""


class NoConnection(VehicleApiError):
    """There are no usable tokens for this vehicle: never connected, disconnected, or unreadable."""


class VehicleNotFound(VehicleApiError):
    """The vehicle is not on the connected account (sold, removed, or a wrong id)."""


class VehicleApiRefused(VehicleApiError):
    """Any other refusal: missing scopes, unknown client, a request the provider rejects. Asking again unchanged
    gets the same answer; it needs a configuration fix (or, for missing scopes, a new consent)."""


class AuthorizationRefused(VehicleApiError):
    """The authorization code could not be exchanged: expired, already used, a PKCE verifier that does not
    match the challenge, or a redirect URI other than the one authorized. The driver has to start again."""


class WebhookSignatureInvalid(Exception):
    """A pushed body without a signature, or one that is not the HMAC-SHA256 of the exact bytes: do not act."""


class WebhookPayloadInvalid(Exception):
    """A correctly signed body that is not the JSON object we expect."""


# -- tokens ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class OAuthTokens:
    """One vehicle connection's tokens. The secrets stay out of the repr (and so out of logs)."""

    access_token: str = dataclasses.field(repr=False)
    refresh_token: str = dataclasses.field(repr=False)
    expires_at: datetime
    scope: str = ""  # space-separated scopes actually granted
    account_id: str = ""  # the provider's id of the account holder, when the token response says it

    def expires_within(self, margin: timedelta, now: datetime) -> bool:
        return self.expires_at - margin <= now


class Credentials(Protocol):
    """Where one connection's tokens live (the service: encrypted in its database)."""

    async def load(self) -> OAuthTokens:
        """The current tokens; raises NoConnection when there are none (or they cannot be decrypted)."""
        ...

    async def store(self, tokens: OAuthTokens) -> None:
        """Persist freshly rotated tokens. Called before the new access token is used: the old refresh token is
        already dead, so losing these would lose the connection."""
        ...


class TokenRefresher(Protocol):
    async def refresh(self, refresh_token: str) -> OAuthTokens: ...


class TokenKeeper:
    """Runs vehicle calls with a fresh access token for one connection.

    Before a call: refresh when the token expires within `margin`. After a 401: refresh once and retry once; a
    second 401 means the provider does not accept this connection any more (TokenExpired).

    Rotation races: two polls (or two replicas) may try to refresh the same refresh token; the provider accepts
    the first and refuses the second with invalid_grant. Within a process, concurrent refreshes of one refresh
    token are a single flight: one request, its tokens stored before anyone waiting on it resumes. Across
    processes, the stored tokens are re-read before refreshing and again after such a refusal: if someone else
    already rotated them, theirs are used instead of declaring the connection dead.
    """

    def __init__(
        self,
        credentials: Credentials,
        refresher: TokenRefresher,
        *,
        clock: Clock = utc_now,
        margin: timedelta = DEFAULT_REFRESH_MARGIN,
    ) -> None:
        self._credentials = credentials
        self._refresher = refresher
        self._clock = clock
        self._margin = margin

    async def call(self, operation: Callable[[str], Awaitable[_T]]) -> _T:
        tokens = await self._credentials.load()
        if tokens.expires_within(self._margin, self._clock()):
            tokens = await self._refresh(tokens)
        try:
            return await operation(tokens.access_token)
        except AccessTokenRejected:
            tokens = await self._refresh(tokens)
        try:
            return await operation(tokens.access_token)
        except AccessTokenRejected as error:
            raise TokenExpired(
                "the vehicle API refused a freshly refreshed access token",
                http_status=error.http_status,
                provider_code=error.provider_code,
            ) from error

    async def _refresh(self, used: OAuthTokens) -> OAuthTokens:
        current = await self._credentials.load()
        if current.refresh_token != used.refresh_token and not current.expires_within(self._margin, self._clock()):
            return current  # rotated by someone else since we loaded them
        key = hashlib.sha256(current.refresh_token.encode()).hexdigest()
        flight = _REFRESHES_IN_FLIGHT.get(key)
        if flight is None:
            flight = asyncio.ensure_future(self._rotate(current))
            _REFRESHES_IN_FLIGHT[key] = flight
            flight.add_done_callback(functools.partial(_landed, key))
        # Shielded: a poll that gives up (its caller's deadline) must not abort the rotation others wait on,
        # or the new refresh token Tesla has just issued would be lost.
        return await asyncio.shield(flight)

    async def _rotate(self, current: OAuthTokens) -> OAuthTokens:
        try:
            fresh = await self._refresher.refresh(current.refresh_token)
        except TokenExpired:
            latest = await self._credentials.load()
            if latest.refresh_token != current.refresh_token:
                return latest  # we lost the rotation race; the winner stored its tokens
            raise
        await self._credentials.store(fresh)
        return fresh


# Refreshes under way in this process, by SHA-256 of the refresh token being spent.
_REFRESHES_IN_FLIGHT: dict[str, asyncio.Future[OAuthTokens]] = {}


def _landed(key: str, flight: asyncio.Future[OAuthTokens]) -> None:
    if _REFRESHES_IN_FLIGHT.get(key) is flight:
        del _REFRESHES_IN_FLIGHT[key]
    if not flight.cancelled():
        flight.exception()  # retrieved: nobody may be left waiting to see it


# -- readings ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class VehicleReading:
    """What the car said, in our units. Unknown values are None (or "" for strings)."""

    vehicle_id: str
    read_at: datetime  # when we received the answer (our clock)
    charging_state: str  # the provider's own word, verbatim: Tesla "Charging"/"Stopped"…, Smartcar "CHARGING"…
    charging: bool  # DOMAIN: charging ⇔ Charging or Starting (Smartcar: CHARGING)
    plugged_in: bool | None = None
    battery_pct: int | None = None  # state of charge, 0-100
    kwh_added: float | None = None  # energy added since plugging in, kWh
    power_kw: float | None = None  # charging power now, kW
    minutes_to_full: int | None = None  # vehicle's estimate to reach its charge limit
    lat: float | None = None
    lng: float | None = None
    connector: str = ""  # "NACS", "CCS1", "CHADEMO", "J1772", "Type2", … or the provider's raw value
    shift_state: str | None = None  # Tesla: None/"P" parked, "D", "R", "N"

    def telemetry(self) -> domain.Telemetry:
        """The reading as the session state machine takes it (a poll is verified by the vehicle API)."""
        return domain.Telemetry(
            at=self.read_at,
            charging=self.charging,
            battery_pct=self.battery_pct,
            kwh_added=self.kwh_added,
            power_kw=self.power_kw,
            minutes_to_full=self.minutes_to_full,
            lat=self.lat,
            lng=self.lng,
            connector=self.connector,
            verified=True,
        )


class VehicleReader(Protocol):
    """Reads one connection's vehicles. Implementations: tesla.TeslaVehicleReader, smartcar.SmartcarVehicleReader.

    Both methods raise the VehicleApiError subclasses of this module and nothing else.
    """

    async def read(self, vehicle_id: str) -> VehicleReading:
        """One read of the car (a billed vehicle-API call). Raises VehicleAsleep without waking it."""
        ...

    async def wake(self, vehicle_id: str) -> bool:
        """Ask the car to wake up; True when it reports itself online already. Billed: call it only when the
        domain rules allow."""
        ...


# -- OAuth helpers -----------------------------------------------------------------------------


def new_state() -> str:
    """An unguessable single-use OAuth `state` (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def new_code_verifier() -> str:
    """A PKCE code verifier (RFC 7636 §4.1): 43 URL-safe characters carrying 256 random bits."""
    return secrets.token_urlsafe(32)


def code_challenge(code_verifier: str) -> str:
    """The S256 challenge of a verifier: base64url(SHA-256(verifier)) without padding (RFC 7636 §4.2)."""
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def account_id_from_id_token(id_token: object) -> str:
    """The `sub` of an OpenID id_token, "" when there is none.

    The signature is not checked: the token came straight from the provider's token endpoint over TLS, which
    OpenID Connect Core §3.1.3.7 accepts as validation. Never use this on a token that came from elsewhere.
    """
    if not isinstance(id_token, str) or id_token.count(".") != 2:
        return ""
    payload = id_token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return ""
    subject = claims.get("sub") if isinstance(claims, dict) else None
    return subject if isinstance(subject, str) else ""


def retry_after_s(headers: Mapping[str, str], now: datetime) -> float:
    """Seconds to wait from a 429's `Retry-After` (seconds or an HTTP date), else `RateLimit-Reset` (seconds),
    else DEFAULT_RETRY_AFTER_S."""
    value = headers.get("retry-after", "").strip()
    if value:
        try:
            seconds = float(value)
        except ValueError:
            try:
                moment = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                moment = None
            if moment is not None:
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=UTC)
                return max(0.0, (moment - now).total_seconds())
        else:
            if math.isfinite(seconds):
                return max(0.0, seconds)
    reset = headers.get("ratelimit-reset", "").strip()
    try:
        seconds = float(reset)
    except ValueError:
        return DEFAULT_RETRY_AFTER_S
    return max(0.0, seconds) if math.isfinite(seconds) else DEFAULT_RETRY_AFTER_S


# -- pushed bodies -----------------------------------------------------------------------------


def verify_signed_json(body: bytes, signature_header: str | None, secret: str) -> dict[str, Any]:
    """Check that `signature_header` is the hex HMAC-SHA256 of `body` under `secret` (constant-time), then
    return the body's JSON object.

    Raises WebhookSignatureInvalid for a missing or wrong signature (checked before the body is parsed, so an
    unsigned sender learns nothing about our parser) and WebhookPayloadInvalid for a signed body that is not a
    JSON object. `body` must be the exact bytes received.
    """
    if not secret:
        # A configuration error: fail loudly instead of refusing (or, worse, accepting) every delivery.
        raise ValueError("the webhook signing secret is not configured")
    if not signature_header or not signature_header.strip():
        raise WebhookSignatureInvalid("the request carries no signature")
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    # compare_digest wants ASCII for str; a non-ASCII header cannot be a hex digest anyway.
    received = signature_header.strip().lower().encode("ascii", errors="replace")
    if not hmac.compare_digest(expected.encode("ascii"), received):
        raise WebhookSignatureInvalid("the signature does not match the body")
    try:
        decoded: object = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookPayloadInvalid("the signed body is not JSON") from exc
    if not isinstance(decoded, dict):
        raise WebhookPayloadInvalid("the signed body is not a JSON object")
    return decoded
