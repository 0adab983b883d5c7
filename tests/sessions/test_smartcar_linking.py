"""A car shared through Smartcar, all through Envoy REST against the fake fleet's Smartcar side: Connect (OAuth
with a single-use state) → status → a charge the poll reads through Smartcar → unplugged → the campaign's grant,
then disconnect."""

from __future__ import annotations

import datetime
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import redis.asyncio as redis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from fakes.fleet import SMARTCAR, FakeFleet
from fakes.twilio_verify import FakeTwilioVerify
from services.sessions import store
from tests.sessions.helpers import next_window
from tests.sessions.test_watcher import campaign_at
from tests.support.eventually import eventually
from tests.support.mesh import Mesh
from tests.support.people import Person


async def test_connect_charge_end_and_earn_with_a_smartcar_car_through_envoy(
    mesh: Mesh,
    twilio: FakeTwilioVerify,
    fleet: FakeFleet,
    engine: AsyncEngine,
    redis_url: str,
    rest: httpx.AsyncClient,
    driver: Person,
    charger: tuple[str, float, float],
) -> None:
    charger_id, lat, lng = charger
    await campaign_at(mesh, twilio, charger_id)
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    car = fleet.add_smartcar_vehicle(email)
    fleet.login_as(email, provider=SMARTCAR)
    auth = {"Authorization": f"Bearer {driver.token}"}

    assert (await rest.get("/v1/auth/smartcar/status", headers=auth)).json().get("connected", False) is False
    connect = (await rest.get("/v1/auth/smartcar/connect", headers=auth)).json()
    async with httpx.AsyncClient() as browser:
        consent = await browser.get(connect["authorization_url"])
    back = parse_qs(urlsplit(consent.headers["location"]).query)
    assert back["state"] == [connect["state"]]
    page = await rest.get("/v1/auth/smartcar/callback", params={"code": back["code"][0], "state": back["state"][0]})
    assert page.status_code == 302 and page.headers["location"].endswith("/smartcar-connected?success=true")
    replayed = await rest.get("/v1/auth/smartcar/callback", params={"code": back["code"][0], "state": back["state"][0]})
    assert "error=invalid_state" in replayed.text  # single use
    status = (await rest.get("/v1/auth/smartcar/status", headers=auth)).json()
    assert status["connected"] is True and status["vehicle_id"] == car.id

    cache = redis.Redis.from_url(redis_url)
    try:
        car.plug_in(lat, lng, power_kw=11.0)
        opened = (await rest.post("/v1/charging-sessions/poll", json={}, headers=auth)).json()
        assert opened["session_active"] is True, opened
        assert fleet.calls(car.id, "charge") == 1  # read through Smartcar
        s = store.charging_sessions
        async with engine.begin() as conn:  # the car has been charging 20 minutes (the test does not wait)
            await conn.execute(
                sa.update(s)
                .where(s.c.id == uuid.UUID(opened["session_id"]))
                .values(session_start=s.c.session_start - datetime.timedelta(minutes=20))
            )
        car.unplug()
        await next_window(cache, driver)
        ended = (await rest.post("/v1/charging-sessions/poll", json={}, headers=auth)).json()
        assert ended["session_ended"] is True and ended["session_id"] == opened["session_id"], ended
    finally:
        await cache.aclose()

    async def granted() -> dict[str, Any]:
        active = (await rest.get("/v1/charging-sessions/active", headers=auth)).json()
        assert "incentive" in active.get("last_ended_session", {}), active
        last: dict[str, Any] = active["last_ended_session"]
        return last

    last = await eventually(granted)
    assert (last["source"], last["ended_reason"]) == ("SESSION_SOURCE_SMARTCAR", "END_REASON_UNPLUGGED")
    assert last["incentive"]["amount_cents"] == 225

    assert (await rest.post("/v1/auth/smartcar/disconnect", json={}, headers=auth)).json()["disconnected"] is True
    after = (await rest.get("/v1/auth/smartcar/status", headers=auth)).json()
    assert after.get("connected", False) is False
    polled = (await rest.post("/v1/charging-sessions/poll", json={}, headers=auth)).json()
    assert polled.get("error") in (None, "POLL_ERROR_NO_VEHICLE_CONNECTION")
