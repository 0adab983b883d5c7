"""The vehicle adapters (Tesla Fleet API, Smartcar) against the local fake fleet (fakes/fleet.py).

The fake is the only test double: the adapters' httpx clients talk real HTTP to it, so consent redirects, PKCE,
token rotation, status codes, headers and JSON shapes are the ones the adapters will meet in production. The
fake's clock is a simulation clock; the adapters are given it, so nothing here sleeps or depends on wall time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio

from fakes.fleet import SMARTCAR, TESLA, FakeFleet, FakeVehicle, main
from fakes.http1 import read_request, reason_phrase
from services.sessions.adapters.smartcar import (
    SmartcarClient,
    challenge_response,
    reading_from_webhook,
    verify_challenge,
    verify_webhook,
)
from services.sessions.adapters.tesla import TeslaFleetClient, reading_from_vehicle_data
from services.sessions.adapters.vehicles import (
    DEFAULT_RETRY_AFTER_S,
    AccessTokenRejected,
    AuthorizationRefused,
    OAuthTokens,
    RateLimited,
    TokenExpired,
    VehicleApiRefused,
    VehicleAsleep,
    VehicleNotFound,
    VehicleReader,
    VehicleReading,
    VehicleUnavailable,
    WebhookPayloadInvalid,
    WebhookSignatureInvalid,
    code_challenge,
    retry_after_s,
)

DRIVER = "ada@example.com"
OTHER_DRIVER = "grace@example.com"
REDIRECT_URI = "https://api.nerava.test/v1/auth/tesla/callback"
SMARTCAR_REDIRECT_URI = "https://api.nerava.test/v1/auth/smartcar/callback"
# A Supercharger stall in Austin and a home address across town.
STALL = (30.2650, -97.7390)
HOME = (30.3079, -97.7538)


class MemoryCredentials:
    """Credentials as the service keeps them, in memory: the current tokens and every rotation stored."""

    def __init__(self, tokens: OAuthTokens) -> None:
        self.tokens = tokens
        self.stored: list[OAuthTokens] = []

    async def load(self) -> OAuthTokens:
        return self.tokens

    async def store(self, tokens: OAuthTokens) -> None:
        self.tokens = tokens
        self.stored.append(tokens)


class StaleCredentials(MemoryCredentials):
    """A replica whose first reads still return tokens another replica has already rotated."""

    def __init__(self, current: OAuthTokens, stale: OAuthTokens, stale_reads: int) -> None:
        super().__init__(current)
        self._stale = stale
        self._stale_reads = stale_reads

    async def load(self) -> OAuthTokens:
        if self._stale_reads > 0:
            self._stale_reads -= 1
            return self._stale
        return self.tokens


@pytest_asyncio.fixture
async def fleet() -> AsyncIterator[FakeFleet]:
    async with FakeFleet() as server:
        yield server


def _tesla_for(fleet: FakeFleet, **overrides: Any) -> TeslaFleetClient:
    options: dict[str, Any] = {
        "client_id": fleet.tesla_client_id,
        "client_secret": fleet.tesla_client_secret,
        "redirect_uri": REDIRECT_URI,
        "api_base_url": fleet.base_url,
        "authorize_base_url": fleet.base_url,
        "token_base_url": fleet.base_url,
        "timeout": 5.0,
        "clock": lambda: fleet.now,
    }
    options.update(overrides)
    return TeslaFleetClient(**options)


def _smartcar_for(fleet: FakeFleet, **overrides: Any) -> SmartcarClient:
    options: dict[str, Any] = {
        "client_id": fleet.smartcar_client_id,
        "client_secret": fleet.smartcar_client_secret,
        "redirect_uri": SMARTCAR_REDIRECT_URI,
        "api_base_url": fleet.base_url,
        "auth_base_url": fleet.base_url,
        "connect_base_url": fleet.base_url,
        "timeout": 5.0,
        "clock": lambda: fleet.now,
    }
    options.update(overrides)
    return SmartcarClient(**options)


@pytest_asyncio.fixture
async def tesla(fleet: FakeFleet) -> AsyncIterator[TeslaFleetClient]:
    async with _tesla_for(fleet) as client:
        yield client


@pytest_asyncio.fixture
async def smartcar(fleet: FakeFleet) -> AsyncIterator[SmartcarClient]:
    async with _smartcar_for(fleet) as client:
        yield client


async def _follow_consent(url: str) -> dict[str, str]:
    """What a browser does at the consent page: the query of the redirect back to us."""
    async with httpx.AsyncClient() as browser:
        response = await browser.get(url)
    assert response.status_code == 302
    location = response.headers["location"]
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


async def _connect_tesla(tesla: TeslaFleetClient, email: str = DRIVER) -> OAuthTokens:
    start = tesla.start_authorization(login_hint=email)
    callback = await _follow_consent(start.url)
    assert callback["state"] == start.state
    return await tesla.exchange_code(callback["code"], start.code_verifier)


async def _connect_smartcar(fleet: FakeFleet, smartcar: SmartcarClient, email: str = DRIVER) -> OAuthTokens:
    fleet.login_as(email, provider=SMARTCAR)
    callback = await _follow_consent(smartcar.authorization_url(state="s-123"))
    assert callback["state"] == "s-123"
    return await smartcar.exchange_code(callback["code"])


async def _charging_tesla(fleet: FakeFleet, tesla: TeslaFleetClient, **car: Any) -> tuple[FakeVehicle, OAuthTokens]:
    vehicle = fleet.add_tesla_vehicle(DRIVER, **car)
    tokens = await _connect_tesla(tesla)
    return vehicle, tokens


# -- Tesla consent ---------------------------------------------------------------------------


async def test_consent_sends_the_driver_back_with_a_code_and_our_state(
    fleet: FakeFleet, tesla: TeslaFleetClient
) -> None:
    fleet.add_tesla_vehicle(DRIVER)
    start = tesla.start_authorization(login_hint=DRIVER)

    callback = await _follow_consent(start.url)

    assert callback["state"] == start.state
    assert callback["code"]
    assert callback["issuer"] == f"{fleet.base_url}/oauth2/v3"
    [authorize] = fleet.requests_to("GET", "/oauth2/v3/authorize")
    assert authorize.query["code_challenge"] == code_challenge(start.code_verifier)
    assert authorize.query["code_challenge_method"] == "S256"
    assert authorize.query["redirect_uri"] == REDIRECT_URI
    assert {"openid", "offline_access", "vehicle_device_data", "vehicle_location"} <= set(
        authorize.query["scope"].split()
    )
    # The verifier itself never travels through the browser.
    assert start.code_verifier not in start.url


async def test_code_exchange_gives_tokens_for_the_drivers_account(fleet: FakeFleet, tesla: TeslaFleetClient) -> None:
    fleet.add_tesla_vehicle(DRIVER)

    tokens = await _connect_tesla(tesla)

    assert tokens.access_token and tokens.refresh_token
    assert tokens.account_id == fleet.account_id(TESLA, DRIVER)
    assert tokens.expires_at > fleet.now
    [exchange] = fleet.requests_to("POST", "/oauth2/v3/token")
    assert exchange.headers["content-type"] == "application/x-www-form-urlencoded"
    assert exchange.form["grant_type"] == "authorization_code"
    assert exchange.form["client_secret"] == fleet.tesla_client_secret
    assert exchange.form["redirect_uri"] == REDIRECT_URI
    assert exchange.form["audience"] == fleet.base_url
    assert (
        code_challenge(exchange.form["code_verifier"])
        == fleet.requests_to("GET", "/oauth2/v3/authorize")[0].query["code_challenge"]
    )
    # Secrets stay out of reprs, and so out of logs.
    assert tokens.access_token not in repr(tokens) and tokens.refresh_token not in repr(tokens)


async def test_a_wrong_code_verifier_is_refused(fleet: FakeFleet, tesla: TeslaFleetClient) -> None:
    fleet.add_tesla_vehicle(DRIVER)
    start = tesla.start_authorization(login_hint=DRIVER)
    callback = await _follow_consent(start.url)
    other = tesla.start_authorization()

    with pytest.raises(AuthorizationRefused) as refused:
        await tesla.exchange_code(callback["code"], other.code_verifier)

    assert refused.value.provider_code == "invalid_grant"
    assert refused.value.retryable is False
    # The code was not spent by the failed attempt; the driver's own verifier still works.
    tokens = await tesla.exchange_code(callback["code"], start.code_verifier)
    assert tokens.refresh_token


async def test_an_authorization_code_works_once(fleet: FakeFleet, tesla: TeslaFleetClient) -> None:
    fleet.add_tesla_vehicle(DRIVER)
    start = tesla.start_authorization(login_hint=DRIVER)
    callback = await _follow_consent(start.url)
    await tesla.exchange_code(callback["code"], start.code_verifier)

    with pytest.raises(AuthorizationRefused):
        await tesla.exchange_code(callback["code"], start.code_verifier)


async def test_a_declined_consent_comes_back_as_an_error_with_our_state(
    fleet: FakeFleet, tesla: TeslaFleetClient
) -> None:
    fleet.add_tesla_vehicle(DRIVER)
    fleet.deny_next_consent()
    start = tesla.start_authorization(login_hint=DRIVER)

    callback = await _follow_consent(start.url)

    assert callback["error"] == "access_denied"
    assert callback["state"] == start.state
    assert "code" not in callback


async def test_wrong_client_credentials_are_a_configuration_error_not_an_expired_token(fleet: FakeFleet) -> None:
    fleet.add_tesla_vehicle(DRIVER)
    async with _tesla_for(fleet, client_secret="not-our-secret") as misconfigured:
        start = misconfigured.start_authorization(login_hint=DRIVER)
        callback = await _follow_consent(start.url)
        with pytest.raises(VehicleApiRefused) as refused:
            await misconfigured.exchange_code(callback["code"], start.code_verifier)
    assert refused.value.provider_code == "invalid_client"

    async with _tesla_for(fleet, client_id="someone-else") as wrong_client:
        with pytest.raises(VehicleApiRefused):
            await wrong_client.refresh("NA_whatever")


# -- Tesla tokens ------------------------------------------------------------------------------


async def test_refresh_rotates_the_refresh_token(fleet: FakeFleet, tesla: TeslaFleetClient) -> None:
    fleet.add_tesla_vehicle(DRIVER)
    first = await _connect_tesla(tesla)

    second = await tesla.refresh(first.refresh_token)

    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    assert second.account_id == first.account_id
    # Single use: the old refresh token is dead, the new one works.
    with pytest.raises(TokenExpired) as expired:
        await tesla.refresh(first.refresh_token)
    assert expired.value.provider_code == "invalid_grant"
    third = await tesla.refresh(second.refresh_token)
    assert third.refresh_token not in (first.refresh_token, second.refresh_token)
    [refresh_request, *_] = fleet.requests_to("POST", "/oauth2/v3/token")[1:]
    assert refresh_request.form == {
        "grant_type": "refresh_token",
        "client_id": fleet.tesla_client_id,
        "refresh_token": first.refresh_token,
    }


async def test_a_revoked_refresh_token_means_the_driver_must_reconnect(
    fleet: FakeFleet, tesla: TeslaFleetClient
) -> None:
    fleet.add_tesla_vehicle(DRIVER)
    tokens = await _connect_tesla(tesla)
    fleet.revoke(DRIVER)

    with pytest.raises(TokenExpired) as expired:
        await tesla.refresh(tokens.refresh_token)

    assert expired.value.http_status == 400
    assert expired.value.retryable is False


async def test_an_outage_of_the_token_endpoint_is_unavailable_not_expired(
    fleet: FakeFleet, tesla: TeslaFleetClient
) -> None:
    fleet.add_tesla_vehicle(DRIVER)
    tokens = await _connect_tesla(tesla)
    fleet.fail_next_token_request(503)

    with pytest.raises(VehicleUnavailable) as unavailable:
        await tesla.refresh(tokens.refresh_token)

    assert unavailable.value.retryable is True
    # The refresh token was not consumed by the failed attempt.
    assert (await tesla.refresh(tokens.refresh_token)).refresh_token


# -- Tesla vehicles ----------------------------------------------------------------------------


async def test_vehicle_list_shows_every_car_without_waking_any(fleet: FakeFleet, tesla: TeslaFleetClient) -> None:
    awake = fleet.add_tesla_vehicle(DRIVER, display_name="Daily", model="Model Y", year=2024)
    sleeping = fleet.add_tesla_vehicle(DRIVER, display_name="Weekend", model="Model S", year=2021).sleep()
    fleet.add_tesla_vehicle(OTHER_DRIVER)
    tokens = await _connect_tesla(tesla)

    vehicles = await tesla.list_vehicles(tokens.access_token)

    assert [(v.id, v.display_name, v.model, v.year, v.state) for v in vehicles] == [
        (awake.id, "Daily", "Model Y", 2024, "online"),
        (sleeping.id, "Weekend", "Model S", 2021, "asleep"),
    ]
    assert [v.vin for v in vehicles] == [awake.vin, sleeping.vin]
    assert sleeping.asleep
    assert fleet.calls(awake.id) == fleet.calls(sleeping.id) == 0
    assert fleet.list_calls[TESLA] == 1


async def test_vehicle_list_follows_pages(fleet: FakeFleet, tesla: TeslaFleetClient) -> None:
    cars = [fleet.add_tesla_vehicle(DRIVER) for _ in range(105)]
    tokens = await _connect_tesla(tesla)

    vehicles = await tesla.list_vehicles(tokens.access_token)

    assert [vehicle.id for vehicle in vehicles] == [car.id for car in cars]
    assert fleet.list_calls[TESLA] == 2


async def test_a_charging_car_reads_as_charging_with_its_numbers(fleet: FakeFleet, tesla: TeslaFleetClient) -> None:
    car, tokens = await _charging_tesla(fleet, tesla, battery_pct=30, capacity_kwh=75, charge_limit_pct=90)
    car.plug_in(*STALL, connector="NACS", power_kw=150)
    fleet.advance(minutes=10)

    reading = await tesla.vehicle_data(tokens.access_token, car.id)

    assert reading.vehicle_id == car.id
    assert reading.charging is True
    assert reading.charging_state == "Charging"
    assert reading.plugged_in is True
    assert reading.kwh_added == pytest.approx(25.0)  # 150 kW for 10 minutes
    assert reading.battery_pct == 63  # 30 % + 25 kWh of 75 kWh
    assert reading.power_kw == 150
    assert reading.minutes_to_full is not None and reading.minutes_to_full > 0
    assert (reading.lat, reading.lng) == STALL
    assert reading.connector == "NACS"
    assert reading.shift_state == "P"
    assert reading.read_at == fleet.now
    assert fleet.calls(car.id) == 1
    [request] = fleet.requests_to("GET", f"/api/1/vehicles/{car.id}/vehicle_data")
    assert request.query["endpoints"] == "charge_state;drive_state;location_data"
    assert request.headers["authorization"] == f"Bearer {tokens.access_token}"


@pytest.mark.parametrize(
    ("charging_state", "charging"),
    [
        ("Charging", True),
        ("Starting", True),
        ("Complete", False),
        ("Stopped", False),
        ("Disconnected", False),
        ("NoPower", False),
    ],
)
async def test_only_charging_and_starting_count_as_charging(
    fleet: FakeFleet, tesla: TeslaFleetClient, charging_state: str, charging: bool
) -> None:
    car, tokens = await _charging_tesla(fleet, tesla)
    car.force_state(charging_state)

    reading = await tesla.vehicle_data(tokens.access_token, car.id)

    assert reading.charging_state == charging_state
    assert reading.charging is charging
    assert reading.telemetry().charging is charging
    assert reading.plugged_in is (charging_state != "Disconnected")


async def test_plugging_in_starts_then_charges_and_unplugging_disconnects(
    fleet: FakeFleet, tesla: TeslaFleetClient
) -> None:
    car, tokens = await _charging_tesla(fleet, tesla)
    car.plug_in(*STALL, power_kw=11)

    starting = await tesla.vehicle_data(tokens.access_token, car.id)
    fleet.advance(minutes=30)
    charging = await tesla.vehicle_data(tokens.access_token, car.id)
    car.unplug()
    unplugged = await tesla.vehicle_data(tokens.access_token, car.id)

    assert (starting.charging_state, starting.charging) == ("Starting", True)
    assert (charging.charging_state, charging.charging) == ("Charging", True)
    assert (unplugged.charging_state, unplugged.charging, unplugged.plugged_in) == ("Disconnected", False, False)
    assert unplugged.connector == ""
    # Tesla keeps the session's energy until the next plug-in.
    assert unplugged.kwh_added == charging.kwh_added == pytest.approx(5.5)


async def test_charging_tapers_near_full_and_completes_at_the_limit(fleet: FakeFleet, tesla: TeslaFleetClient) -> None:
    car, tokens = await _charging_tesla(fleet, tesla, battery_pct=50, capacity_kwh=60, charge_limit_pct=95)
    car.plug_in(*STALL, connector="CCS1", power_kw=120)

    readings: list[VehicleReading] = []
    for _ in range(8):
        fleet.advance(minutes=3)
        readings.append(await tesla.vehicle_data(tokens.access_token, car.id))

    charging = [reading for reading in readings if reading.charging]
    powers = [reading.power_kw or 0.0 for reading in charging]
    batteries = [reading.battery_pct or 0 for reading in readings]
    minutes_to_full = [reading.minutes_to_full or 0 for reading in charging]
    assert len(charging) >= 4
    assert powers[0] == 120  # below 80 %: the charger's full power
    assert all(later <= earlier for earlier, later in itertools.pairwise(powers))
    assert powers[-1] < 60  # tapered well below half near full
    assert batteries == sorted(batteries)
    assert minutes_to_full == sorted(minutes_to_full, reverse=True)
    final = readings[-1]
    assert (final.charging_state, final.charging, final.battery_pct, final.power_kw) == ("Complete", False, 95, 0)
    assert final.minutes_to_full == 0
    assert final.kwh_added == pytest.approx(27.0)  # 45 % of 60 kWh


@pytest.mark.parametrize(
    ("connector", "power_kw", "reported"),
    [
        ("NACS", 250, "NACS"),  # Supercharger
        ("CCS1", 150, "CCS1"),
        ("CHADEMO", 50, "CHADEMO"),
        ("NACS", 11.5, "NACS"),  # Wall Connector
        ("J1772", 7.2, "J1772"),
        ("Type2", 11, "Type2"),
    ],
)
async def test_the_connector_is_named_as_the_chargers_catalog_names_it(
    fleet: FakeFleet, tesla: TeslaFleetClient, connector: str, power_kw: float, reported: str
) -> None:
    car, tokens = await _charging_tesla(fleet, tesla)
    car.plug_in(*STALL, connector=connector, power_kw=power_kw)

    reading = await tesla.vehicle_data(tokens.access_token, car.id)

    assert reading.connector == reported


async def test_a_sleeping_car_is_asleep_until_woken(fleet: FakeFleet, tesla: TeslaFleetClient) -> None:
    car, tokens = await _charging_tesla(fleet, tesla)
    car.sleep()

    with pytest.raises(VehicleAsleep) as asleep:
        await tesla.vehicle_data(tokens.access_token, car.id)
    assert asleep.value.http_status == 408
    assert asleep.value.retryable is True

    assert await tesla.wake_up(tokens.access_token, car.id) == "online"
    reading = await tesla.vehicle_data(tokens.access_token, car.id)

    assert reading.charging is False
    assert (reading.lat, reading.lng) == (car.lat, car.lng)
    assert fleet.calls(car.id, "vehicle_data") == 2
    assert fleet.calls(car.id, "wake_up") == 1
    assert fleet.requests_to("POST", f"/api/1/vehicles/{car.id}/wake_up")[0].headers["content-type"] == (
        "application/json"
    )


async def test_a_car_that_does_not_wake_stays_asleep(fleet: FakeFleet, tesla: TeslaFleetClient) -> None:
    car, tokens = await _charging_tesla(fleet, tesla)
    car.sleep()
    car.wakes_on_request = False

    assert await tesla.wake_up(tokens.access_token, car.id) == "asleep"
    with pytest.raises(VehicleAsleep):
        await tesla.vehicle_data(tokens.access_token, car.id)


async def test_a_rate_limit_says_how_long_to_back_off(fleet: FakeFleet, tesla: TeslaFleetClient) -> None:
    car, tokens = await _charging_tesla(fleet, tesla)
    car.set_rate_limit(retry_after_s=120)

    with pytest.raises(RateLimited) as limited:
        await tesla.vehicle_data(tokens.access_token, car.id)
    assert limited.value.retry_after_s == 120
    assert limited.value.http_status == 429
    fleet.advance(minutes=1)
    with pytest.raises(RateLimited) as still_limited:
        await tesla.vehicle_data(tokens.access_token, car.id)
    assert still_limited.value.retry_after_s == 60

    fleet.advance(minutes=1)
    reading = await tesla.vehicle_data(tokens.access_token, car.id)

    assert reading.vehicle_id == car.id
    assert fleet.calls(car.id, "vehicle_data") == 3


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_a_server_error_is_unavailable_and_retryable(
    fleet: FakeFleet, tesla: TeslaFleetClient, status: int
) -> None:
    car, tokens = await _charging_tesla(fleet, tesla)
    car.fail_next(status)

    with pytest.raises(VehicleUnavailable) as unavailable:
        await tesla.vehicle_data(tokens.access_token, car.id)

    assert unavailable.value.http_status == status
    assert unavailable.value.retryable is True
    assert (await tesla.vehicle_data(tokens.access_token, car.id)).vehicle_id == car.id


async def test_a_timeout_is_unavailable(fleet: FakeFleet) -> None:
    car = fleet.add_tesla_vehicle(DRIVER)
    async with _tesla_for(fleet) as patient:
        tokens = await _connect_tesla(patient)
    fleet.response_delay = 0.5
    async with _tesla_for(fleet, timeout=0.05) as impatient:
        with pytest.raises(VehicleUnavailable, match="timed out"):
            await impatient.vehicle_data(tokens.access_token, car.id)


async def test_an_unreachable_api_is_unavailable(fleet: FakeFleet) -> None:
    # A port nothing listens on: bind one, then close it.
    server = await asyncio.start_server(lambda _reader, _writer: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with _tesla_for(fleet, api_base_url=f"http://127.0.0.1:{port}") as client:
        with pytest.raises(VehicleUnavailable, match="unreachable"):
            await client.vehicle_data("token", "1")


async def test_a_car_on_another_account_is_not_found(fleet: FakeFleet, tesla: TeslaFleetClient) -> None:
    theirs = fleet.add_tesla_vehicle(OTHER_DRIVER)
    fleet.add_tesla_vehicle(DRIVER)
    tokens = await _connect_tesla(tesla)

    with pytest.raises(VehicleNotFound):
        await tesla.vehicle_data(tokens.access_token, theirs.id)


async def test_a_bad_access_token_is_rejected_with_401(fleet: FakeFleet, tesla: TeslaFleetClient) -> None:
    car = fleet.add_tesla_vehicle(DRIVER)

    with pytest.raises(AccessTokenRejected) as rejected:  # a Reader answers it with a refresh
        await tesla.vehicle_data("eyJnot-a-token", car.id)

    assert rejected.value.http_status == 401
    assert fleet.calls(car.id) == 1


async def test_without_the_vehicle_data_scope_reads_are_refused(fleet: FakeFleet) -> None:
    car = fleet.add_tesla_vehicle(DRIVER)
    async with _tesla_for(fleet, scopes=("openid", "offline_access", "user_data")) as narrow:
        tokens = await _connect_tesla(narrow)
        with pytest.raises(VehicleApiRefused) as refused:
            await narrow.vehicle_data(tokens.access_token, car.id)
    assert refused.value.http_status == 403


async def test_without_the_location_scope_the_reading_has_no_position(fleet: FakeFleet) -> None:
    car = fleet.add_tesla_vehicle(DRIVER)
    car.plug_in(*STALL)
    async with _tesla_for(fleet, scopes=("openid", "offline_access", "vehicle_device_data")) as no_location:
        tokens = await _connect_tesla(no_location)
        reading = await no_location.vehicle_data(tokens.access_token, car.id)
    assert reading.charging is True
    assert (reading.lat, reading.lng) == (None, None)


def test_vehicle_data_fields_that_are_missing_or_odd_become_unknown() -> None:
    at = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    reading = reading_from_vehicle_data(
        {
            "charge_state": {
                "charging_state": "Charging",
                "battery_level": 41,
                "charge_energy_added": "12",  # not a number
                "charger_power": True,  # not a number either
                "time_to_full_charge": 1.25,  # hours; minutes_to_full_charge absent
                "fast_charger_present": False,
                "fast_charger_type": "<invalid>",
                "conn_charge_cable": "<invalid>",
            },
            "drive_state": {"latitude": 95.0, "longitude": -97.7},
        },
        vehicle_id="7",
        read_at=at,
    )
    assert reading == VehicleReading(
        vehicle_id="7",
        read_at=at,
        charging_state="Charging",
        charging=True,
        plugged_in=True,
        battery_pct=41,
        minutes_to_full=75,
    )
    with pytest.raises(VehicleUnavailable):
        reading_from_vehicle_data({"state": "online"}, vehicle_id="7", read_at=at)


# -- Tesla reader: tokens kept fresh ---------------------------------------------------------


async def test_the_reader_refreshes_after_a_401_and_keeps_the_rotated_tokens(
    fleet: FakeFleet, tesla: TeslaFleetClient
) -> None:
    car, tokens = await _charging_tesla(fleet, tesla)
    car.plug_in(*STALL)
    credentials = MemoryCredentials(tokens)
    reader: VehicleReader = tesla.reader(credentials)
    fleet.expire_access_tokens()

    reading = await reader.read(car.id)

    assert reading.charging is True
    [stored] = credentials.stored
    assert stored.refresh_token != tokens.refresh_token
    assert credentials.tokens == stored
    assert fleet.calls(car.id, "vehicle_data") == 2  # the 401, then the read with the new token
    # The next read uses the stored token directly.
    await reader.read(car.id)
    assert len(credentials.stored) == 1
    assert fleet.calls(car.id, "vehicle_data") == 3


async def test_the_reader_refreshes_shortly_before_expiry_without_a_401(
    fleet: FakeFleet, tesla: TeslaFleetClient
) -> None:
    car, tokens = await _charging_tesla(fleet, tesla)
    credentials = MemoryCredentials(tokens)
    reader = tesla.reader(credentials)
    fleet.advance(minutes=8 * 60 - 4)  # within the 5-minute margin of the 8-hour token

    await reader.read(car.id)

    assert len(credentials.stored) == 1
    assert fleet.calls(car.id, "vehicle_data") == 1


async def test_a_revoked_connection_reads_as_token_expired(fleet: FakeFleet, tesla: TeslaFleetClient) -> None:
    car, tokens = await _charging_tesla(fleet, tesla)
    credentials = MemoryCredentials(tokens)
    fleet.revoke(DRIVER)

    with pytest.raises(TokenExpired):
        await tesla.reader(credentials).read(car.id)

    assert credentials.stored == []


async def test_a_refresh_lost_to_another_replica_uses_the_winners_tokens(
    fleet: FakeFleet, tesla: TeslaFleetClient
) -> None:
    car, original = await _charging_tesla(fleet, tesla)
    fleet.expire_access_tokens()
    winner = await tesla.refresh(original.refresh_token)  # another replica rotated first
    credentials = StaleCredentials(winner, stale=original, stale_reads=2)

    reading = await tesla.reader(credentials).read(car.id)

    assert reading.vehicle_id == car.id
    assert credentials.stored == []  # nothing new was issued to us; the winner's tokens were used
    assert credentials.tokens == winner


async def test_concurrent_reads_with_an_expired_token_refresh_once(fleet: FakeFleet, tesla: TeslaFleetClient) -> None:
    car, tokens = await _charging_tesla(fleet, tesla)
    credentials = MemoryCredentials(tokens)
    fleet.expire_access_tokens()

    readings = await asyncio.gather(*(tesla.reader(credentials).read(car.id) for _ in range(3)))

    assert {reading.vehicle_id for reading in readings} == {car.id}
    # One refresh request, not three racing each other into invalid_grant.
    assert [request.form["grant_type"] for request in fleet.requests_to("POST", "/oauth2/v3/token")] == [
        "authorization_code",
        "refresh_token",
    ]
    assert credentials.tokens.refresh_token != tokens.refresh_token
    assert (await tesla.refresh(credentials.tokens.refresh_token)).refresh_token


async def test_the_reader_wakes_a_car_and_lists_vehicles(fleet: FakeFleet, tesla: TeslaFleetClient) -> None:
    car, tokens = await _charging_tesla(fleet, tesla)
    car.sleep()
    reader = tesla.reader(MemoryCredentials(tokens))

    with pytest.raises(VehicleAsleep):
        await reader.read(car.id)
    assert await reader.wake(car.id) is True
    assert (await reader.read(car.id)).vehicle_id == car.id
    assert [vehicle.id for vehicle in await reader.vehicles()] == [car.id]
    assert fleet.calls(car.id) == 3


# -- Smartcar ----------------------------------------------------------------------------------


async def test_smartcar_consent_tokens_user_and_vehicles(fleet: FakeFleet, smartcar: SmartcarClient) -> None:
    car = fleet.add_smartcar_vehicle(DRIVER)
    fleet.add_smartcar_vehicle(OTHER_DRIVER)

    tokens = await _connect_smartcar(fleet, smartcar)

    assert tokens.access_token and tokens.refresh_token
    assert await smartcar.user_id(tokens.access_token) == fleet.account_id(SMARTCAR, DRIVER)
    assert await smartcar.list_vehicles(tokens.access_token) == [car.id]
    [exchange] = fleet.requests_to("POST", "/oauth/token")
    assert exchange.headers["authorization"].startswith("Basic ")
    assert exchange.form == {
        "grant_type": "authorization_code",
        "code": exchange.form["code"],
        "redirect_uri": SMARTCAR_REDIRECT_URI,
    }
    [authorize] = fleet.requests_to("GET", "/oauth/authorize")
    assert set(authorize.query["scope"].split()) == {
        "read_vehicle_info",
        "read_battery",
        "read_charge",
        "read_location",
    }


async def test_smartcar_refresh_rotates_and_the_old_token_is_refused(
    fleet: FakeFleet, smartcar: SmartcarClient
) -> None:
    fleet.add_smartcar_vehicle(DRIVER)
    first = await _connect_smartcar(fleet, smartcar)

    second = await smartcar.refresh(first.refresh_token)

    assert second.refresh_token != first.refresh_token
    with pytest.raises(TokenExpired):
        await smartcar.refresh(first.refresh_token)


async def test_smartcar_reading_of_a_charging_car(fleet: FakeFleet, smartcar: SmartcarClient) -> None:
    car = fleet.add_smartcar_vehicle(DRIVER, battery_pct=40, capacity_kwh=80)
    tokens = await _connect_smartcar(fleet, smartcar)
    car.plug_in(*STALL, connector="CCS1", power_kw=48)
    fleet.advance(minutes=20)  # 16 kWh = 20 % of 80 kWh

    reading = await smartcar.read(tokens.access_token, car.id)

    assert (reading.charging_state, reading.charging, reading.plugged_in) == ("CHARGING", True, True)
    assert reading.battery_pct == 60
    assert (reading.lat, reading.lng) == STALL
    assert reading.read_at == fleet.now
    # Smartcar's v2.0 endpoints say nothing about power or energy.
    assert (reading.power_kw, reading.kwh_added, reading.connector) == (None, None, "")
    assert (fleet.calls(car.id, "charge"), fleet.calls(car.id, "battery"), fleet.calls(car.id, "location")) == (1, 1, 1)


@pytest.mark.parametrize(
    ("script", "state", "plugged_in"),
    [
        ("complete", "FULLY_CHARGED", True),
        ("stopped", "NOT_CHARGING", True),
        ("unplugged", "NOT_CHARGING", False),
    ],
)
async def test_smartcar_states_other_than_charging_are_not_charging(
    fleet: FakeFleet, smartcar: SmartcarClient, script: str, state: str, plugged_in: bool
) -> None:
    car = fleet.add_smartcar_vehicle(DRIVER, battery_pct=89, charge_limit_pct=90)
    tokens = await _connect_smartcar(fleet, smartcar)
    car.plug_in(*HOME, connector="J1772", power_kw=7)
    if script == "complete":
        fleet.advance(minutes=60)
    elif script == "stopped":
        car.stop_charging()
    else:
        car.unplug()

    reading = await smartcar.read(tokens.access_token, car.id)

    assert (reading.charging_state, reading.charging, reading.plugged_in) == (state, False, plugged_in)


async def test_smartcar_asleep_rate_limited_and_outage(fleet: FakeFleet, smartcar: SmartcarClient) -> None:
    car = fleet.add_smartcar_vehicle(DRIVER)
    tokens = await _connect_smartcar(fleet, smartcar)

    car.sleep()
    with pytest.raises(VehicleAsleep) as asleep:
        await smartcar.read(tokens.access_token, car.id)
    assert (asleep.value.http_status, asleep.value.provider_code) == (409, "VEHICLE_STATE:ASLEEP")
    car.wake()

    car.set_rate_limit(retry_after_s=30)
    with pytest.raises(RateLimited) as limited:
        await smartcar.read(tokens.access_token, car.id)
    assert limited.value.retry_after_s == 30
    assert limited.value.provider_code == "RATE_LIMIT:VEHICLE"
    car.clear_rate_limit()

    car.fail_next(502, times=3)
    with pytest.raises(VehicleUnavailable):
        await smartcar.read(tokens.access_token, car.id)

    assert (await smartcar.read(tokens.access_token, car.id)).vehicle_id == car.id


async def test_smartcar_reader_refreshes_after_a_401(fleet: FakeFleet, smartcar: SmartcarClient) -> None:
    car = fleet.add_smartcar_vehicle(DRIVER)
    car.plug_in(*STALL)
    tokens = await _connect_smartcar(fleet, smartcar)
    credentials = MemoryCredentials(tokens)
    reader: VehicleReader = smartcar.reader(credentials)
    fleet.expire_access_tokens()

    reading = await reader.read(car.id)

    assert reading.charging is True
    assert len(credentials.stored) == 1
    assert await reader.wake(car.id) is False  # Smartcar has no wake command: nothing is sent
    fleet.revoke(DRIVER, provider=SMARTCAR)
    with pytest.raises(TokenExpired):
        await reader.read(car.id)


async def test_smartcar_without_location_permission_reads_without_a_position(fleet: FakeFleet) -> None:
    car = fleet.add_smartcar_vehicle(DRIVER)
    car.plug_in(*STALL)
    async with _smartcar_for(fleet, scopes=("read_vehicle_info", "read_battery", "read_charge")) as client:
        tokens = await _connect_smartcar(fleet, client)
        reading = await client.read(tokens.access_token, car.id)
    assert reading.charging is True
    assert reading.battery_pct is not None
    assert (reading.lat, reading.lng) == (None, None)


# -- Smartcar webhooks -------------------------------------------------------------------------


class WebhookReceiver:
    """A minimal endpoint doing what HandleSmartcarWebhook does with a delivery: verify, then answer the
    challenge or read the event."""

    def __init__(self, management_token: str) -> None:
        self._token = management_token
        self.readings: list[VehicleReading] = []
        self.arrived = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}/v1/webhooks/smartcar"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while (request := await read_request(reader, 64 * 1024)) is not None:
                status, answer = self._handle(request.headers.get("sc-signature"), request.body)
                body = json.dumps(answer).encode()
                head = (
                    f"HTTP/1.1 {status} {reason_phrase(status)}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                )
                writer.write(head.encode() + body)
                await writer.drain()
        except ConnectionError:
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    def _handle(self, signature: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            event = verify_webhook(body, signature, self._token)
            challenge = verify_challenge(event)
            if challenge is not None:
                return 200, {"challenge": challenge_response(challenge, self._token)}
            reading = reading_from_webhook(event, read_at=datetime(2026, 3, 2, tzinfo=UTC))
        except WebhookSignatureInvalid as error:
            return 401, {"reason": "SIGNATURE_INVALID", "detail": str(error)}
        except WebhookPayloadInvalid as error:
            return 400, {"reason": "WEBHOOK_PAYLOAD_INVALID", "detail": str(error)}
        if reading is not None:
            self.readings.append(reading)
            self.arrived.set()
        return 200, {}


@pytest_asyncio.fixture
async def receiver(fleet: FakeFleet) -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(fleet.smartcar_management_token) as endpoint:
        yield endpoint


async def test_a_signed_vehicle_state_webhook_is_read(fleet: FakeFleet, receiver: WebhookReceiver) -> None:
    car = fleet.add_smartcar_vehicle(DRIVER, battery_pct=50, capacity_kwh=100)
    car.plug_in(*STALL, connector="CCS1", power_kw=60)
    fleet.advance(minutes=10)

    response = await fleet.send_smartcar_event(receiver.url, car.id)

    assert response.status_code == 200
    [reading] = receiver.readings
    assert (reading.vehicle_id, reading.charging, reading.plugged_in) == (car.id, True, True)
    assert reading.battery_pct == 60
    assert reading.kwh_added == pytest.approx(10.0)
    assert reading.power_kw == pytest.approx(60.0)
    assert reading.minutes_to_full == car.minutes_to_full
    assert (reading.lat, reading.lng) == STALL


async def test_the_verify_challenge_is_answered_with_its_hmac(fleet: FakeFleet, receiver: WebhookReceiver) -> None:
    response, expected = await fleet.send_smartcar_verify(receiver.url)

    assert response.status_code == 200
    assert response.json() == {"challenge": expected}


async def test_a_webhook_without_a_signature_is_refused(fleet: FakeFleet, receiver: WebhookReceiver) -> None:
    car = fleet.add_smartcar_vehicle(DRIVER)
    body = json.dumps(fleet.smartcar_event(car.id)).encode()

    response = await fleet.post_smartcar_webhook(receiver.url, body, signature=None)

    assert response.status_code == 401
    assert receiver.readings == []


async def test_a_webhook_signed_with_another_secret_is_refused(fleet: FakeFleet, receiver: WebhookReceiver) -> None:
    car = fleet.add_smartcar_vehicle(DRIVER)
    body = json.dumps(fleet.smartcar_event(car.id)).encode()
    forged = hmac.new(b"not-the-management-token", body, hashlib.sha256).hexdigest()

    response = await fleet.post_smartcar_webhook(receiver.url, body, signature=forged)

    assert response.status_code == 401
    assert receiver.readings == []


async def test_a_tampered_webhook_body_is_refused(fleet: FakeFleet, receiver: WebhookReceiver) -> None:
    car = fleet.add_smartcar_vehicle(DRIVER)
    car.plug_in(*STALL)
    body = json.dumps(fleet.smartcar_event(car.id)).encode()
    signature = fleet.sign_smartcar(body)
    tampered = body.replace(b'"value": true', b'"value": false', 1)
    assert tampered != body

    response = await fleet.post_smartcar_webhook(receiver.url, tampered, signature=signature)

    assert response.status_code == 401
    assert receiver.readings == []


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"eventType": "VEHICLE_STATE", "data": []}'])
async def test_a_signed_body_that_is_not_an_event_is_invalid(
    fleet: FakeFleet, receiver: WebhookReceiver, body: bytes
) -> None:
    response = await fleet.post_smartcar_webhook(receiver.url, body, signature=fleet.sign_smartcar(body))

    assert response.status_code == 400
    assert response.json()["reason"] == "WEBHOOK_PAYLOAD_INVALID"


async def test_the_fake_announces_charging_changes_to_its_webhook_url(
    fleet: FakeFleet, receiver: WebhookReceiver
) -> None:
    car = fleet.add_smartcar_vehicle(DRIVER)
    fleet.smartcar_webhook_url = receiver.url

    car.plug_in(*STALL)
    await asyncio.wait_for(receiver.arrived.wait(), timeout=5)
    receiver.arrived.clear()
    car.unplug()
    await asyncio.wait_for(receiver.arrived.wait(), timeout=5)

    assert [(reading.vehicle_id, reading.charging) for reading in receiver.readings] == [
        (car.id, True),
        (car.id, False),
    ]


def test_signature_checks_are_strict_about_their_inputs() -> None:
    body = b'{"eventType": "VEHICLE_STATE"}'
    signature = hmac.new(b"amt", body, hashlib.sha256).hexdigest()

    assert verify_webhook(body, signature.upper(), "amt") == {"eventType": "VEHICLE_STATE"}
    for bad in ("", "   ", "sha256=" + signature, signature[:-1], "zz" * 32, "é" * 64):
        with pytest.raises(WebhookSignatureInvalid):
            verify_webhook(body, bad, "amt")
    with pytest.raises(ValueError, match="not configured"):
        verify_webhook(body, signature, "")


def test_verify_challenge_understands_both_payload_versions() -> None:
    assert verify_challenge({"eventType": "VERIFY", "data": {"challenge": "abc"}}) == "abc"
    assert verify_challenge({"eventName": "verify", "version": "2.0", "payload": {"challenge": "xyz"}}) == "xyz"
    assert verify_challenge({"eventType": "VEHICLE_STATE", "data": {}}) is None
    with pytest.raises(WebhookPayloadInvalid):
        verify_challenge({"eventType": "VERIFY", "data": {}})
    assert challenge_response("abc", "amt") == hmac.new(b"amt", b"abc", hashlib.sha256).hexdigest()


# -- helpers -----------------------------------------------------------------------------------


def test_retry_after_accepts_seconds_an_http_date_or_falls_back() -> None:
    now = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    later = (now + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")

    assert retry_after_s(httpx.Headers({"Retry-After": "17"}), now) == 17
    assert retry_after_s(httpx.Headers({"Retry-After": later}), now) == 90
    assert retry_after_s(httpx.Headers({"RateLimit-Reset": "42"}), now) == 42
    assert retry_after_s(httpx.Headers({"Retry-After": "soon"}), now) == DEFAULT_RETRY_AFTER_S
    assert retry_after_s(httpx.Headers({}), now) == DEFAULT_RETRY_AFTER_S


# -- the fake's command line -------------------------------------------------------------------


async def _cli(fleet: FakeFleet, capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    # The CLI is a synchronous httpx client: run it off the loop the fake serves on.
    await asyncio.to_thread(main, ["--url", fleet.base_url, *argv])
    printed: dict[str, Any] = json.loads(capsys.readouterr().out)
    return printed


async def test_the_cli_scripts_a_running_fleet(fleet: FakeFleet, capsys: pytest.CaptureFixture[str]) -> None:
    added = await _cli(fleet, capsys, "add-vehicle", "--owner", DRIVER, "--battery", "20")
    car = fleet.vehicle(added["id"])

    plugged = await _cli(fleet, capsys, "plug-in", car.id, "--lat", "30.265", "--lng", "-97.739", "--power-kw", "50")
    advanced = await _cli(fleet, capsys, "advance", "--minutes", "15")
    limited = await _cli(fleet, capsys, "rate-limit", car.id, "--retry-after-s", "30")
    unplugged = await _cli(fleet, capsys, "unplug", car.id)

    assert plugged["charging_state"] == "Starting"
    [state] = advanced["vehicles"]
    assert state["charging_state"] == "Charging"
    assert state["energy_added_kwh"] == pytest.approx(12.5)
    assert limited["rate_limited_for_s"] == 30
    assert unplugged["charging_state"] == "Disconnected"
    assert (car.lat, car.lng) == (30.265, -97.739)
    with pytest.raises(SystemExit):
        await asyncio.to_thread(main, ["--url", fleet.base_url, "unplug", "no-such-car"])
    assert "error" in json.loads(capsys.readouterr().out)
