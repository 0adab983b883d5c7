"""Helpers of the sessions tests (also used by the end-to-end tests): positions, a driver with a linked Tesla
at the fake fleet, and skipping the 30-second poll window."""

from __future__ import annotations

import math
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncEngine

from fakes.fleet import FakeFleet, FakeVehicle
from fakes.twilio_verify import FakeTwilioVerify
from services.common.config import Env
from services.sessions.adapters.tesla import TeslaFleetClient
from services.sessions.config import SessionsSettings
from services.sessions.connections import save_connection
from services.sessions.tokens import TokenCipher
from tests.support.mesh import Mesh
from tests.support.people import Person
from tests.support.rpc import phone_login, random_phone

EARTH_RADIUS_M = 6_371_000.0


def north_of(lat: float, lng: float, metres: float) -> tuple[float, float]:
    """The point `metres` north of (lat, lng), great-circle."""
    return lat + math.degrees(metres / EARTH_RADIUS_M), lng


async def driver_with_tesla(
    mesh: Mesh, twilio: FakeTwilioVerify, fleet: FakeFleet, engine: AsyncEngine
) -> tuple[Person, FakeVehicle]:
    """A signed-in driver whose Tesla account (one car) is linked, as the Tesla connect flow leaves it."""
    login = await phone_login(mesh.channels["accounts"], twilio, random_phone())
    driver = Person(user_id=login.user.public_id, token=login.access_token)
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    car = fleet.add_tesla_vehicle(email)
    async with TeslaFleetClient(
        client_id=fleet.tesla_client_id,
        client_secret=fleet.tesla_client_secret,
        redirect_uri="http://127.0.0.1:8080/v1/auth/tesla/callback",
        api_base_url=fleet.base_url,
        authorize_base_url=fleet.base_url,
        token_base_url=fleet.base_url,
    ) as tesla:
        start = tesla.start_authorization(login_hint=email)
        async with httpx.AsyncClient() as browser:
            consent = await browser.get(start.url)
        code = parse_qs(urlsplit(consent.headers["location"]).query)["code"][0]
        tokens = await tesla.exchange_code(code, start.code_verifier)
        vehicles = await tesla.list_vehicles(tokens.access_token)
    cipher = TokenCipher.from_config(SessionsSettings.from_env(Env.development()).vehicle_token_keys.value)
    await save_connection(
        engine, cipher, driver_id=driver.user_id, tokens=tokens, vehicles=[{"id": v.id, "vin": v.vin} for v in vehicles]
    )
    return driver, car


async def next_window(cache: redis.Redis, driver: Person) -> None:
    """The 30-second window passes (the test does not wait for it)."""
    await cache.delete(f"poll:read:{driver.user_id}", f"poll:answer:{driver.user_id}")
