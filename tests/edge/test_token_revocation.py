"""'Log out everywhere' and role changes end the access tokens already handed out within seconds — on every
service, through the real Envoy whose JWT cache has already seen the token."""

from __future__ import annotations

from typing import Any

import httpx

from fakes.twilio_verify import FakeTwilioVerify
from tests.support.eventually import eventually
from tests.support.people import NewPerson
from tests.support.rpc import random_phone

# How long a revocation may take to reach every service process (it usually takes milliseconds).
REVOCATION_BOUND_S = 5.0


def _reason(body: dict[str, Any]) -> str:
    for detail in body.get("details", []):
        if detail.get("@type", "").endswith("google.rpc.ErrorInfo"):
            return str(detail["reason"])
    return ""


async def _refused_within_bound(rest: httpx.AsyncClient, path: str, headers: dict[str, str]) -> httpx.Response:
    """Calls `path` until it is refused, for at most REVOCATION_BOUND_S; returns the refusal."""

    async def refused() -> httpx.Response:
        reply = await rest.get(path, headers=headers)
        assert reply.status_code == 401, reply.text
        return reply

    return await eventually(refused, within=REVOCATION_BOUND_S)


async def _login(rest: httpx.AsyncClient, twilio: FakeTwilioVerify, phone: str) -> dict[str, Any]:
    assert (await rest.post("/v1/auth/otp/start", json={"phone": phone})).status_code == 200
    verified = await rest.post("/v1/auth/otp/verify", json={"phone": phone, "code": twilio.last_code_sent_to(phone)})
    assert verified.status_code == 200, verified.text
    body: dict[str, Any] = verified.json()
    return body


async def test_log_out_everywhere_ends_access_tokens_on_every_service(
    rest: httpx.AsyncClient, twilio: FakeTwilioVerify
) -> None:
    login = await _login(rest, twilio, random_phone())
    other_device = await _login(rest, twilio, login["user"]["phone"])
    auth = {"Authorization": f"Bearer {login['access_token']}"}
    other_auth = {"Authorization": f"Bearer {other_device['access_token']}"}
    # Verified once by Envoy (cached) and by the services (cached verdicts).
    assert (await rest.get("/v1/auth/me", headers=other_auth)).status_code == 200
    assert (await rest.get("/v1/wallet/balance", headers=other_auth)).status_code == 200

    logout = await rest.post("/v1/auth/logout", json={"all_devices": True}, headers=auth)
    assert logout.status_code == 200, logout.text

    for path in ("/v1/auth/me", "/v1/wallet/balance", "/v1/charging-sessions/active"):
        reply = await _refused_within_bound(rest, path, other_auth)
        assert reply.status_code == 401, (path, reply.text)
        assert _reason(reply.json()) == "TOKEN_REVOKED"
    # The refresh tokens died with them; a new login works at once.
    refresh = await rest.post("/v1/auth/refresh", json={"refresh_token": other_device["refresh_token"]})
    assert refresh.status_code == 401
    again = await _login(rest, twilio, login["user"]["phone"])
    assert (await rest.get("/v1/auth/me", headers={"Authorization": f"Bearer {again['access_token']}"})).is_success


async def test_a_removed_role_stops_working_within_seconds_and_refresh_brings_the_new_roles(
    rest: httpx.AsyncClient, twilio: FakeTwilioVerify, person: NewPerson
) -> None:
    admin = await person("admin")
    phone = random_phone()
    login = await _login(rest, twilio, phone)
    user_id = login["user"]["public_id"]
    made_sponsor = await rest.post(
        f"/v1/admin/users/{user_id}:setRoles",
        json={"roles": ["ROLE_DRIVER", "ROLE_SPONSOR"], "reason": "pilot sponsor"},
        headers=admin.headers,
    )
    assert made_sponsor.status_code == 200, made_sponsor.text
    refreshed = await rest.post("/v1/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    sponsor_auth = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    assert (await rest.get("/v1/campaigns", headers=sponsor_auth)).status_code == 200

    removed = await rest.post(
        f"/v1/admin/users/{user_id}:setRoles",
        json={"roles": ["ROLE_DRIVER"], "reason": "pilot over"},
        headers=admin.headers,
    )
    assert removed.status_code == 200, removed.text

    reply = await _refused_within_bound(rest, "/v1/campaigns", sponsor_auth)
    assert reply.status_code == 401, reply.text
    assert _reason(reply.json()) == "TOKEN_REVOKED"
    renewed = await rest.post("/v1/auth/refresh", json={"refresh_token": refreshed.json()["refresh_token"]})
    assert renewed.status_code == 200, renewed.text
    driver_auth = {"Authorization": f"Bearer {renewed.json()['access_token']}"}
    assert (await rest.get("/v1/auth/me", headers=driver_auth)).json()["user"]["roles"] == ["ROLE_DRIVER"]
    assert (await rest.get("/v1/campaigns", headers=driver_auth)).status_code == 403
