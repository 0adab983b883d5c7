"""The Tesla Fleet API: driver consent (OAuth 2 authorization code with PKCE), token refresh with rotation, the
vehicle list, vehicle_data as a VehicleReading, and wake_up.

One long-lived httpx.AsyncClient per process (created here, closed by `aclose`): building a client per call
was where the first implementation spent 41 % of an idle poll. Every httpx exception and every Tesla error
answer becomes one of the typed errors of vehicles.py in `_api_error`/`_token_error`, so nothing above this
module knows Tesla's status codes:

    401 → AccessTokenRejected (TokenKeeper refreshes once; TokenExpired when the refresh is refused)
    403 → VehicleApiRefused (missing scopes)       404 → VehicleNotFound
    408 → VehicleAsleep                            429 → RateLimited(Retry-After)
    5xx, timeouts, connection errors, unreadable answers → VehicleUnavailable

Tesla's refresh tokens are single use: each refresh returns a new one and the old one stops working, so
`refresh` returns the whole new OAuthTokens and the caller must keep the new refresh token.
"""

from __future__ import annotations

import dataclasses
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
    account_id_from_id_token,
    code_challenge,
    new_code_verifier,
    new_state,
    retry_after_s,
    utc_now,
)

_log = logging.getLogger(__name__)

DEFAULT_API_BASE_URL: Final = "https://fleet-api.prd.na.vn.cloud.tesla.com"  # North America region
DEFAULT_AUTHORIZE_BASE_URL: Final = "https://auth.tesla.com"
DEFAULT_TOKEN_BASE_URL: Final = "https://fleet-auth.prd.vn.cloud.tesla.com"
# openid + offline_access give the refresh token; vehicle_device_data reads the car; vehicle_location is needed
# for drive_state's position; vehicle_cmds covers wake_up.
DEFAULT_SCOPES: Final = ("openid", "offline_access", "vehicle_device_data", "vehicle_location", "vehicle_cmds")

# Everything one reading needs in one call. Since firmware 2023.38 the position is only returned when
# location_data is asked for explicitly.
_READING_ENDPOINTS: Final = "charge_state;drive_state;location_data"
# The read's query string, encoded once: httpx would parse and re-encode `params` on every read (the hot path).
_READING_QUERY: Final = "?" + urlencode({"endpoints": _READING_ENDPOINTS})

CHARGING_STATES: Final = frozenset({"Charging", "Starting"})  # DOMAIN: charging ⇔ one of these

# What a car streams once Fleet Telemetry is configured (what domain.parse_fleet_push reads).
TELEMETRY_FIELDS: Final = (
    "DetailedChargeState",
    "BatteryLevel",
    "ACChargingPower",
    "DCChargingPower",
    "ACChargingEnergyIn",
    "DCChargingEnergyIn",
    "Location",
)
_TELEMETRY_INTERVAL_S: Final = 60

# Token refusals that are our configuration, not the driver's consent: never mark a connection dead for these.
_CLIENT_ERRORS: Final = frozenset({"invalid_client", "unauthorized_client", "unsupported_grant_type"})

_VEHICLE_PAGE_SIZE: Final = 100
_MAX_VEHICLE_PAGES: Final = 20

# Tesla's fast_charger_type while DC charging → the connector names campaign rules and the chargers catalog use.
_DC_CONNECTORS: Final[Mapping[str, str]] = {
    "Supercharger": "NACS",
    "Tesla": "NACS",
    "CCS": "CCS1",
    "Combo": "CCS1",
    "CHAdeMO": "CHADEMO",
}
# conn_charge_cable while AC charging, when the charger is not a Tesla one (which says ACSingleWireCAN).
_AC_CABLES: Final[Mapping[str, str]] = {"SAE": "J1772", "IEC": "Type2", "GB_AC": "GB/T"}
_TESLA_AC_CHARGER: Final = "ACSingleWireCAN"
_INVALID: Final = "<invalid>"  # Tesla's word for "no value"

# VIN position 4 → model; position 10 → model year (the standard code table; I, O, Q, U, Z and 0 are unused).
_VIN_MODELS: Final[Mapping[str, str]] = {
    "S": "Model S",
    "3": "Model 3",
    "X": "Model X",
    "Y": "Model Y",
    "C": "Cybertruck",
    "R": "Roadster",
}
_VIN_YEAR_CODES: Final = "ABCDEFGHJKLMNPRSTVWXY"  # 2010 … 2030


@dataclasses.dataclass(frozen=True, slots=True)
class AuthorizationStart:
    """What ConnectTesla needs: the URL to send the driver to, and the two secrets to keep (single use, about
    10 minutes) until Tesla sends the browser back with the code."""

    url: str
    state: str
    code_verifier: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class TeslaVehicle:
    """A vehicle on the driver's Tesla account, as the vehicle list shows it."""

    id: str  # the integer id Fleet API paths take, as a string
    vin: str
    display_name: str
    model: str  # decoded from the VIN; "" when unknown
    year: int | None  # model year decoded from the VIN
    color: str  # Tesla's list usually leaves it null: ""
    state: str  # "online", "asleep", "offline", or ""


class TeslaFleetClient:
    """Tesla Fleet API client for our application (`client_id`) acting on drivers' behalf.

    `api_base_url` is the regional Fleet API host and the token's audience; `authorize_base_url` serves the
    consent page and `token_base_url` the token endpoint. In tests and the demo all three are the fake's URL.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        api_base_url: str = DEFAULT_API_BASE_URL,
        authorize_base_url: str = DEFAULT_AUTHORIZE_BASE_URL,
        token_base_url: str = DEFAULT_TOKEN_BASE_URL,
        audience: str | None = None,
        scopes: Sequence[str] = DEFAULT_SCOPES,
        timeout: float = 10.0,
        clock: Clock = utc_now,
    ) -> None:
        if not (client_id and client_secret and redirect_uri):
            raise ValueError("a Tesla client id, client secret and redirect URI are required")
        self._client_id = client_id
        self._client_secret = client_secret
        self._redirect_uri = redirect_uri
        self._api_base_url = api_base_url.rstrip("/")
        self._authorize_url = authorize_base_url.rstrip("/") + "/oauth2/v3/authorize"
        self._token_url = token_base_url.rstrip("/") + "/oauth2/v3/token"
        self._audience = audience or self._api_base_url
        self._scopes = " ".join(scopes)
        self._clock = clock
        # A poll is waiting on these calls: fail fast (connect quickly or not at all) and let the caller decide.
        timeouts = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        # httpx's requests and responses over a lean HTTP/1.1 keep-alive transport: the read path's cost (http1.py).
        self._transport = KeepAliveTransport()
        self._extensions = {"timeout": timeouts.as_dict()}

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
        await self._transport.aclose()

    # -- consent -----------------------------------------------------------------------------

    def authorization_url(self, *, state: str, code_challenge: str, login_hint: str | None = None) -> str:
        """Tesla's consent page for this driver: our scopes, `state`, and the PKCE S256 challenge."""
        params = {
            "response_type": "code",
            "client_id": self._client_id,
            "redirect_uri": self._redirect_uri,
            "scope": self._scopes,
            "state": state,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
            # Ask again for any scope the driver has not granted yet instead of failing later on a 403.
            "prompt_missing_scopes": "true",
        }
        if login_hint:
            params["login_hint"] = login_hint
        return f"{self._authorize_url}?{urlencode(params, quote_via=quote)}"

    def start_authorization(self, *, login_hint: str | None = None) -> AuthorizationStart:
        """A fresh state and PKCE verifier, and the URL carrying the state and the verifier's challenge."""
        state = new_state()
        verifier = new_code_verifier()
        url = self.authorization_url(state=state, code_challenge=code_challenge(verifier), login_hint=login_hint)
        return AuthorizationStart(url=url, state=state, code_verifier=verifier)

    async def exchange_code(self, code: str, code_verifier: str) -> OAuthTokens:
        """Trade the callback's code (with the verifier kept since `start_authorization`) for tokens.

        Raises AuthorizationRefused when Tesla refuses the code (expired, reused, wrong verifier, other
        redirect URI) or grants no refresh token (offline_access declined).
        """
        tokens = await self._token(
            {
                "grant_type": "authorization_code",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
                "code": code,
                "code_verifier": code_verifier,
                "redirect_uri": self._redirect_uri,
                "audience": self._audience,
            },
            refreshing=False,
        )
        if not tokens.refresh_token:
            raise AuthorizationRefused("Tesla granted no refresh token: the offline_access scope was not granted")
        return tokens

    async def refresh(self, refresh_token: str) -> OAuthTokens:
        """New tokens for a connection. The refresh token passed in is dead afterwards: keep the returned one.

        Raises TokenExpired when Tesla refuses the refresh token (revoked by the driver, expired after three
        months unused, or already used).
        """
        return await self._token(
            {"grant_type": "refresh_token", "client_id": self._client_id, "refresh_token": refresh_token},
            refreshing=True,
            previous_refresh_token=refresh_token,
        )

    # -- vehicles ----------------------------------------------------------------------------

    async def list_vehicles(self, access_token: str) -> list[TeslaVehicle]:
        """Every vehicle on the account. Does not wake any of them."""
        vehicles: list[TeslaVehicle] = []
        for page in range(1, _MAX_VEHICLE_PAGES + 1):
            body = await self._api(
                "GET",
                "/api/1/vehicles",
                access_token,
                "list vehicles",
                params={"page": str(page), "per_page": str(_VEHICLE_PAGE_SIZE)},
                whole_body=True,
            )
            items = body.get("response") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise VehicleUnavailable("Tesla list vehicles: the answer has no vehicle list")
            vehicles.extend(_vehicle(item) for item in items if isinstance(item, dict))
            pagination = body.get("pagination")
            if not isinstance(pagination, dict) or not pagination.get("next"):
                break
        return vehicles

    async def vehicle_data(self, access_token: str, vehicle_id: str) -> VehicleReading:
        """One read of charge state, drive state and position. A sleeping car answers 408: VehicleAsleep."""
        data = await self._api(
            "GET",
            f"/api/1/vehicles/{quote(vehicle_id, safe='')}/vehicle_data{_READING_QUERY}",
            access_token,
            "vehicle data",
        )
        if not isinstance(data, dict):
            raise VehicleUnavailable("Tesla vehicle data: the answer has no vehicle")
        return reading_from_vehicle_data(data, vehicle_id=vehicle_id, read_at=self._clock())

    async def wake_up(self, access_token: str, vehicle_id: str) -> str:
        """Ask the car to wake; returns the state Tesla reports right after ("online" once awake, usually
        "asleep" for a few more seconds)."""
        data = await self._api(
            "POST", f"/api/1/vehicles/{quote(vehicle_id, safe='')}/wake_up", access_token, "wake up", json_body={}
        )
        state = data.get("state") if isinstance(data, dict) else None
        return state if isinstance(state, str) else ""

    async def configure_telemetry(self, access_token: str, vin: str, *, hostname: str) -> bool:
        """Ask the car to stream Fleet Telemetry to our server at `hostname` (the fields the sessions service uses,
        sent on change and at most every `_TELEMETRY_INTERVAL_S`). True when Tesla updated the vehicle."""
        fields = {name: {"interval_seconds": _TELEMETRY_INTERVAL_S} for name in TELEMETRY_FIELDS}
        config = {"hostname": hostname, "port": 443, "fields": fields, "alert_types": ["service"]}
        data = await self._api(
            "POST",
            "/api/1/vehicles/fleet_telemetry_config",
            access_token,
            "fleet telemetry config",
            json_body={"vins": [vin], "config": config},
        )
        updated = data.get("updated_vehicles") if isinstance(data, dict) else None
        return isinstance(updated, int) and updated > 0

    def reader(self, credentials: Credentials, *, margin: timedelta = DEFAULT_REFRESH_MARGIN) -> TeslaVehicleReader:
        """A VehicleReader for one driver's connection (cheap: it shares this client's connections)."""
        return TeslaVehicleReader(self, credentials, clock=self._clock, margin=margin)

    # -- the boundary ------------------------------------------------------------------------

    async def _api(
        self,
        method: str,
        path: str,
        access_token: str,
        operation: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
        whole_body: bool = False,
    ) -> Any:
        """One Fleet API call; returns its `response` member (or the whole body). Raises only VehicleApiError."""
        response = await self._send(
            operation,
            method,
            self._api_base_url + path,
            params=params,
            json=json_body,
            headers={"Authorization": f"Bearer {access_token}"},
        )
        body = _json(response)
        if response.status_code == 200:
            if not isinstance(body, dict) or "response" not in body:
                raise VehicleUnavailable(f"Tesla {operation}: the answer is not Fleet API JSON", http_status=200)
            return body if whole_body else body["response"]
        raise self._api_error(operation, response, body)

    async def _token(
        self, form: Mapping[str, str], *, refreshing: bool, previous_refresh_token: str = ""
    ) -> OAuthTokens:
        operation = "token refresh" if refreshing else "code exchange"
        response = await self._send(operation, "POST", self._token_url, data=form)
        body = _json(response)
        if response.status_code != 200:
            raise self._token_error(operation, response, body, refreshing=refreshing)
        if not isinstance(body, dict):
            raise VehicleUnavailable(f"Tesla {operation}: the answer is not JSON", http_status=200)
        access_token = body.get("access_token")
        expires_in = _number(body.get("expires_in"))
        if not isinstance(access_token, str) or not access_token or expires_in is None:
            raise VehicleUnavailable(f"Tesla {operation}: the answer has no access token", http_status=200)
        refresh_token = body.get("refresh_token")
        scope = body.get("scope")
        return OAuthTokens(
            access_token=access_token,
            # Tesla always rotates; should an answer ever omit it, the old one is still the one to keep.
            refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else previous_refresh_token,
            expires_at=self._clock() + timedelta(seconds=expires_in),
            scope=scope if isinstance(scope, str) else "",
            account_id=account_id_from_id_token(body.get("id_token")),
        )

    async def _send(self, operation: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            # Straight to the transport, without httpx's client: Tesla's endpoints neither redirect nor need cookies,
            # and the client's redirect, auth and cookie handling cost about as much CPU as the exchange itself on
            # the read path (bench-poll's profile: the cookie jar alone a twentieth of a fresh poll).
            request = httpx.Request(method, url, extensions=self._extensions, **kwargs)
            request.headers.setdefault("Accept", "application/json")
            response = await self._transport.handle_async_request(request)
            await response.aread()
            return response
        except httpx.TimeoutException as exc:
            raise VehicleUnavailable(f"Tesla {operation} timed out") from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            # Refused or reset connections, a broken answer: the next attempt may reach a healthy host.
            raise VehicleUnavailable(f"Tesla {operation} unreachable: {exc!r}") from exc
        except httpx.HTTPError as exc:
            # Bad URL, proxy or protocol configuration: repeats identically.
            raise VehicleApiRefused(f"Tesla {operation} could not be sent: {exc!r}") from exc

    def _api_error(self, operation: str, response: httpx.Response, body: object) -> VehicleApiError:
        status = response.status_code
        code = _error_code(body)
        message = f"Tesla {operation}: HTTP {status} {code or ''}".rstrip()
        if status == 401:
            return AccessTokenRejected(message, http_status=status, provider_code=code)
        if status == 404:
            return VehicleNotFound(message, http_status=status, provider_code=code)
        if status == 408:
            return VehicleAsleep(message, http_status=status, provider_code=code)
        if status == 429:
            return RateLimited(
                message,
                retry_after_s=retry_after_s(response.headers, self._clock()),
                http_status=status,
                provider_code=code,
            )
        if status >= 500:
            return VehicleUnavailable(message, http_status=status, provider_code=code)
        # 403 missing scopes, 400 bad request, 412 application not registered in the region, …
        return VehicleApiRefused(message, http_status=status, provider_code=code)

    def _token_error(
        self, operation: str, response: httpx.Response, body: object, *, refreshing: bool
    ) -> VehicleApiError:
        status = response.status_code
        code = _error_code(body)
        message = f"Tesla {operation}: HTTP {status} {code or ''}".rstrip()
        if status == 429:
            return RateLimited(
                message,
                retry_after_s=retry_after_s(response.headers, self._clock()),
                http_status=status,
                provider_code=code,
            )
        if status >= 500:
            return VehicleUnavailable(message, http_status=status, provider_code=code)
        if code in _CLIENT_ERRORS or status not in (400, 401, 403):
            _log.error("Tesla refused our client credentials", extra={"status": status, "error": code})
            return VehicleApiRefused(message, http_status=status, provider_code=code)
        if refreshing:
            return TokenExpired(message, http_status=status, provider_code=code)
        return AuthorizationRefused(message, http_status=status, provider_code=code)


class TeslaVehicleReader:
    """VehicleReader over the Fleet API for one driver's connection; tokens kept fresh by a TokenKeeper."""

    def __init__(
        self,
        client: TeslaFleetClient,
        credentials: Credentials,
        *,
        clock: Clock = utc_now,
        margin: timedelta = DEFAULT_REFRESH_MARGIN,
    ) -> None:
        self._client = client
        self._keeper = TokenKeeper(credentials, client, clock=clock, margin=margin)

    async def read(self, vehicle_id: str) -> VehicleReading:
        return await self._keeper.call(lambda token: self._client.vehicle_data(token, vehicle_id))

    async def wake(self, vehicle_id: str) -> bool:
        state = await self._keeper.call(lambda token: self._client.wake_up(token, vehicle_id))
        return state == "online"

    async def vehicles(self) -> list[TeslaVehicle]:
        return await self._keeper.call(self._client.list_vehicles)

    async def configure_telemetry(self, vin: str, *, hostname: str) -> bool:
        return await self._keeper.call(lambda token: self._client.configure_telemetry(token, vin, hostname=hostname))


# -- JSON → our types ------------------------------------------------------------------------------


def reading_from_vehicle_data(data: Mapping[str, Any], *, vehicle_id: str, read_at: datetime) -> VehicleReading:
    """Turn vehicle_data's `response` object into a reading. Missing or malformed fields become None."""
    charge = data.get("charge_state")
    if not isinstance(charge, dict):
        raise VehicleUnavailable("Tesla vehicle data: no charge_state in the answer")
    drive = data.get("drive_state")
    drive = drive if isinstance(drive, dict) else {}
    state = charge.get("charging_state")
    charging_state = state if isinstance(state, str) else ""
    plugged_in = None if not charging_state else charging_state != "Disconnected"
    minutes = _number(charge.get("minutes_to_full_charge"))
    if minutes is None:
        hours = _number(charge.get("time_to_full_charge"))
        minutes = hours * 60 if hours is not None else None
    lat = _number(drive.get("latitude"))
    lng = _number(drive.get("longitude"))
    if lat is None or lng is None or not (-90 <= lat <= 90 and -180 <= lng <= 180):
        lat = lng = None
    battery = _number(charge.get("battery_level"))
    shift = drive.get("shift_state")
    return VehicleReading(
        vehicle_id=vehicle_id,
        read_at=read_at,
        charging_state=charging_state,
        charging=charging_state in CHARGING_STATES,
        plugged_in=plugged_in,
        battery_pct=round(battery) if battery is not None else None,
        kwh_added=_number(charge.get("charge_energy_added")),
        power_kw=_number(charge.get("charger_power")),
        minutes_to_full=math.floor(minutes) if minutes is not None and minutes >= 0 else None,
        lat=lat,
        lng=lng,
        connector=_connector(charge) if plugged_in else "",
        shift_state=shift if isinstance(shift, str) else None,
    )


def _connector(charge: Mapping[str, Any]) -> str:
    fast_type = _text(charge.get("fast_charger_type"))
    if charge.get("fast_charger_present") is True and fast_type:
        return _DC_CONNECTORS.get(fast_type, fast_type)
    if fast_type == _TESLA_AC_CHARGER:
        return "NACS"
    cable = _text(charge.get("conn_charge_cable"))
    return _AC_CABLES.get(cable, cable)


def _vehicle(item: Mapping[str, Any]) -> TeslaVehicle:
    raw_id = item.get("id_s") or item.get("id")
    vin = _text(item.get("vin"))
    state = item.get("state")
    return TeslaVehicle(
        id=str(raw_id) if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else "",
        vin=vin,
        display_name=_text(item.get("display_name")),
        model=_VIN_MODELS.get(vin[3:4], "") if len(vin) == 17 else "",
        year=_model_year(vin),
        color=_text(item.get("color")),
        state=state if isinstance(state, str) else "",
    )


def _model_year(vin: str) -> int | None:
    if len(vin) != 17:
        return None
    index = _VIN_YEAR_CODES.find(vin[9])
    return 2010 + index if index >= 0 else None


def _text(value: object) -> str:
    return value if isinstance(value, str) and value != _INVALID else ""


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
    if not isinstance(body, dict):
        return None
    code = body.get("error")
    return code if isinstance(code, str) else None
