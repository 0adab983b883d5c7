"""A local vehicle fleet that speaks the Tesla Fleet API and Smartcar over real HTTP on 127.0.0.1.

Tests point the production adapters (services/sessions/adapters/tesla.py and smartcar.py, httpx underneath)
at `base_url`, so consent, token exchange and rotation, vehicle reads, sleep, rate limits and webhooks are the
real wire formats end to end. The `make run` demo runs it as a process (`python -m fakes.fleet serve`) and
drives its cars from the command line (`python -m fakes.fleet plug-in …`, see `main`).

Tesla (paths as on auth.tesla.com / fleet-auth / fleet-api):
  GET  /oauth2/v3/authorize     consent: redirects to redirect_uri?code&state&issuer (or ?error=access_denied);
                                PKCE S256 challenge recorded with the code
  POST /oauth2/v3/token         authorization_code (client secret, audience, redirect URI and the PKCE verifier
                                checked; codes single use, 10 min) and refresh_token (single use: every refresh
                                rotates it; a used, revoked or expired one is 400 invalid_grant)
  GET  /api/1/vehicles          the account's vehicles, paginated; never wakes a car
  GET  /api/1/vehicles/{tag}/vehicle_data?endpoints=charge_state;drive_state;location_data
                                408 while the car sleeps; position only with location_data and the
                                vehicle_location scope
  POST /api/1/vehicles/{tag}/wake_up
  401 for a missing, unknown, expired or revoked access token; 403 without vehicle_device_data; 404 for a car
  not on the account; 429 with Retry-After while a scripted rate limit lasts; scripted 5xx.

Smartcar (auth.smartcar.com / connect.smartcar.com / api.smartcar.com):
  GET  /oauth/authorize, POST /oauth/token (client credentials in Basic auth; refresh tokens rotate)
  GET  /v2.0/user, /v2.0/vehicles, /v2.0/vehicles/{id}, …/charge, …/battery, …/location
  errors in Smartcar's JSON (type, code, statusCode, resolution): 401 AUTHENTICATION, 403 PERMISSION,
  409 VEHICLE_STATE:ASLEEP, 429 RATE_LIMIT:VEHICLE with retry-after
  webhooks: VEHICLE_STATE and VERIFY events (payload version 4.0) signed with SC-Signature = hex
  HMAC-SHA256(application management token, body), POSTed by `send_smartcar_event` / `send_smartcar_verify`,
  or automatically on every charging change of a Smartcar car when `smartcar_webhook_url` is set.

Cars are scripted from Python (`FakeVehicle` methods: plug_in, start_charging, stop_charging, unplug, sleep,
wake, move, set_battery, force_state, set_rate_limit, fail_next) and from the control API under /_fake/ that
the CLI uses. Time is a simulation clock (`now`, `advance`): nothing sleeps; `advance(minutes)` charges every
plugged-in car at its power, tapering above 80 % and stopping at the charge limit ("Complete").

Every request to a vehicle endpoint is counted per car and endpoint (`calls`), whatever its answer.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import hmac
import json
import math
import os
import secrets
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

from fakes.http1 import MalformedRequest, Request, read_request, reason_phrase

TESLA: Final = "tesla"
SMARTCAR: Final = "smartcar"

TESLA_ACCESS_TTL: Final = timedelta(hours=8)  # Tesla answers expires_in 28800
TESLA_REFRESH_TTL: Final = timedelta(days=90)  # "expires after 3 months"
SMARTCAR_ACCESS_TTL: Final = timedelta(hours=2)
SMARTCAR_REFRESH_TTL: Final = timedelta(days=60)
CODE_TTL: Final = timedelta(minutes=10)

TESLA_SCOPES: Final = frozenset(
    {
        "openid",
        "offline_access",
        "user_data",
        "vehicle_device_data",
        "vehicle_location",
        "vehicle_cmds",
        "vehicle_charging_cmds",
        "energy_device_data",
        "energy_cmds",
    }
)
SMARTCAR_SCOPES: Final = frozenset(
    {"read_vehicle_info", "read_battery", "read_charge", "read_location", "read_odometer", "read_vin"}
)

# The Smartcar vehicle endpoints served, and the permission each needs.
_SMARTCAR_ENDPOINT_SCOPES: Final[Mapping[str, str]] = {
    "attributes": "read_vehicle_info",
    "charge": "read_charge",
    "battery": "read_battery",
    "location": "read_location",
}

# Connector names a script uses (those of the chargers catalog) → what a Tesla reports while on it.
CONNECTORS: Final = ("NACS", "CCS1", "CHADEMO", "J1772", "Type2")
_AC_MAX_KW: Final = 22.0  # above this a charger is DC
_TESLA_DC_TYPES: Final[Mapping[str, str]] = {"NACS": "Supercharger", "CCS1": "CCS", "CHADEMO": "CHAdeMO"}
_TESLA_AC_CABLES: Final[Mapping[str, str]] = {"NACS": "SAE", "J1772": "SAE", "Type2": "IEC"}
_INVALID: Final = "<invalid>"

TAPER_FROM_PCT: Final = 80.0  # charging power falls linearly from here …
TAPER_FLOOR: Final = 0.1  # … to this fraction of the charger's power at 100 %
_MILES_PER_KWH: Final = 4.0
_MAX_BODY_BYTES: Final = 64 * 1024
_MAX_ESTIMATE_MIN: Final = 48 * 60

JsonObject = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ReceivedRequest:
    """One request as it arrived, for tests that assert on the wire format."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # names lower-cased
    form: Mapping[str, str]  # form or JSON body fields (strings), for POSTs


@dataclasses.dataclass(frozen=True)
class _Response:
    status: int
    body: object = None  # JSON, or bytes sent as they are
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json; charset=utf-8"


@dataclasses.dataclass
class _Account:
    provider: str
    account_id: str
    email: str
    vehicles: list[FakeVehicle] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Code:
    account: _Account
    scope: frozenset[str]
    redirect_uri: str
    code_challenge: str | None
    expires_at: datetime
    used: bool = False


@dataclasses.dataclass
class _Token:
    account: _Account
    scope: frozenset[str]
    expires_at: datetime
    revoked: bool = False


class FakeVehicle:
    """One simulated car. Script it with the methods below; the fake's endpoints read its state."""

    def __init__(
        self,
        fleet: FakeFleet,
        account: _Account,
        *,
        vehicle_id: str,
        vin: str,
        display_name: str,
        battery_pct: float,
        capacity_kwh: float,
        charge_limit_pct: int,
        lat: float,
        lng: float,
        make: str,
        model: str,
        year: int,
    ) -> None:
        self._fleet = fleet
        self.account = account
        self.provider = account.provider
        self.id = vehicle_id
        # Tesla cars carry a second integer id ("vehicle_id") used by streaming; Smartcar ids are UUIDs.
        self.tesla_vehicle_id = secrets.randbelow(10**12) + 10**12
        self.vin = vin
        self.display_name = display_name
        self.make = make
        self.model = model
        self.year = year
        self.capacity_kwh = capacity_kwh
        self.charge_limit_pct = charge_limit_pct
        self.battery_pct = float(battery_pct)
        self.lat = lat
        self.lng = lng
        self.shift_state: str | None = None
        self.charging_state = "Disconnected"
        self.connector: str | None = None
        self.charger_power_kw = 0.0  # what the charger offers
        self.energy_added_kwh = 0.0
        self.asleep = False
        self.wakes_on_request = True  # False: wake_up is answered but the car stays asleep
        self.telemetry_streaming = False  # Tesla: fleet_telemetry_config was accepted for this car
        self.calls: Counter[str] = Counter()
        self._rate_limited_until: datetime | None = None
        self._failures: list[int] = []

    def __repr__(self) -> str:
        return f"FakeVehicle({self.provider} {self.id} {self.charging_state} {self.battery_pct:.1f}%)"

    # -- scripting ---------------------------------------------------------------------------

    def plug_in(
        self,
        lat: float | None = None,
        lng: float | None = None,
        *,
        connector: str = "NACS",
        power_kw: float = 11.0,
        charging: bool = True,
    ) -> Self:
        """Park at (lat, lng) and plug into a `connector` charger offering `power_kw`; the car wakes and, when
        `charging` and below its limit, reports "Starting" (then "Charging" once time passes), else "Stopped".
        The energy counter restarts, as a Tesla's charge_energy_added does at every plug-in."""
        if connector not in CONNECTORS:
            raise ValueError(f"unknown connector {connector!r}; one of {CONNECTORS}")
        if power_kw <= 0:
            raise ValueError("a charger offers a positive power")
        if lat is not None and lng is not None:
            self.lat, self.lng = lat, lng
        self.shift_state = "P"
        self.connector = connector
        self.charger_power_kw = float(power_kw)
        self.energy_added_kwh = 0.0
        self.asleep = False
        self.charging_state = "Stopped"
        if charging:
            self.start_charging()
        else:
            self._fleet._changed(self)
        return self

    def start_charging(self) -> Self:
        if self.connector is None:
            raise ValueError("the car is not plugged in")
        self.asleep = False
        self.charging_state = "Complete" if self.battery_pct >= self.charge_limit_pct else "Starting"
        self._fleet._changed(self)
        return self

    def stop_charging(self) -> Self:
        if self.connector is None:
            raise ValueError("the car is not plugged in")
        self.charging_state = "Stopped"
        self._fleet._changed(self)
        return self

    def unplug(self) -> Self:
        """Unplug: "Disconnected". charge_energy_added keeps its value until the next plug-in, as on a Tesla."""
        self.connector = None
        self.charger_power_kw = 0.0
        self.charging_state = "Disconnected"
        self._fleet._changed(self)
        return self

    def sleep(self) -> Self:
        self.asleep = True
        return self

    def wake(self) -> Self:
        self.asleep = False
        return self

    def go_offline(self) -> Self:
        """The car stops answering (no connectivity, a parking garage): every read is 408 and waking fails, while
        whatever it was doing (charging) goes on."""
        self.asleep = True
        self.wakes_on_request = False
        return self

    def move(self, lat: float, lng: float) -> Self:
        """Drive to (lat, lng) and park there (unplugged first if needed)."""
        if self.connector is not None:
            self.unplug()
        self.lat, self.lng = lat, lng
        self.shift_state = "P"
        self.asleep = False
        return self

    def set_battery(self, pct: float) -> Self:
        if not 0 <= pct <= 100:
            raise ValueError("battery is 0-100 %")
        self.battery_pct = float(pct)
        return self

    def force_state(self, charging_state: str) -> Self:
        """Report this charging_state verbatim (e.g. "NoPower"), whatever the simulation says."""
        self.charging_state = charging_state
        if charging_state == "Disconnected":
            self.connector = None
            self.charger_power_kw = 0.0
        elif self.connector is None:
            self.connector = "NACS"
        self._fleet._changed(self)
        return self

    def set_rate_limit(self, retry_after_s: float) -> Self:
        """Answer 429 with Retry-After to every call for this car until `retry_after_s` simulated seconds pass."""
        self._rate_limited_until = self._fleet.now + timedelta(seconds=retry_after_s)
        return self

    def clear_rate_limit(self) -> Self:
        self._rate_limited_until = None
        return self

    def fail_next(self, status: int = 503, times: int = 1) -> Self:
        """Answer the next `times` calls for this car with HTTP `status` (an outage, a gateway timeout)."""
        self._failures.extend([status] * times)
        return self

    # -- derived state -----------------------------------------------------------------------

    @property
    def charging(self) -> bool:
        return self.charging_state in ("Charging", "Starting")

    @property
    def plugged_in(self) -> bool:
        return self.charging_state != "Disconnected"

    @property
    def is_dc(self) -> bool:
        return self.charger_power_kw > _AC_MAX_KW

    @property
    def power_kw(self) -> float:
        """Power flowing into the battery now."""
        return self._power_at(self.battery_pct) if self.charging else 0.0

    @property
    def minutes_to_full(self) -> int:
        """The car's estimate of minutes to reach its charge limit at the current power (0 when not charging)."""
        if not self.charging:
            return 0
        soc, minutes = self.battery_pct, 0
        while soc < self.charge_limit_pct and minutes < _MAX_ESTIMATE_MIN:
            soc += self._power_at(soc) / 60 / self.capacity_kwh * 100
            minutes += 1
        return minutes

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def rate_limited_for_s(self) -> float:
        if self._rate_limited_until is None:
            return 0.0
        return max(0.0, (self._rate_limited_until - self._fleet.now).total_seconds())

    def _power_at(self, soc: float) -> float:
        factor = 1.0
        if soc > TAPER_FROM_PCT:
            factor = max(TAPER_FLOOR, (100.0 - soc) / (100.0 - TAPER_FROM_PCT))
        return self.charger_power_kw * factor

    def _step(self, minutes: float) -> None:
        """Charge for `minutes` of simulated time, one minute at a time."""
        if not self.charging or minutes <= 0:
            return
        if self.wakes_on_request:
            self.asleep = False  # a charging car stays awake (unless it went offline: it charges on, unheard)
        if self.charging_state == "Starting":
            self.charging_state = "Charging"
        remaining = minutes
        while remaining > 0:
            dt = min(1.0, remaining)
            remaining -= dt
            energy = self._power_at(self.battery_pct) * dt / 60
            room = (self.charge_limit_pct - self.battery_pct) / 100 * self.capacity_kwh
            if energy >= room:
                self.energy_added_kwh += max(0.0, room)
                self.battery_pct = float(self.charge_limit_pct)
                self.charging_state = "Complete"
                self._fleet._changed(self)
                return
            self.energy_added_kwh += energy
            self.battery_pct += energy / self.capacity_kwh * 100

    def snapshot(self) -> JsonObject:
        """The car's state as the control API and the CLI show it."""
        return {
            "id": self.id,
            "provider": self.provider,
            "owner": self.account.email,
            "vin": self.vin,
            "display_name": self.display_name,
            "charging_state": self.charging_state,
            "charging": self.charging,
            "asleep": self.asleep,
            "battery_pct": round(self.battery_pct, 2),
            "energy_added_kwh": round(self.energy_added_kwh, 3),
            "power_kw": round(self.power_kw, 2),
            "minutes_to_full": self.minutes_to_full,
            "connector": self.connector,
            "lat": self.lat,
            "lng": self.lng,
            "rate_limited_for_s": self.rate_limited_for_s,
            "calls": dict(self.calls),
        }

    # -- Tesla wire format -------------------------------------------------------------------

    def _tesla_vehicle(self) -> JsonObject:
        return {
            "id": int(self.id),
            "user_id": uuid.UUID(self.account.account_id).int % 10**12,
            "vehicle_id": self.tesla_vehicle_id,
            "vin": self.vin,
            "color": None,
            "access_type": "OWNER",
            "display_name": self.display_name,
            "option_codes": None,
            "granular_access": {"hide_private": False},
            "tokens": [secrets.token_hex(8), secrets.token_hex(8)],
            "state": "asleep" if self.asleep else "online",
            "in_service": False,
            "id_s": self.id,
            "calendar_enabled": True,
            "api_version": 81,
            "backseat_token": None,
            "backseat_token_updated_at": None,
        }

    def _tesla_charge_state(self, now_ms: int) -> JsonObject:
        power = self.power_kw
        dc = self.is_dc
        voltage = 0
        if self.charging:
            voltage = 400 if dc else 240
        connector = self.connector
        fast_type = _INVALID
        cable = _INVALID
        if connector is not None:
            if dc:
                fast_type = _TESLA_DC_TYPES.get(connector, connector)
            elif connector == "NACS":
                fast_type = "ACSingleWireCAN"
            cable = _TESLA_AC_CABLES.get(connector, _INVALID) if not dc else "SAE"
        minutes = self.minutes_to_full
        return {
            "battery_heater_on": False,
            "battery_level": round(self.battery_pct),
            "battery_range": round(self.battery_pct / 100 * self.capacity_kwh * _MILES_PER_KWH, 2),
            "charge_amps": 48 if self.plugged_in and not dc else 0,
            "charge_energy_added": round(self.energy_added_kwh, 2),
            "charge_limit_soc": self.charge_limit_pct,
            "charge_port_door_open": self.plugged_in,
            "charge_port_latch": "Engaged" if self.plugged_in else "Disengaged",
            "charge_rate": round(power * _MILES_PER_KWH, 1),
            "charger_actual_current": round(power * 1000 / voltage) if voltage else 0,
            "charger_phases": 1 if self.charging and not dc else None,
            "charger_power": round(power),
            "charger_voltage": voltage,
            "charging_state": self.charging_state,
            "conn_charge_cable": cable,
            "fast_charger_brand": "Tesla" if dc and connector == "NACS" else _INVALID,
            "fast_charger_present": bool(connector is not None and dc),
            "fast_charger_type": fast_type,
            "minutes_to_full_charge": minutes,
            "time_to_full_charge": round(minutes / 60, 2),
            "timestamp": now_ms,
            "usable_battery_level": round(self.battery_pct),
        }

    def _tesla_drive_state(self, now_ms: int, *, with_location: bool) -> JsonObject:
        drive: JsonObject = {
            "power": 0,
            "shift_state": self.shift_state,
            "speed": None,
            "timestamp": now_ms,
        }
        if with_location:
            drive.update(
                {
                    "gps_as_of": now_ms // 1000,
                    "heading": 90,
                    "latitude": self.lat,
                    "longitude": self.lng,
                    "native_latitude": self.lat,
                    "native_location_supported": 1,
                    "native_longitude": self.lng,
                    "native_type": "wgs",
                }
            )
        return drive

    # -- Smartcar wire format ----------------------------------------------------------------

    def _smartcar_charge(self) -> JsonObject:
        if self.charging:
            state = "CHARGING"
        elif self.charging_state == "Complete":
            state = "FULLY_CHARGED"
        else:
            state = "NOT_CHARGING"
        return {"isPluggedIn": self.plugged_in, "state": state}

    def _smartcar_battery(self) -> JsonObject:
        return {
            "percentRemaining": round(self.battery_pct / 100, 4),
            "range": round(self.battery_pct / 100 * self.capacity_kwh * _MILES_PER_KWH * 1.609, 1),
        }

    def _smartcar_signals(self) -> list[JsonObject]:
        def signal(code: str, body: JsonObject) -> JsonObject:
            group, _, name = code.partition("-")
            return {"code": code, "name": name, "group": group, "body": body}

        return [
            signal("charge-ischarging", {"value": self.charging}),
            signal("charge-ischargingcableconnected", {"value": self.plugged_in}),
            signal("tractionbattery-stateofcharge", {"unit": "percent", "value": round(self.battery_pct, 1)}),
            signal("charge-energyadded", {"unit": "kWh", "value": round(self.energy_added_kwh, 2)}),
            signal("charge-wattage", {"unit": "kW", "value": round(self.power_kw, 2)}),
            signal("charge-timetocomplete", {"unit": "minutes", "value": self.minutes_to_full}),
            signal(
                "location-preciselocation",
                {
                    "latitude": self.lat,
                    "longitude": self.lng,
                    "heading": 90,
                    "direction": "E",
                    "locationType": "CURRENT",
                },
            ),
        ]


class FakeFleet:
    """Async context manager serving the fake Tesla Fleet API and Smartcar on one loopback port.

    Setup: `add_tesla_vehicle(owner_email, …)` / `add_smartcar_vehicle(owner_email, …)` (accounts are made on
    first use). Consent goes to the account named by `login_hint` (Tesla), else the one set with `login_as`,
    else the provider's only account.

    Knobs: `advance(minutes)` (the simulation clock; charges every plugged-in car), `login_as(email)`,
    `deny_next_consent()`, `revoke(email)` (the driver withdrew our access: every token of the account dies),
    `expire_access_tokens()`, `fail_next_token_request(status, error)`, `response_delay` (real seconds before
    every answer, to drive client timeouts), `smartcar_webhook_url`.
    Reads: `vehicle(id)`, `calls(vehicle_id, endpoint=None)`, `requests` / `requests_to(method, path)`.
    """

    def __init__(
        self,
        *,
        tesla_client_id: str | None = None,
        tesla_client_secret: str | None = None,
        smartcar_client_id: str | None = None,
        smartcar_client_secret: str | None = None,
        smartcar_management_token: str | None = None,
        smartcar_webhook_url: str | None = None,
        telemetry_url: str | None = None,
        telemetry_secret: str | None = None,
        start: datetime | None = None,
        port: int = 0,
    ) -> None:
        self.tesla_client_id = tesla_client_id or str(uuid.uuid4())
        self.tesla_client_secret = tesla_client_secret or "ta-secret." + secrets.token_urlsafe(24)
        self.smartcar_client_id = smartcar_client_id or str(uuid.uuid4())
        self.smartcar_client_secret = smartcar_client_secret or str(uuid.uuid4())
        self.smartcar_management_token = smartcar_management_token or str(uuid.uuid4())
        self.smartcar_webhook_url = smartcar_webhook_url
        # Fleet Telemetry: where a configured Tesla streams its records, signed (X-Telemetry-Signature) with this.
        self.telemetry_url = telemetry_url
        self.telemetry_secret = telemetry_secret or "fleet-telemetry." + secrets.token_urlsafe(16)
        self.telemetry_deliveries: list[httpx.Response] = []
        self.now = (start or datetime.now(UTC)).replace(microsecond=0)
        self.response_delay = 0.0
        self.requests: list[ReceivedRequest] = []
        self.list_calls: Counter[str] = Counter()  # vehicle-list requests, by provider
        self.webhook_deliveries: list[httpx.Response] = []
        self._port = port
        self._accounts: dict[tuple[str, str], _Account] = {}
        self._vehicles: dict[str, FakeVehicle] = {}
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        self._used_refresh: set[str] = set()
        self._standing_refresh: dict[tuple[str, str], _Account] = {}
        self._login_as: dict[str, str] = {}
        self._deny_next: dict[str, str] = {}
        self._token_failures: list[tuple[int, str]] = []
        self._id_token_key = secrets.token_bytes(32)
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._webhook_client: httpx.AsyncClient | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve_connection, "127.0.0.1", self._port)
        self._webhook_client = httpx.AsyncClient(timeout=5.0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._webhook_client is not None:
            await self._webhook_client.aclose()
            self._webhook_client = None
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        # Python 3.11's wait_closed does not wait for open connections. Closing them lets idle keep-alive
        # handlers see the end of the stream and finish; one still sleeping in `response_delay` is cancelled,
        # so no task outlives the fake.
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
            raise RuntimeError("FakeFleet is not running; use it as `async with`")
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    # -- the world ---------------------------------------------------------------------------

    def add_tesla_vehicle(
        self,
        owner_email: str = "driver@example.com",
        *,
        vehicle_id: str | None = None,
        vin: str | None = None,
        display_name: str = "Tessy",
        model: str = "Model 3",
        year: int = 2023,
        battery_pct: float = 50.0,
        capacity_kwh: float = 75.0,
        charge_limit_pct: int = 80,
        lat: float = 30.2672,
        lng: float = -97.7431,
    ) -> FakeVehicle:
        """A Tesla on `owner_email`'s Tesla account (made on first use), parked and unplugged."""
        account = self._account(TESLA, owner_email)
        vehicle_id = vehicle_id or str(3_744_000_000_000_000 + secrets.randbelow(10**12))
        if not vehicle_id.isdigit():
            raise ValueError("Tesla vehicle ids are integers")
        return self._add(
            account,
            vehicle_id=vehicle_id,
            vin=vin or _tesla_vin(model, year),
            display_name=display_name,
            make="TESLA",
            model=model,
            year=year,
            battery_pct=battery_pct,
            capacity_kwh=capacity_kwh,
            charge_limit_pct=charge_limit_pct,
            lat=lat,
            lng=lng,
        )

    def add_smartcar_vehicle(
        self,
        owner_email: str = "driver@example.com",
        *,
        vehicle_id: str | None = None,
        vin: str | None = None,
        make: str = "FORD",
        model: str = "Mustang Mach-E",
        year: int = 2023,
        battery_pct: float = 50.0,
        capacity_kwh: float = 91.0,
        charge_limit_pct: int = 90,
        lat: float = 30.2672,
        lng: float = -97.7431,
    ) -> FakeVehicle:
        """A car shared with us through Smartcar by `owner_email` (a Smartcar user made on first use)."""
        account = self._account(SMARTCAR, owner_email)
        return self._add(
            account,
            vehicle_id=vehicle_id or str(uuid.uuid4()),
            vin=vin or "3FMTK4SX0PM" + f"{secrets.randbelow(10**6):06d}",
            display_name=f"{make.title()} {model}",
            make=make,
            model=model,
            year=year,
            battery_pct=battery_pct,
            capacity_kwh=capacity_kwh,
            charge_limit_pct=charge_limit_pct,
            lat=lat,
            lng=lng,
        )

    def _account(self, provider: str, email: str) -> _Account:
        key = (provider, email.lower())
        account = self._accounts.get(key)
        if account is None:
            account = _Account(provider, str(uuid.uuid4()), email)
            self._accounts[key] = account
        return account

    def _add(self, account: _Account, **fields: Any) -> FakeVehicle:
        if fields["vehicle_id"] in self._vehicles:
            raise ValueError(f"vehicle {fields['vehicle_id']} exists")
        vehicle = FakeVehicle(self, account, **fields)
        account.vehicles.append(vehicle)
        self._vehicles[vehicle.id] = vehicle
        return vehicle

    def vehicle(self, vehicle_id: str) -> FakeVehicle:
        return self._vehicles[vehicle_id]

    @property
    def vehicles(self) -> list[FakeVehicle]:
        return list(self._vehicles.values())

    def account_id(self, provider: str, email: str) -> str:
        """The provider's id of that account holder (Tesla: the id_token's `sub`; Smartcar: /v2.0/user's id)."""
        return self._accounts[(provider, email.lower())].account_id

    def calls(self, vehicle_id: str, endpoint: str | None = None) -> int:
        """Requests made for that car (every answer counts: 200, 401, 408, 429, …), all endpoints or one of
        "vehicle_data", "wake_up", "vehicle" (Tesla) / "charge", "battery", "location", "attributes"."""
        vehicle = self._vehicles[vehicle_id]
        return vehicle.total_calls if endpoint is None else vehicle.calls[endpoint]

    def reset_calls(self) -> None:
        for vehicle in self._vehicles.values():
            vehicle.calls.clear()
        self.list_calls.clear()

    def requests_to(self, method: str, path: str) -> list[ReceivedRequest]:
        return [request for request in self.requests if (request.method, request.path) == (method, path)]

    # -- knobs -------------------------------------------------------------------------------

    def advance(self, minutes: float = 0.0, *, seconds: float = 0.0) -> datetime:
        """Move the simulation clock forward; plugged-in cars charge meanwhile. Returns the new time."""
        total_minutes = minutes + seconds / 60
        if total_minutes < 0:
            raise ValueError("time only moves forward")
        for vehicle in self._vehicles.values():
            vehicle._step(total_minutes)
        self.now += timedelta(minutes=total_minutes)
        return self.now

    def login_as(self, email: str, *, provider: str = TESLA) -> None:
        """The person who signs in at the next consent pages of `provider`."""
        self._login_as[provider] = email.lower()

    def deny_next_consent(self, error: str = "access_denied", *, provider: str = TESLA) -> None:
        """The next person at the consent page declines: the redirect carries ?error=…"""
        self._deny_next[provider] = error

    def revoke(self, email: str, *, provider: str = TESLA) -> None:
        """The driver withdrew our access: every access and refresh token of the account stops working."""
        account = self._accounts[(provider, email.lower())]
        for token in (*self._access.values(), *self._refresh.values()):
            if token.account is account:
                token.revoked = True

    def grant_standing_refresh_token(self, email: str, refresh_token: str, *, provider: str = SMARTCAR) -> None:
        """A refresh token of `email`'s account that never rotates nor expires: what `make run`'s seed stores for
        the demo car, so the demo reads it across restarts of the fake (a demo convenience, no real provider's)."""
        self._standing_refresh[(provider, refresh_token)] = self._account(provider, email)

    def expire_access_tokens(self) -> None:
        """Every access token issued so far expires now (refresh tokens keep working)."""
        for token in self._access.values():
            token.expires_at = min(token.expires_at, self.now)

    def fail_next_token_request(self, status: int = 503, error: str = "server_error") -> None:
        """The next token request (either provider) is answered with that status and OAuth error."""
        self._token_failures.append((status, error))

    # -- webhooks (Smartcar) -----------------------------------------------------------------

    def smartcar_event(self, vehicle_id: str) -> JsonObject:
        """A VEHICLE_STATE event with the car's current signals (payload version 4.0)."""
        vehicle = self._vehicles[vehicle_id]
        if vehicle.provider != SMARTCAR:
            raise ValueError(f"{vehicle_id} is not a Smartcar vehicle")
        return {
            "eventId": str(uuid.uuid4()),
            "eventType": "VEHICLE_STATE",
            "data": {
                "vehicle": {
                    "id": vehicle.id,
                    "make": vehicle.make,
                    "model": vehicle.model,
                    "year": vehicle.year,
                    "vin": vehicle.vin,
                },
                "signals": vehicle._smartcar_signals(),
                "user": {"id": vehicle.account.account_id},
            },
            "triggers": [{"type": "SIGNAL_UPDATED", "signal": {"code": "charge-ischarging"}}],
            "meta": self._webhook_meta(),
        }

    def smartcar_verify_event(self, challenge: str | None = None) -> JsonObject:
        return {
            "eventId": str(uuid.uuid4()),
            "eventType": "VERIFY",
            "data": {"challenge": challenge or secrets.token_hex(16)},
            "meta": self._webhook_meta(),
        }

    def sign_smartcar(self, body: bytes) -> str:
        """SC-Signature for `body`: hex HMAC-SHA256 keyed with the application management token."""
        return hmac.new(self.smartcar_management_token.encode(), body, hashlib.sha256).hexdigest()

    async def post_smartcar_webhook(
        self, url: str, body: bytes, *, signature: str | None, content_type: str = "application/json"
    ) -> httpx.Response:
        """POST `body` as Smartcar's sender does, with `signature` as SC-Signature (None: no header)."""
        if self._webhook_client is None:
            raise RuntimeError("FakeFleet is not running; use it as `async with`")
        headers = {"Content-Type": content_type, "User-Agent": "Smartcar-Webhooks/4.0"}
        if signature is not None:
            headers["SC-Signature"] = signature
        response = await self._webhook_client.post(url, content=body, headers=headers)
        self.webhook_deliveries.append(response)
        return response

    async def send_smartcar_event(self, url: str, vehicle_id: str) -> httpx.Response:
        """Sign and deliver the car's VEHICLE_STATE event."""
        body = json.dumps(self.smartcar_event(vehicle_id)).encode()
        return await self.post_smartcar_webhook(url, body, signature=self.sign_smartcar(body))

    async def send_smartcar_verify(self, url: str) -> tuple[httpx.Response, str]:
        """Deliver a VERIFY event; returns the answer and the challenge hash Smartcar expects back in it."""
        event = self.smartcar_verify_event()
        body = json.dumps(event).encode()
        response = await self.post_smartcar_webhook(url, body, signature=self.sign_smartcar(body))
        expected = hmac.new(
            self.smartcar_management_token.encode(), event["data"]["challenge"].encode(), hashlib.sha256
        ).hexdigest()
        return response, expected

    def _webhook_meta(self) -> JsonObject:
        return {
            "version": "4.0",
            "webhookId": "5a8e5e38-1e12-4011-a36d-56f120053f9e",
            "webhookName": "Nerava charging",
            "deliveryId": str(uuid.uuid4()),
            # Delivery happens in real time (the receiver checks it against its clock), whatever the cars' clock.
            "deliveredAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "mode": "TEST",
        }

    # -- Fleet Telemetry (Tesla) ---------------------------------------------------------------

    def telemetry_record(self, vehicle_id: str, *, sent_at: datetime | None = None) -> JsonObject:
        """One Fleet Telemetry record of the car's current state, as our receiver gets it."""
        vehicle = self._vehicles[vehicle_id]
        state = "DetailedChargeState" + (vehicle.charging_state if vehicle.plugged_in else "Disconnected")
        power_key, energy_key = (
            ("DCChargingPower", "DCChargingEnergyIn")
            if vehicle.is_dc
            else (
                "ACChargingPower",
                "ACChargingEnergyIn",
            )
        )
        return {
            "vin": vehicle.vin,
            "msg_id": str(uuid.uuid4()),
            # Sent in real time (the receiver checks it against its clock), whatever the cars' simulation clock.
            "created_at": (sent_at or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
            "data": [
                {"key": "DetailedChargeState", "value": {"stringValue": state}},
                {"key": "BatteryLevel", "value": {"doubleValue": round(vehicle.battery_pct, 1)}},
                {"key": power_key, "value": {"doubleValue": round(vehicle.power_kw, 2)}},
                {"key": energy_key, "value": {"doubleValue": round(vehicle.energy_added_kwh, 3)}},
                {"key": "Location", "value": {"locationValue": {"latitude": vehicle.lat, "longitude": vehicle.lng}}},
            ],
        }

    def sign_telemetry(self, body: bytes) -> str:
        return hmac.new(self.telemetry_secret.encode(), body, hashlib.sha256).hexdigest()

    async def send_telemetry(self, url: str, body: bytes, *, signature: str | None = None) -> httpx.Response:
        """POST a telemetry record as the fleet's telemetry server forwards it (signed unless `signature`)."""
        if self._webhook_client is None:
            raise RuntimeError("FakeFleet is not running; use it as `async with`")
        headers = {"Content-Type": "application/json", "X-Telemetry-Signature": signature or self.sign_telemetry(body)}
        response = await self._webhook_client.post(url, content=body, headers=headers)
        self.telemetry_deliveries.append(response)
        return response

    def _deliver_later(self, send: Callable[[], Any]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return

        async def deliver() -> None:
            # A receiver that is down simply misses the event (the providers would retry; the demo need not).
            with contextlib.suppress(httpx.HTTPError):
                await send()

        task = loop.create_task(deliver())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _changed(self, vehicle: FakeVehicle) -> None:
        """A car's charging changed: a Smartcar car announces it when a webhook URL is set, a Tesla streaming
        Fleet Telemetry pushes a record when a telemetry URL is set (and a loop is running)."""
        if self._webhook_client is None:
            return
        if vehicle.provider == TESLA and vehicle.telemetry_streaming and self.telemetry_url is not None:
            telemetry_url = self.telemetry_url
            record = json.dumps(self.telemetry_record(vehicle.id)).encode()
            self._deliver_later(lambda: self.send_telemetry(telemetry_url, record))
            return
        if vehicle.provider != SMARTCAR or self.smartcar_webhook_url is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        url = self.smartcar_webhook_url
        body = json.dumps(self.smartcar_event(vehicle.id)).encode()

        async def deliver() -> None:
            # A receiver that is down simply misses the event (Smartcar would retry; the demo need not).
            with contextlib.suppress(httpx.HTTPError):
                await self.post_smartcar_webhook(url, body, signature=self.sign_smartcar(body))

        task = loop.create_task(deliver())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- HTTP --------------------------------------------------------------------------------

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections[task] = writer
        try:
            # Keep-alive: the adapters' long-lived clients reuse connections across requests.
            while True:
                try:
                    request = await read_request(reader, _MAX_BODY_BYTES)
                except MalformedRequest as exc:
                    writer.write(_encode(_Response(400, {"error": "invalid_request", "detail": str(exc)}), False))
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
                    response = _Response(500, {"error": "fake_fleet_bug", "detail": repr(exc)})
                writer.write(_encode(response, keep_alive))
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
        query = dict(parse_qsl(request.query, keep_blank_values=True))
        form = _body_fields(request)
        self.requests.append(ReceivedRequest(request.method, request.path, query, request.headers, form))
        parts = [part for part in request.path.split("/") if part]
        route = (request.method, request.path)
        if route == ("GET", "/oauth2/v3/authorize"):
            return self._authorize(TESLA, query)
        if route == ("POST", "/oauth2/v3/token"):
            return self._tesla_token(form)
        if parts == ["api", "1", "vehicles", "fleet_telemetry_config"]:
            return self._tesla_telemetry_config(request)
        if parts[:2] == ["api", "1"]:
            return self._tesla_api(request, parts[2:], query)
        if route == ("GET", "/oauth/authorize"):
            return self._authorize(SMARTCAR, query)
        if route == ("POST", "/oauth/token"):
            return self._smartcar_token(request, form)
        if parts[:1] == ["v2.0"]:
            return self._smartcar_api(request, parts[1:])
        if parts[:1] == ["_fake"]:
            return self._control(request, parts[1:])
        return _Response(404, {"error": "not_found", "error_description": f"no route {request.method} {request.path}"})

    # -- OAuth -------------------------------------------------------------------------------

    def _authorize(self, provider: str, query: Mapping[str, str]) -> _Response:
        client_id = self.tesla_client_id if provider == TESLA else self.smartcar_client_id
        known_scopes = TESLA_SCOPES if provider == TESLA else SMARTCAR_SCOPES
        if query.get("client_id") != client_id:
            return _Response(400, {"error": "invalid_client", "error_description": "unknown client_id"})
        redirect_uri = query.get("redirect_uri", "")
        target = urlsplit(redirect_uri)
        if target.scheme not in ("http", "https") or not target.netloc:
            return _Response(400, {"error": "invalid_request", "error_description": "redirect_uri is not a URL"})
        state = query.get("state", "")

        def back(**params: str) -> _Response:
            if state:
                params["state"] = state
            if provider == TESLA:
                params["issuer"] = f"{self.base_url}/oauth2/v3"
            separator = "&" if target.query else "?"
            location = redirect_uri + separator + urlencode(params)
            return _Response(302, b"", (("Location", location),), content_type="text/html")

        if query.get("response_type") != "code":
            return back(error="unsupported_response_type")
        scopes = frozenset(query.get("scope", "").split())
        if not scopes or not scopes <= known_scopes or (provider == TESLA and "openid" not in scopes):
            return back(error="invalid_scope", error_description="unknown or missing scopes")
        if provider == TESLA and not state:
            return back(error="invalid_request", error_description="state is required")
        challenge = query.get("code_challenge") or None
        if challenge is not None and query.get("code_challenge_method") != "S256":
            return back(error="invalid_request", error_description="only code_challenge_method=S256 is supported")
        denial = self._deny_next.pop(provider, None)
        if denial is not None:
            return back(error=denial, error_description="The user denied access")
        account = self._consenting_account(provider, query.get("login_hint"))
        if account is None:
            return _Response(400, {"error": "no_account", "error_description": "the fake has nobody to sign in"})
        code = secrets.token_hex(32) if provider == TESLA else str(uuid.uuid4())
        self._codes[code] = _Code(account, scopes, redirect_uri, challenge, self.now + CODE_TTL)
        return back(code=code)

    def _consenting_account(self, provider: str, login_hint: str | None) -> _Account | None:
        email = (login_hint or "").lower() or self._login_as.get(provider)
        if email:
            return self._accounts.get((provider, email))
        accounts = [account for (kind, _), account in self._accounts.items() if kind == provider]
        return accounts[0] if len(accounts) == 1 else None

    def _tesla_token(self, form: Mapping[str, str]) -> _Response:
        failure = self._next_token_failure()
        if failure is not None:
            return failure
        if form.get("client_id") != self.tesla_client_id:
            return _oauth_error(401, "invalid_client", "unknown client_id")
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            if not hmac.compare_digest(form.get("client_secret", "").encode(), self.tesla_client_secret.encode()):
                return _oauth_error(401, "invalid_client", "client authentication failed")
            if not form.get("audience"):
                return _oauth_error(400, "invalid_request", "audience is required")
            code, problem = self._redeem_code(form)
            if code is None:
                return problem
            return _Response(200, self._issue(code.account, code.scope, TESLA))
        if grant_type == "refresh_token":
            return self._rotate(form.get("refresh_token", ""), TESLA)
        return _oauth_error(400, "unsupported_grant_type", f"grant_type {grant_type!r}")

    def _smartcar_token(self, request: Request, form: Mapping[str, str]) -> _Response:
        failure = self._next_token_failure()
        if failure is not None:
            return failure
        if not _basic_auth_matches(
            request.headers.get("authorization"), self.smartcar_client_id, self.smartcar_client_secret
        ):
            return _oauth_error(401, "invalid_client", "Invalid client credentials")
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            code, problem = self._redeem_code(form)
            if code is None:
                return problem
            return _Response(200, self._issue(code.account, code.scope, SMARTCAR))
        if grant_type == "refresh_token":
            return self._rotate(form.get("refresh_token", ""), SMARTCAR)
        return _oauth_error(400, "unsupported_grant_type", f"grant_type {grant_type!r}")

    def _next_token_failure(self) -> _Response | None:
        if not self._token_failures:
            return None
        status, error = self._token_failures.pop(0)
        return _oauth_error(status, error, reason_phrase(status))

    def _redeem_code(self, form: Mapping[str, str]) -> tuple[_Code | None, _Response]:
        code = self._codes.get(form.get("code", ""))
        if code is None or code.used or code.expires_at <= self.now:
            return None, _oauth_error(400, "invalid_grant", "The authorization code is invalid or expired")
        if form.get("redirect_uri") != code.redirect_uri:
            return None, _oauth_error(400, "invalid_redirect_url", "redirect_uri does not match the authorize call")
        if code.code_challenge is not None:
            verifier = form.get("code_verifier", "")
            if not 43 <= len(verifier) <= 128:
                return None, _oauth_error(400, "invalid_grant", "code_verifier is missing or malformed")
            digest = hashlib.sha256(verifier.encode("ascii", errors="replace")).digest()
            challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if not hmac.compare_digest(challenge.encode(), code.code_challenge.encode()):
                return None, _oauth_error(400, "invalid_grant", "code_verifier does not match the code_challenge")
        code.used = True
        return code, _Response(200)

    def _rotate(self, refresh_token: str, provider: str) -> _Response:
        standing = self._standing_refresh.get((provider, refresh_token))
        if standing is not None:
            # A demo's standing refresh token: a fresh access token each time, the same refresh token back.
            issued = self._issue(standing, SMARTCAR_SCOPES if provider == SMARTCAR else TESLA_SCOPES, provider)
            del self._refresh[issued["refresh_token"]]
            issued["refresh_token"] = refresh_token
            return _Response(200, issued)
        token = self._refresh.get(refresh_token)
        if (
            token is None
            or token.account.provider != provider
            or token.revoked
            or token.expires_at <= self.now
            or refresh_token in self._used_refresh
        ):
            return _oauth_error(400, "invalid_grant", "The refresh token is invalid, expired, revoked or already used")
        # Single use: the old refresh token dies the moment the new one is issued.
        self._used_refresh.add(refresh_token)
        del self._refresh[refresh_token]
        return _Response(200, self._issue(token.account, token.scope, provider))

    def _issue(self, account: _Account, scope: frozenset[str], provider: str) -> JsonObject:
        access_ttl = TESLA_ACCESS_TTL if provider == TESLA else SMARTCAR_ACCESS_TTL
        refresh_ttl = TESLA_REFRESH_TTL if provider == TESLA else SMARTCAR_REFRESH_TTL
        access = ("eyJ" if provider == TESLA else "") + secrets.token_urlsafe(48)
        refresh = ("NA_" if provider == TESLA else "") + secrets.token_urlsafe(48)
        self._access[access] = _Token(account, scope, self.now + access_ttl)
        self._refresh[refresh] = _Token(account, scope, self.now + refresh_ttl)
        if provider == SMARTCAR:
            return {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": int(access_ttl.total_seconds()),
                "refresh_token": refresh,
                "refresh_expires_in": int(refresh_ttl.total_seconds()),
            }
        return {
            "access_token": access,
            "refresh_token": refresh,
            "id_token": self._id_token(account),
            "expires_in": int(access_ttl.total_seconds()),
            "token_type": "Bearer",
        }

    def _id_token(self, account: _Account) -> str:
        issued = int(self.now.timestamp())
        claims = {
            "iss": f"{self.base_url}/oauth2/v3",
            "aud": self.tesla_client_id,
            "sub": account.account_id,
            "email": account.email,
            "iat": issued,
            "exp": issued + int(TESLA_ACCESS_TTL.total_seconds()),
        }
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64url(json.dumps(claims).encode())
        signature = hmac.new(self._id_token_key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64url(signature)}"

    def _bearer(self, request: Request, provider: str) -> _Token | None:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = self._access.get(credential.strip())
        if token is None or token.revoked or token.expires_at <= self.now or token.account.provider != provider:
            return None
        return token

    # -- Tesla Fleet API ---------------------------------------------------------------------

    def _tesla_api(self, request: Request, parts: list[str], query: Mapping[str, str]) -> _Response:
        if parts[:1] != ["vehicles"] or len(parts) > 3:
            return _tesla_error(404, "not_found")
        tag = parts[1] if len(parts) > 1 else None
        action = parts[2] if len(parts) > 2 else "vehicle"
        expected = {"vehicle": "GET", "vehicle_data": "GET", "wake_up": "POST"}.get(action)
        if expected is None:
            return _tesla_error(404, "not_found")
        vehicle = self._tesla_vehicle_by_tag(tag) if tag is not None else None
        if vehicle is not None:
            vehicle.calls[action] += 1
        token = self._bearer(request, TESLA)
        if token is None:
            return _Response(
                401,
                {"error": "invalid_token", "error_description": "The access token is missing, expired or revoked"},
                (("WWW-Authenticate", 'Bearer error="invalid_token"'),),
            )
        if "vehicle_device_data" not in token.scope:
            return _tesla_error(403, "Unauthorized missing scopes", "vehicle_device_data")
        if tag is None:
            if request.method != "GET":
                return _tesla_error(405, "method_not_allowed")
            self.list_calls[TESLA] += 1
            return self._tesla_list(token.account, query)
        if vehicle is None or vehicle.account is not token.account:
            return _tesla_error(404, "not_found")
        if request.method != expected:
            return _tesla_error(405, "method_not_allowed")
        refusal = self._vehicle_refusal(vehicle, TESLA)
        if refusal is not None:
            return refusal
        if action == "wake_up" and vehicle.wakes_on_request:
            vehicle.asleep = False
        if action != "vehicle_data":
            return _Response(200, {"response": vehicle._tesla_vehicle()})
        return self._tesla_vehicle_data(vehicle, token, query)

    def _tesla_vehicle_data(self, vehicle: FakeVehicle, token: _Token, query: Mapping[str, str]) -> _Response:
        if vehicle.asleep:
            return _tesla_error(408, "vehicle unavailable: vehicle is offline or asleep")
        requested = query.get("endpoints")
        sections = set(requested.split(";")) if requested else {"charge_state", "drive_state", "vehicle_state"}
        now_ms = int(self.now.timestamp() * 1000)
        data = vehicle._tesla_vehicle()
        if "charge_state" in sections:
            data["charge_state"] = vehicle._tesla_charge_state(now_ms)
        if sections & {"drive_state", "location_data"}:
            with_location = "location_data" in sections and "vehicle_location" in token.scope
            data["drive_state"] = vehicle._tesla_drive_state(now_ms, with_location=with_location)
        if "vehicle_state" in sections:
            data["vehicle_state"] = {"locked": True, "odometer": 12345.6, "timestamp": now_ms}
        if "vehicle_config" in sections:
            data["vehicle_config"] = {"car_type": vehicle.model.lower().replace(" ", ""), "exterior_color": "Pearl"}
        return _Response(200, {"response": data})

    def _tesla_telemetry_config(self, request: Request) -> _Response:
        """POST /api/1/vehicles/fleet_telemetry_config {vins, config}: the listed cars of the token's account start
        streaming (to `telemetry_url`). Answers {updated_vehicles, skipped_vehicles}."""
        token = self._bearer(request, TESLA)
        if token is None:
            return _tesla_error(401, "invalid_token")
        if request.method != "POST":
            return _tesla_error(405, "method_not_allowed")
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return _tesla_error(400, "invalid_request", "the body is not JSON")
        vins = body.get("vins") if isinstance(body, dict) else None
        if not isinstance(vins, list) or not isinstance(body.get("config"), dict):
            return _tesla_error(400, "invalid_request", "vins and config are required")
        updated = 0
        for vin in vins:
            vehicle = self._tesla_vehicle_by_tag(str(vin))
            if vehicle is not None and vehicle.account is token.account:
                vehicle.calls["fleet_telemetry_config"] += 1
                vehicle.telemetry_streaming = True
                updated += 1
        return _Response(
            200, {"response": {"updated_vehicles": updated, "skipped_vehicles": {"unknown": len(vins) - updated}}}
        )

    def _tesla_vehicle_by_tag(self, tag: str) -> FakeVehicle | None:
        for vehicle in self._vehicles.values():
            if vehicle.provider == TESLA and tag in (vehicle.id, vehicle.vin):
                return vehicle
        return None

    def _tesla_list(self, account: _Account, query: Mapping[str, str]) -> _Response:
        try:
            page = max(1, int(query.get("page", "1")))
            per_page = min(100, max(1, int(query.get("per_page", "100"))))
        except ValueError:
            return _tesla_error(400, "invalid_field", "page and per_page are integers")
        vehicles = [vehicle._tesla_vehicle() for vehicle in account.vehicles]
        pages = max(1, math.ceil(len(vehicles) / per_page))
        window = vehicles[(page - 1) * per_page : page * per_page]
        return _Response(
            200,
            {
                "response": window,
                "pagination": {
                    "previous": page - 1 if page > 1 else None,
                    "next": page + 1 if page < pages else None,
                    "current": page,
                    "per_page": per_page,
                    "count": len(vehicles),
                    "pages": pages,
                },
                "count": len(vehicles),
            },
        )

    def _vehicle_refusal(self, vehicle: FakeVehicle, provider: str) -> _Response | None:
        """Scripted outages and rate limits, which the provider's edge answers before the car is asked."""
        if vehicle._failures:
            status = vehicle._failures.pop(0)
            if provider == TESLA:
                return _tesla_error(status, "internal error" if status < 504 else "upstream timeout")
            return _smartcar_error(status, "UPSTREAM", "UNKNOWN", "The vehicle's manufacturer had an error.")
        wait = vehicle.rate_limited_for_s
        if wait > 0:
            seconds = str(math.ceil(wait))
            headers = (
                ("Retry-After", seconds),
                ("RateLimit-Limit", "60"),
                ("RateLimit-Remaining", "0"),
                ("RateLimit-Reset", seconds),
            )
            if provider == TESLA:
                return dataclasses.replace(_tesla_error(429, "Rate limit exceeded"), headers=headers)
            return dataclasses.replace(
                _smartcar_error(
                    429,
                    "RATE_LIMIT",
                    "VEHICLE",
                    "You have reached the throttling rate limit for this vehicle. Please see the retry-after "
                    "header (seconds) for when to retry the request.",
                    resolution="RETRY_LATER",
                ),
                headers=(("retry-after", seconds),),
            )
        return None

    # -- Smartcar API ------------------------------------------------------------------------

    def _smartcar_api(self, request: Request, parts: list[str]) -> _Response:
        vehicle: FakeVehicle | None = None
        endpoint = "attributes"
        if parts[:1] == ["vehicles"] and len(parts) >= 2:
            found = self._vehicles.get(parts[1])
            vehicle = found if found is not None and found.provider == SMARTCAR else None
            endpoint = parts[2] if len(parts) == 3 else "attributes"
            if vehicle is not None and endpoint in _SMARTCAR_ENDPOINT_SCOPES:
                vehicle.calls[endpoint] += 1
        token = self._bearer(request, SMARTCAR)
        if token is None:
            return _smartcar_error(
                401,
                "AUTHENTICATION",
                None,
                "The authorization header is missing or malformed, or it contains invalid or expired "
                "authentication credentials. Please check for missing parameters, spelling and casing "
                "mistakes, and other syntax issues.",
                resolution="REAUTHENTICATE",
            )
        if request.method != "GET":
            return _smartcar_error(404, "RESOURCE_NOT_FOUND", "PATH", "The requested resource does not exist.")
        if parts == ["user"]:
            return _Response(200, {"id": token.account.account_id})
        if parts == ["vehicles"]:
            self.list_calls[SMARTCAR] += 1
            ids = [vehicle.id for vehicle in token.account.vehicles]
            return _Response(200, {"vehicles": ids, "paging": {"count": len(ids), "offset": 0}})
        if len(parts) not in (2, 3) or parts[0] != "vehicles":
            return _smartcar_error(404, "RESOURCE_NOT_FOUND", "PATH", "The requested resource does not exist.")
        if vehicle is None or vehicle.account is not token.account:
            return _smartcar_error(404, "RESOURCE_NOT_FOUND", "PATH", "The requested vehicle does not exist.")
        needed = _SMARTCAR_ENDPOINT_SCOPES.get(endpoint)
        if needed is None:
            return _smartcar_error(404, "RESOURCE_NOT_FOUND", "PATH", "The requested resource does not exist.")
        if needed not in token.scope:
            return _smartcar_error(
                403,
                "PERMISSION",
                None,
                "Your application does not have permission to access the requested resource.",
                resolution="REAUTHENTICATE",
            )
        return self._smartcar_vehicle(vehicle, endpoint)

    def _smartcar_vehicle(self, vehicle: FakeVehicle, endpoint: str) -> _Response:
        refusal = self._vehicle_refusal(vehicle, SMARTCAR)
        if refusal is not None:
            return refusal
        if endpoint == "attributes":
            body: JsonObject = {"id": vehicle.id, "make": vehicle.make, "model": vehicle.model, "year": vehicle.year}
        elif vehicle.asleep:
            return _smartcar_error(
                409, "VEHICLE_STATE", "ASLEEP", "The vehicle is in a sleep state.", resolution="RETRY_LATER"
            )
        elif endpoint == "charge":
            body = vehicle._smartcar_charge()
        elif endpoint == "battery":
            body = vehicle._smartcar_battery()
        else:
            body = {"latitude": vehicle.lat, "longitude": vehicle.lng}
        headers = (
            ("sc-data-age", self.now.isoformat().replace("+00:00", "Z")),
            ("sc-unit-system", "metric"),
            ("sc-request-id", str(uuid.uuid4())),
        )
        return _Response(200, body, headers)

    # -- control API (the CLI) ---------------------------------------------------------------

    def _control(self, request: Request, parts: list[str]) -> _Response:
        try:
            args: object = json.loads(request.body) if request.body else {}
        except ValueError:
            return _Response(400, {"error": "body is not JSON"})
        if not isinstance(args, dict):
            return _Response(400, {"error": "body is not a JSON object"})
        try:
            return self._control_action(request.method, parts, args)
        except (KeyError, TypeError, ValueError) as exc:
            return _Response(400, {"error": repr(exc)})

    def _control_action(self, method: str, parts: list[str], args: Mapping[str, Any]) -> _Response:
        if (method, parts) == ("GET", ["state"]):
            return _Response(200, {"now": self.now.isoformat(), "vehicles": [v.snapshot() for v in self.vehicles]})
        if (method, parts) == ("GET", ["calls"]):
            # Totals per endpoint over every car (cheap to ask for mid-benchmark, unlike every car's snapshot).
            totals: Counter[str] = Counter()
            for vehicle in self._vehicles.values():
                totals.update(vehicle.calls)
            return _Response(200, {"now": self.now.isoformat(), "calls": dict(totals)})
        if (method, parts) == ("GET", ["vehicles"]):
            return _Response(200, {"vehicles": [vehicle.snapshot() for vehicle in self.vehicles]})
        if (method, parts) == ("POST", ["vehicles"]):
            fields = dict(args)
            provider = fields.pop("provider", TESLA)
            owner = fields.pop("owner", "driver@example.com")
            add = self.add_tesla_vehicle if provider == TESLA else self.add_smartcar_vehicle
            return _Response(200, add(owner, **fields).snapshot())
        if (method, parts) == ("POST", ["advance"]):
            self.advance(float(args.get("minutes", 0)), seconds=float(args.get("seconds", 0)))
            return _Response(200, {"now": self.now.isoformat(), "vehicles": [v.snapshot() for v in self.vehicles]})
        if method == "POST" and len(parts) == 3 and parts[0] == "vehicles":
            vehicle = self._vehicles[parts[1]]
            actions: dict[str, Callable[..., FakeVehicle]] = {
                "plug_in": vehicle.plug_in,
                "start_charging": vehicle.start_charging,
                "stop_charging": vehicle.stop_charging,
                "unplug": vehicle.unplug,
                "sleep": vehicle.sleep,
                "wake": vehicle.wake,
                "move": vehicle.move,
                "set_battery": vehicle.set_battery,
                "force_state": vehicle.force_state,
                "set_rate_limit": vehicle.set_rate_limit,
                "clear_rate_limit": vehicle.clear_rate_limit,
                "fail_next": vehicle.fail_next,
            }
            action = actions.get(parts[2])
            if action is None:
                return _Response(404, {"error": f"no action {parts[2]!r}", "actions": sorted(actions)})
            return _Response(200, action(**args).snapshot())
        if method == "GET" and len(parts) == 2 and parts[0] == "vehicles":
            return _Response(200, self._vehicles[parts[1]].snapshot())
        return _Response(404, {"error": "no such control route"})


# -- wire helpers ------------------------------------------------------------------------------


def _tesla_error(status: int, error: str, description: str = "") -> _Response:
    return _Response(status, {"response": None, "error": error, "error_description": description})


def _oauth_error(status: int, error: str, description: str) -> _Response:
    return _Response(status, {"error": error, "error_description": description})


def _smartcar_error(
    status: int, error_type: str, code: str | None, description: str, *, resolution: str | None = None
) -> _Response:
    anchor = (code or error_type).lower().replace("_", "-")
    return _Response(
        status,
        {
            "type": error_type,
            "code": code,
            "description": description,
            "docURL": f"https://smartcar.com/docs/errors/api-errors/{error_type.lower()}-errors#{anchor}",
            "statusCode": status,
            "requestId": str(uuid.uuid4()),
            "resolution": {"type": resolution},
        },
    )


def _body_fields(request: Request) -> dict[str, str]:
    """Form fields, or a JSON object's string fields (Tesla's token endpoint accepts both)."""
    if not request.body:
        return {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        try:
            return dict(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            return {}
    if content_type == "application/json":
        try:
            decoded: object = json.loads(request.body)
        except ValueError:
            return {}
        if isinstance(decoded, dict):
            return {key: value for key, value in decoded.items() if isinstance(value, str)}
    return {}


def _basic_auth_matches(header: str | None, username: str, password: str) -> bool:
    if header is None:
        return False
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, separator, secret = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except ValueError:
        return False
    return (
        separator == ":"
        and hmac.compare_digest(user.encode(), username.encode())
        and hmac.compare_digest(secret.encode(), password.encode())
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_VIN_MODEL_LETTERS: Final[Mapping[str, str]] = {"Model S": "S", "Model 3": "3", "Model X": "X", "Model Y": "Y"}
_VIN_YEARS: Final = "ABCDEFGHJKLMNPRSTVWXY"  # 2010 … 2030


def _tesla_vin(model: str, year: int) -> str:
    """A plausible (not check-digit-valid) Tesla VIN: 5YJ + model letter + … + model-year code + serial."""
    letter = _VIN_MODEL_LETTERS.get(model, "3")
    year_code = _VIN_YEARS[year - 2010] if 2010 <= year <= 2030 else "P"
    return f"5YJ{letter}E1EA0{year_code}F{secrets.randbelow(10**6):06d}"


def _encode(response: _Response, keep_alive: bool) -> bytes:
    if isinstance(response.body, bytes):
        body = response.body
    elif response.body is None:
        body = b""
    else:
        body = json.dumps(response.body).encode()
    lines = [
        f"HTTP/1.1 {response.status} {reason_phrase(response.status)}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(body)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
        *(f"{name}: {value}" for name, value in response.headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# -- command line ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m fakes.fleet serve …` runs the fake; the other commands script a running one over its
    control API (`--url`, default $FAKE_FLEET_URL or http://127.0.0.1:8091) and print the car as JSON."""
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
    parser = argparse.ArgumentParser(prog="python -m fakes.fleet", description=main.__doc__)
    parser.add_argument("--url", default=os.environ.get("FAKE_FLEET_URL", "http://127.0.0.1:8091"))
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the fake fleet")
    serve.add_argument("--port", type=int, default=8091)
    serve.add_argument("--tesla-client-id")
    serve.add_argument("--tesla-client-secret")
    serve.add_argument("--smartcar-client-id")
    serve.add_argument("--smartcar-client-secret")
    serve.add_argument("--smartcar-management-token")
    serve.add_argument("--smartcar-webhook-url")
    serve.add_argument(
        "--tesla-vehicle", action="append", default=[], metavar="EMAIL[=ID]", help="a Tesla at start (repeatable)"
    )
    serve.add_argument(
        "--smartcar-vehicle", action="append", default=[], metavar="EMAIL[=ID]", help="a Smartcar car at start"
    )
    serve.add_argument(
        "--smartcar-standing-token",
        action="append",
        default=[],
        metavar="EMAIL=REFRESH_TOKEN",
        help="a refresh token of that Smartcar account that never rotates (the demo seed's)",
    )
    serve.add_argument("--telemetry-url", help="where Teslas streaming Fleet Telemetry push their records")
    serve.add_argument("--telemetry-secret", help="the HMAC-SHA256 key of those pushes")
    serve.add_argument(
        "--realtime",
        action="store_true",
        help="the simulation clock follows the wall clock (cars charge as time passes)",
    )

    add = commands.add_parser("add-vehicle", help="add a car")
    add.add_argument("--provider", choices=(TESLA, SMARTCAR), default=TESLA)
    add.add_argument("--owner", default="driver@example.com")
    add.add_argument("--id", dest="vehicle_id")
    add.add_argument("--battery", dest="battery_pct", type=float)
    add.add_argument("--lat", type=float)
    add.add_argument("--lng", type=float)

    commands.add_parser("vehicles", help="every car's state")
    show = commands.add_parser("show", help="one car's state")
    show.add_argument("vehicle")

    plug = commands.add_parser("plug-in", help="park and plug in (starts charging unless --no-charge)")
    plug.add_argument("vehicle")
    plug.add_argument("--lat", type=float)
    plug.add_argument("--lng", type=float)
    plug.add_argument("--connector", choices=CONNECTORS, default="NACS")
    plug.add_argument("--power-kw", type=float, default=11.0)
    plug.add_argument("--no-charge", dest="charging", action="store_false")

    for name in ("start-charging", "stop-charging", "unplug", "sleep", "wake", "clear-rate-limit"):
        commands.add_parser(name).add_argument("vehicle")
    move = commands.add_parser("move", help="drive to a place and park")
    move.add_argument("vehicle")
    move.add_argument("--lat", type=float, required=True)
    move.add_argument("--lng", type=float, required=True)
    battery = commands.add_parser("set-battery")
    battery.add_argument("vehicle")
    battery.add_argument("--pct", type=float, required=True)
    limit = commands.add_parser("rate-limit", help="answer 429 for a while")
    limit.add_argument("vehicle")
    limit.add_argument("--retry-after-s", type=float, default=60.0)
    state = commands.add_parser("force-state", help="report a charging_state verbatim")
    state.add_argument("vehicle")
    state.add_argument("charging_state")
    advance = commands.add_parser("advance", help="move the simulation clock")
    advance.add_argument("--minutes", type=float, required=True)
    return parser


def _control_request(args: argparse.Namespace) -> tuple[str, JsonObject | None]:
    """The control-API call a CLI command stands for: (path, JSON body), body None for a GET."""
    command = args.command
    if command == "vehicles":
        return "/_fake/vehicles", None
    if command == "show":
        return f"/_fake/vehicles/{args.vehicle}", None
    if command == "advance":
        return "/_fake/advance", {"minutes": args.minutes}
    if command == "add-vehicle":
        fields = {"provider": args.provider, "owner": args.owner}
        for name in ("vehicle_id", "battery_pct", "lat", "lng"):
            if getattr(args, name) is not None:
                fields[name] = getattr(args, name)
        return "/_fake/vehicles", fields
    action = command.replace("-", "_")
    body: JsonObject = {}
    if command == "plug-in":
        body = {"connector": args.connector, "power_kw": args.power_kw, "charging": args.charging}
        if args.lat is not None and args.lng is not None:
            body.update(lat=args.lat, lng=args.lng)
    elif command == "move":
        body = {"lat": args.lat, "lng": args.lng}
    elif command == "set-battery":
        body = {"pct": args.pct}
    elif command == "rate-limit":
        action, body = "set_rate_limit", {"retry_after_s": args.retry_after_s}
    elif command == "force-state":
        body = {"charging_state": args.charging_state}
    return f"/_fake/vehicles/{args.vehicle}/{action}", body


def _serve(args: argparse.Namespace) -> None:
    async def serve() -> None:
        fleet = FakeFleet(
            tesla_client_id=args.tesla_client_id,
            tesla_client_secret=args.tesla_client_secret,
            smartcar_client_id=args.smartcar_client_id,
            smartcar_client_secret=args.smartcar_client_secret,
            smartcar_management_token=args.smartcar_management_token,
            smartcar_webhook_url=args.smartcar_webhook_url,
            telemetry_url=args.telemetry_url,
            telemetry_secret=args.telemetry_secret,
            port=args.port,
        )
        for spec in args.smartcar_standing_token:
            email, _, token = spec.partition("=")
            fleet.grant_standing_refresh_token(email, token)
        for spec in args.tesla_vehicle:
            email, _, vehicle_id = spec.partition("=")
            fleet.add_tesla_vehicle(email, vehicle_id=vehicle_id or None)
        for spec in args.smartcar_vehicle:
            email, _, vehicle_id = spec.partition("=")
            fleet.add_smartcar_vehicle(email, vehicle_id=vehicle_id or None)
        async with fleet:
            print(json.dumps({"url": fleet.base_url, "vehicles": [v.snapshot() for v in fleet.vehicles]}), flush=True)
            while True:
                await asyncio.sleep(1.0)
                if args.realtime:
                    behind = (datetime.now(UTC) - fleet.now).total_seconds()
                    if behind > 0:
                        fleet.advance(seconds=behind)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
