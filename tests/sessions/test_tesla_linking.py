"""Linking a Tesla account through Envoy, as the driver app and the browser do it: connect (PKCE, single-use
state), Tesla's consent at the fake fleet, the callback page, status, choosing the vehicle, unlinking."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import httpx

from fakes.fleet import FakeFleet
from fakes.twilio_verify import FakeTwilioVerify
from tests.support.mesh import Mesh
from tests.support.rpc import phone_login, random_phone


async def signed_in(mesh: Mesh, twilio: FakeTwilioVerify) -> dict[str, str]:
    login = await phone_login(mesh.channels["accounts"], twilio, random_phone())
    return {"Authorization": f"Bearer {login.access_token}"}


async def consent(url: str, fleet: FakeFleet, email: str) -> str:
    """The browser at Tesla's consent page: the path and query Tesla sends it back to."""
    fleet.login_as(email)
    async with httpx.AsyncClient() as browser:
        redirect = await browser.get(url)
    assert redirect.status_code == 302
    back = urlsplit(redirect.headers["location"])
    return f"{back.path}?{back.query}"


async def test_link_choose_and_unlink_a_tesla(
    mesh: Mesh, twilio: FakeTwilioVerify, fleet: FakeFleet, rest: httpx.AsyncClient
) -> None:
    auth = await signed_in(mesh, twilio)
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    first, second = (
        fleet.add_tesla_vehicle(email, display_name="Red"),
        fleet.add_tesla_vehicle(email, display_name="Blue"),
    )
    status = (await rest.get("/v1/auth/tesla/status", headers=auth)).json()
    assert status.get("connected", False) is False and status.get("needs_reconnect", False) is False

    started = (await rest.get("/v1/auth/tesla/connect", headers=auth)).json()
    query = parse_qs(urlsplit(started["authorization_url"]).query)
    assert query["state"] == [started["state"]] and query["code_challenge_method"] == ["S256"]
    callback = await consent(started["authorization_url"], fleet, email)
    page = await rest.get(callback)  # no bearer token: the state says whose it is
    # A real 302 to the app, as the first system answered (the page in the body says the same for gRPC callers).
    assert page.status_code == 302, page.text
    assert page.headers["location"] == "http://localhost:5173/tesla-connected?success=true"
    assert "x-nerava-redirect" not in page.headers
    assert "/tesla-connected?success=true" in page.text
    replayed = await rest.get(callback)
    assert replayed.status_code == 302
    assert replayed.headers["location"].endswith("/tesla-connected?error=invalid_state")  # the state is single use

    status = (await rest.get("/v1/auth/tesla/status", headers=auth)).json()
    assert status["connected"] is True and {v["display_name"] for v in status["vehicles"]} == {"Red", "Blue"}
    assert status.get("vehicle_id", "") == ""  # two cars: the driver chooses
    chosen = await rest.post("/v1/auth/tesla/select-vehicle", json={"vehicle_id": second.id}, headers=auth)
    assert chosen.status_code == 200 and chosen.json()["vehicle"]["display_name"] == "Blue"
    unknown = await rest.post("/v1/auth/tesla/select-vehicle", json={"vehicle_id": "123"}, headers=auth)
    assert unknown.status_code == 404
    assert (await rest.get("/v1/auth/tesla/status", headers=auth)).json()["vehicle_id"] == second.id
    assert first.id != second.id

    gone = await rest.post("/v1/auth/tesla/disconnect", json={}, headers=auth)
    assert gone.json() == {"disconnected": True}
    assert (await rest.get("/v1/auth/tesla/status", headers=auth)).json().get("connected", False) is False


async def test_a_refused_consent_and_a_forged_state_go_back_to_the_app_with_an_error(
    mesh: Mesh, twilio: FakeTwilioVerify, fleet: FakeFleet, rest: httpx.AsyncClient
) -> None:
    auth = await signed_in(mesh, twilio)
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    fleet.add_tesla_vehicle(email)
    started = (await rest.get("/v1/auth/tesla/connect", headers=auth)).json()
    fleet.deny_next_consent()
    refused = await rest.get(await consent(started["authorization_url"], fleet, email))
    assert "/tesla-connected?error=" in refused.text
    forged = await rest.get("/v1/auth/tesla/callback", params={"code": "x", "state": "not-ours"})
    assert "error=invalid_state" in forged.text
    status = (await rest.get("/v1/auth/tesla/status", headers=auth)).json()
    assert status.get("connected", False) is False
