"""Smartcar: driver consent (Smartcar Connect, OAuth 2 authorization code), token refresh with rotation, a
reading from the v2.0 charge, battery and location endpoints, and signed webhooks.

Same shape as tesla.py: one long-lived httpx.AsyncClient, every httpx exception and Smartcar error answer
translated to the typed errors of vehicles.py in one place (`_api_error`):

    401 AUTHENTICATION → AccessTokenRejected (TokenKeeper refreshes once; TokenExpired when that is refused)
    409 VEHICLE_STATE:ASLEEP → VehicleAsleep; other VEHICLE_STATE codes (unreachable, …) → VehicleUnavailable
    429 → RateLimited(retry-after)        404 → VehicleNotFound
    5xx (but 501 COMPATIBILITY), timeouts, connection errors → VehicleUnavailable
    400 CONNECTED_SERVICES_ACCOUNT, 403 PERMISSION, 430 BILLING, 501 COMPATIBILITY → VehicleApiRefused

Webhooks are signed with header SC-Signature = hex HMAC-SHA256(application management token, exact body);
`verify_webhook` checks it in constant time before anything reads the body.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import quote, urlencode

import httpx

from services.sessions.adapters.http1 import KeepAliveTransport
from services.sessions.adapters.vehicles import (
    DEFAULT_REFRESH_MARGIN,
    AccessTokenRejected,
    AuthorizationRefused,
    Clock,
    Credentials,
    OAuthTokens,
    RateLimited,
    TokenExpired,
    TokenKeeper,
    VehicleApiError,
    VehicleApiRefused,
    VehicleAsleep,
    VehicleNotFound,
    VehicleReading,
    VehicleUnavailable,
    WebhookPayloadInvalid,
    retry_after_s,
    utc_now,
    verify_signed_json,
)

_log = logging.getLogger(__name__)

DEFAULT_API_BASE_URL: Final = "https://api.smartcar.com"
DEFAULT_AUTH_BASE_URL: Final = "https://auth.smartcar.com"
DEFAULT_CONNECT_BASE_URL: Final = "https://connect.smartcar.com"
DEFAULT_SCOPES: Final = ("read_vehicle_info", "read_battery", "read_charge", "read_location")

CHARGING_STATE: Final = "CHARGING"  # the /charge `state` that counts as charging (others: FULLY_CHARGED, NOT_CHARGING)

# Token refusals that are our configuration, not the driver's consent.
_CLIENT_ERRORS: Final = frozenset({"invalid_client", "unauthorized_client", "unsupported_grant_type"})

# Webhook signal codes (Smartcar webhooks, payload version 4.0).
SIGNAL_IS_CHARGING: Final = "charge-ischarging"
SIGNAL_CABLE_CONNECTED: Final = "charge-ischargingcableconnected"
SIGNAL_STATE_OF_CHARGE: Final = "tractionbattery-stateofcharge"
SIGNAL_LOCATION: Final = "location-preciselocation"
SIGNAL_ENERGY_ADDED: Final = "charge-energyadded"
SIGNAL_POWER: Final = "charge-wattage"
SIGNAL_TIME_TO_COMPLETE: Final = "charge-timetocomplete"


class SmartcarClient:
    """Smartcar API client for our application. In tests and the demo every base URL is the fake's."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        api_base_url: str = DEFAULT_API_BASE_URL,
        auth_base_url: str = DEFAULT_AUTH_BASE_URL,
        connect_base_url: str = DEFAULT_CONNECT_BASE_URL,
        scopes: Sequence[str] = DEFAULT_SCOPES,
        mode: str = "live",
        timeout: float = 10.0,
        clock: Clock = utc_now,
    ) -> None:
        if not (client_id and client_secret and redirect_uri):
            raise ValueError("a Smartcar client id, client secret and redirect URI are required")
        self._client_id = client_id
        self._redirect_uri = redirect_uri
        self._api_base_url = api_base_url.rstrip("/") + "/v2.0"
        self._token_url = auth_base_url.rstrip("/") + "/oauth/token"
        self._authorize_url = connect_base_url.rstrip("/") + "/oauth/authorize"
        self._scopes = " ".join(scopes)
        self._mode = mode
        self._clock = clock
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers={"Accept": "application/json"},
            # httpx's API over a lean HTTP/1.1 keep-alive transport: the read path's cost (http1.py).
            transport=KeepAliveTransport(),
        )
        self._client_auth = httpx.BasicAuth(client_id, client_secret)

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
        await self._http.aclose()

    # -- consent -----------------------------------------------------------------------------

    def authorization_url(self, *, state: str) -> str:
        """Smartcar Connect for this driver, with our scopes and a single-use `state`."""
        params = {
            "response_type": "code",
            "client_id": self._client_id,
            "redirect_uri": self._redirect_uri,
            "scope": self._scopes,
            "state": state,
            "mode": self._mode,
        }
        return f"{self._authorize_url}?{urlencode(params, quote_via=quote)}"

    async def exchange_code(self, code: str) -> OAuthTokens:
        """Trade Connect's code for tokens; AuthorizationRefused when Smartcar refuses the code."""
        return await self._token(
            {"grant_type": "authorization_code", "code": code, "redirect_uri": self._redirect_uri}, refreshing=False
        )

    async def refresh(self, refresh_token: str) -> OAuthTokens:
        """New tokens; the refresh token passed in is dead afterwards. TokenExpired when Smartcar refuses it."""
        return await self._token(
            {"grant_type": "refresh_token", "refresh_token": refresh_token},
            refreshing=True,
            previous_refresh_token=refresh_token,
        )

    # -- vehicles ----------------------------------------------------------------------------

    async def user_id(self, access_token: str) -> str:
        """The Smartcar user the token acts for."""
        body = await self._api("/user", access_token, "user")
        user = body.get("id")
        if not isinstance(user, str):
            raise VehicleUnavailable("Smartcar user: the answer has no id")
        return user

    async def list_vehicles(self, access_token: str) -> list[str]:
        """Ids of the vehicles the driver shared with us."""
        body = await self._api("/vehicles", access_token, "list vehicles")
        ids = body.get("vehicles")
        if not isinstance(ids, list):
            raise VehicleUnavailable("Smartcar list vehicles: the answer has no vehicle list")
        return [vehicle_id for vehicle_id in ids if isinstance(vehicle_id, str)]

    async def read(self, access_token: str, vehicle_id: str) -> VehicleReading:
        """Charge, battery and location, asked at once. The charge status is required; battery and location
        are left unknown when the car cannot give them (permission, compatibility), but any other failure of
        theirs (401, 429, asleep, outage) fails the read so it is handled the same way."""
        path = f"/vehicles/{quote(vehicle_id, safe='')}"
        results = await asyncio.gather(
            self._api(f"{path}/charge", access_token, "charge"),
            self._api(f"{path}/battery", access_token, "battery"),
            self._api(f"{path}/location", access_token, "location"),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # cancellation
        charge, battery, location = results
        if isinstance(charge, BaseException):
            raise charge
        for optional in (battery, location):
            if isinstance(optional, BaseException) and not isinstance(optional, VehicleApiRefused):
                raise optional
        state = charge.get("state")
        charging_state = state if isinstance(state, str) else ""
        plugged = charge.get("isPluggedIn")
        percent = _number(battery.get("percentRemaining")) if isinstance(battery, dict) else None
        lat = _number(location.get("latitude")) if isinstance(location, dict) else None
        lng = _number(location.get("longitude")) if isinstance(location, dict) else None
        if lat is None or lng is None:
            lat = lng = None
        return VehicleReading(
            vehicle_id=vehicle_id,
            read_at=self._clock(),
            charging_state=charging_state,
            charging=charging_state == CHARGING_STATE,
            plugged_in=plugged if isinstance(plugged, bool) else None,
            battery_pct=round(percent * 100) if percent is not None else None,
            lat=lat,
            lng=lng,
        )

    def reader(self, credentials: Credentials, *, margin: timedelta = DEFAULT_REFRESH_MARGIN) -> SmartcarVehicleReader:
        return SmartcarVehicleReader(self, credentials, clock=self._clock, margin=margin)

    # -- the boundary ------------------------------------------------------------------------

    async def _api(self, path: str, access_token: str, operation: str) -> dict[str, Any]:
        response = await self._send(
            operation, "GET", self._api_base_url + path, headers={"Authorization": f"Bearer {access_token}"}
        )
        body = _json(response)
        if response.status_code == 200:
            if not isinstance(body, dict):
                raise VehicleUnavailable(f"Smartcar {operation}: the answer is not a JSON object", http_status=200)
            return body
        raise self._api_error(operation, response, body)

    async def _token(
        self, form: Mapping[str, str], *, refreshing: bool, previous_refresh_token: str = ""
    ) -> OAuthTokens:
        operation = "token refresh" if refreshing else "code exchange"
        response = await self._send(operation, "POST", self._token_url, data=form, auth=self._client_auth)
        body = _json(response)
        status = response.status_code
        if status != 200:
            code = _error_code(body)
            message = f"Smartcar {operation}: HTTP {status} {code or ''}".rstrip()
            if status == 429:
                raise RateLimited(
                    message, retry_after_s=retry_after_s(response.headers, self._clock()), provider_code=code
                )
            if status >= 500:
                raise VehicleUnavailable(message, http_status=status, provider_code=code)
            if code in _CLIENT_ERRORS or status not in (400, 401, 403):
                _log.error("Smartcar refused our client credentials", extra={"status": status, "error": code})
                raise VehicleApiRefused(message, http_status=status, provider_code=code)
            if refreshing:
                raise TokenExpired(message, http_status=status, provider_code=code)
            raise AuthorizationRefused(message, http_status=status, provider_code=code)
        if not isinstance(body, dict):
            raise VehicleUnavailable(f"Smartcar {operation}: the answer is not JSON", http_status=200)
        access_token = body.get("access_token")
        expires_in = _number(body.get("expires_in"))
        refresh_token = body.get("refresh_token")
        if not isinstance(access_token, str) or not access_token or expires_in is None:
            raise VehicleUnavailable(f"Smartcar {operation}: the answer has no access token", http_status=200)
        tokens = OAuthTokens(
            access_token=access_token,
            refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else previous_refresh_token,
            expires_at=self._clock() + timedelta(seconds=expires_in),
        )
        if not tokens.refresh_token:
            raise AuthorizationRefused(f"Smartcar {operation}: no refresh token in the answer", http_status=200)
        return tokens

    async def _send(self, operation: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise VehicleUnavailable(f"Smartcar {operation} timed out") from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise VehicleUnavailable(f"Smartcar {operation} unreachable: {exc!r}") from exc
        except httpx.HTTPError as exc:
            raise VehicleApiRefused(f"Smartcar {operation} could not be sent: {exc!r}") from exc

    def _api_error(self, operation: str, response: httpx.Response, body: object) -> VehicleApiError:
        status = response.status_code
        code = _error_code(body)
        message = f"Smartcar {operation}: HTTP {status} {code or ''}".rstrip()
        if status == 401:
            return AccessTokenRejected(message, http_status=status, provider_code=code)
        if status == 404:
            return VehicleNotFound(message, http_status=status, provider_code=code)
        if status == 409 and code == "VEHICLE_STATE:ASLEEP":
            return VehicleAsleep(message, http_status=status, provider_code=code)
        if status == 409:
            return VehicleUnavailable(message, http_status=status, provider_code=code)
        if status == 429:
            return RateLimited(
                message,
                retry_after_s=retry_after_s(response.headers, self._clock()),
                http_status=status,
                provider_code=code,
            )
        if status >= 500 and status != 501:
            return VehicleUnavailable(message, http_status=status, provider_code=code)
        return VehicleApiRefused(message, http_status=status, provider_code=code)


class SmartcarVehicleReader:
    """VehicleReader over Smartcar for one driver's connection."""

    def __init__(
        self,
        client: SmartcarClient,
        credentials: Credentials,
        *,
        clock: Clock = utc_now,
        margin: timedelta = DEFAULT_REFRESH_MARGIN,
    ) -> None:
        self._client = client
        self._keeper = TokenKeeper(credentials, client, clock=clock, margin=margin)

    async def read(self, vehicle_id: str) -> VehicleReading:
        return await self._keeper.call(lambda token: self._client.read(token, vehicle_id))

    async def wake(self, vehicle_id: str) -> bool:
        """Smartcar has no wake command (it wakes the car itself when it needs to): nothing is sent."""
        return False

    async def vehicles(self) -> list[str]:
        return await self._keeper.call(self._client.list_vehicles)


# -- webhooks ----------------------------------------------------------------------------------


def verify_webhook(body: bytes, signature_header: str | None, secret: str) -> dict[str, Any]:
    """Check `SC-Signature` (hex HMAC-SHA256 of the exact body, keyed with the application management token)
    and return the event. WebhookSignatureInvalid for a missing or wrong signature; WebhookPayloadInvalid
    for a signed body that is not a JSON object."""
    return verify_signed_json(body, signature_header, secret)


def challenge_response(challenge: str, management_token: str) -> str:
    """What a VERIFY event must be answered with: hex HMAC-SHA256(management token, challenge)."""
    return hmac.new(management_token.encode("utf-8"), challenge.encode("utf-8"), hashlib.sha256).hexdigest()


def verify_challenge(event: Mapping[str, Any]) -> str | None:
    """The challenge of a verification event (`eventType: VERIFY` with `data.challenge`, or the older
    `eventName: verify` with `payload.challenge`); None for any other event."""
    if event.get("eventType") == "VERIFY":
        container = event.get("data")
    elif event.get("eventName") == "verify":
        container = event.get("payload")
    else:
        return None
    challenge = container.get("challenge") if isinstance(container, dict) else None
    if not isinstance(challenge, str) or not challenge:
        raise WebhookPayloadInvalid("a verification event without a challenge")
    return challenge


def reading_from_webhook(event: Mapping[str, Any], *, read_at: datetime) -> VehicleReading | None:
    """The reading a VEHICLE_STATE event carries, or None when the event says nothing about charging
    (another event type, or no Charge.IsCharging signal). WebhookPayloadInvalid when it is malformed."""
    if event.get("eventType") != "VEHICLE_STATE":
        return None
    data = event.get("data")
    if not isinstance(data, dict):
        raise WebhookPayloadInvalid("VEHICLE_STATE without data")
    vehicle = data.get("vehicle")
    vehicle_id = vehicle.get("id") if isinstance(vehicle, dict) else None
    signals = data.get("signals")
    if not isinstance(vehicle_id, str) or not vehicle_id or not isinstance(signals, list):
        raise WebhookPayloadInvalid("VEHICLE_STATE without a vehicle id or signals")
    bodies: dict[str, Mapping[str, Any]] = {}
    for signal in signals:
        if isinstance(signal, dict) and isinstance(signal.get("code"), str) and isinstance(signal.get("body"), dict):
            bodies[signal["code"]] = signal["body"]
    is_charging = bodies.get(SIGNAL_IS_CHARGING, {}).get("value")
    if not isinstance(is_charging, bool):
        return None
    plugged = bodies.get(SIGNAL_CABLE_CONNECTED, {}).get("value")
    soc = _number(bodies.get(SIGNAL_STATE_OF_CHARGE, {}).get("value"))
    place = bodies.get(SIGNAL_LOCATION, {})
    lat, lng = _number(place.get("latitude")), _number(place.get("longitude"))
    if lat is None or lng is None:
        lat = lng = None
    minutes = _number(bodies.get(SIGNAL_TIME_TO_COMPLETE, {}).get("value"))
    return VehicleReading(
        vehicle_id=vehicle_id,
        read_at=read_at,
        charging_state=CHARGING_STATE if is_charging else "NOT_CHARGING",
        charging=is_charging,
        plugged_in=plugged if isinstance(plugged, bool) else None,
        battery_pct=round(soc) if soc is not None else None,
        kwh_added=_number(bodies.get(SIGNAL_ENERGY_ADDED, {}).get("value")),
        power_kw=_number(bodies.get(SIGNAL_POWER, {}).get("value")),
        minutes_to_full=math.floor(minutes) if minutes is not None and minutes >= 0 else None,
        lat=lat,
        lng=lng,
    )


# -- helpers -----------------------------------------------------------------------------------


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _json(response: httpx.Response) -> object:
    try:
        decoded: object = response.json()
    except ValueError:
        return None
    return decoded


def _error_code(body: object) -> str | None:
    """OAuth's `error`, or Smartcar's `type:code` (`type` alone when code is null)."""
    if not isinstance(body, dict):
        return None
    oauth_error = body.get("error")
    if isinstance(oauth_error, str):
        return oauth_error
    error_type = body.get("type")
    if not isinstance(error_type, str):
        return None
    code = body.get("code")
    return f"{error_type}:{code}" if isinstance(code, str) else error_type
