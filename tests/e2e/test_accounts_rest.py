"""The apps' view: REST/JSON through the real Envoy to the accounts service."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fakes.twilio_verify import FakeTwilioVerify
from tests.support.eventually import eventually
from tests.support.otlp import OtlpCollector
from tests.support.rpc import random_phone


def _reason(body: dict[str, Any]) -> str:
    for detail in body.get("details", []):
        if detail.get("@type", "").endswith("google.rpc.ErrorInfo"):
            return str(detail["reason"])
    return ""


async def _login(rest: httpx.AsyncClient, twilio: FakeTwilioVerify, phone: str) -> dict[str, Any]:
    started = await rest.post("/v1/auth/otp/start", json={"phone": phone})
    assert started.status_code == 200, started.text
    verified = await rest.post("/v1/auth/otp/verify", json={"phone": phone, "code": twilio.last_code_sent_to(phone)})
    assert verified.status_code == 200, verified.text
    body: dict[str, Any] = verified.json()
    return body


async def test_login_and_read_me(rest: httpx.AsyncClient, twilio: FakeTwilioVerify) -> None:
    phone = random_phone()
    started = await rest.post("/v1/auth/otp/start", json={"phone": phone})
    assert started.json() == {"otp_sent": True}
    verified = await rest.post("/v1/auth/otp/verify", json={"phone": phone, "code": twilio.last_code_sent_to(phone)})
    body = verified.json()
    assert body["token_type"] == "bearer"
    assert body["access_token"].count(".") == 2
    assert body["refresh_token"]
    assert isinstance(body["expires_in"], int)  # the apps read numbers, not strings
    me = await rest.get("/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200, me.text
    user = me.json()["user"]
    assert user["roles"] == ["ROLE_DRIVER"]
    assert user["phone"] == phone
    # Unknown is absent, never "": a phone sign-in knows no email or name (the app reads them as unknown).
    assert "email" not in user and "name" not in user, user
    assert "email" not in body["user"] and "name" not in body["user"], body["user"]
    assert user["created_at"].endswith("Z")
    assert me.headers["x-request-id"]


async def test_an_email_sign_in_prints_the_email_and_leaves_the_unknown_name_absent(
    rest: httpx.AsyncClient, twilio: FakeTwilioVerify
) -> None:
    email = f"driver-{uuid.uuid4().hex[:10]}@example.com"
    started = await rest.post("/v1/auth/email-otp/start", json={"email": email})
    assert started.status_code == 200, started.text
    verified = await rest.post(
        "/v1/auth/email-otp/verify", json={"email": email, "code": twilio.last_code_sent_to(email)}
    )
    assert verified.status_code == 200, verified.text
    me = await rest.get("/v1/auth/me", headers={"Authorization": f"Bearer {verified.json()['access_token']}"})
    user = me.json()["user"]
    assert user["email"] == email
    assert "name" not in user, user


async def test_without_a_token_is_401_with_a_json_status(rest: httpx.AsyncClient) -> None:
    reply = await rest.get("/v1/auth/me")
    assert reply.status_code == 401
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json()["code"] == 16


async def test_a_forged_token_is_401(rest: httpx.AsyncClient) -> None:
    forged = "eyJhbGciOiJFUzI1NiIsImtpZCI6Im5vcGUifQ.eyJzdWIiOiJ4In0.c2ln"
    reply = await rest.get("/v1/auth/me", headers={"Authorization": f"Bearer {forged}"})
    assert reply.status_code == 401
    assert reply.json()["code"] == 16


async def test_bad_phone_is_400_naming_the_field(rest: httpx.AsyncClient) -> None:
    reply = await rest.post("/v1/auth/otp/start", json={"phone": "12"})
    assert reply.status_code == 400
    body = reply.json()
    assert body["code"] == 3
    violations = [
        v for d in body["details"] if d["@type"].endswith("google.rpc.BadRequest") for v in d["field_violations"]
    ]
    assert [v["field"] for v in violations] == ["phone"]
    assert _reason(body) == "INVALID_ARGUMENT"


async def test_unknown_path_is_404_and_unknown_input_is_ignored_alike_in_query_and_body(
    rest: httpx.AsyncClient, twilio: FakeTwilioVerify
) -> None:
    missing = await rest.get("/v1/no/such/thing")
    assert missing.status_code == 404
    assert missing.json()["code"] == 5
    assert _reason(missing.json()) == "NOT_FOUND"
    login = await _login(rest, twilio, random_phone())
    unknown = await rest.get("/v1/auth/me?colour=blue", headers={"Authorization": f"Bearer {login['access_token']}"})
    assert unknown.status_code == 200
    refreshed = await rest.post("/v1/auth/refresh", json={"refresh_token": login["refresh_token"], "colour": "blue"})
    assert refreshed.status_code == 200


async def test_refresh_reuse_revokes_the_family_over_rest(rest: httpx.AsyncClient, twilio: FakeTwilioVerify) -> None:
    login = await _login(rest, twilio, random_phone())
    rotated = await rest.post("/v1/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert rotated.status_code == 200
    reused = await rest.post("/v1/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert reused.status_code == 401
    assert _reason(reused.json()) == "REFRESH_TOKEN_REUSED"
    dead = await rest.post("/v1/auth/refresh", json={"refresh_token": rotated.json()["refresh_token"]})
    assert dead.status_code == 401


async def test_sixth_wrong_code_locks_and_start_beyond_the_limit_is_429(
    rest: httpx.AsyncClient, twilio: FakeTwilioVerify
) -> None:
    phone = random_phone()
    await rest.post("/v1/auth/otp/start", json={"phone": phone})
    wrong = "111111" if twilio.last_code_sent_to(phone) != "111111" else "222222"
    answers = [(await rest.post("/v1/auth/otp/verify", json={"phone": phone, "code": wrong})) for _ in range(6)]
    assert [a.status_code for a in answers] == [401] * 5 + [429]
    assert _reason(answers[-1].json()) == "OTP_LOCKED"
    other = random_phone()
    starts = [(await rest.post("/v1/auth/otp/start", json={"phone": other})).status_code for _ in range(6)]
    assert starts == [200] * 5 + [429]


async def test_cors_preflight_from_an_app_origin(rest: httpx.AsyncClient) -> None:
    reply = await rest.options(
        "/v1/auth/otp/start",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert reply.status_code == 200
    assert reply.headers["access-control-allow-origin"] == "http://localhost:5173"
    denied = await rest.options(
        "/v1/auth/otp/start", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in denied.headers


async def test_one_rest_call_is_one_trace_across_gateway_and_service(
    rest: httpx.AsyncClient,
    twilio: FakeTwilioVerify,
    span_exporter: InMemorySpanExporter,
    otlp_collector: OtlpCollector,
) -> None:
    login = await _login(rest, twilio, random_phone())
    span_exporter.clear()
    reply = await rest.get("/v1/auth/me", headers={"Authorization": f"Bearer {login['access_token']}"})
    assert reply.status_code == 200

    def ended_service_spans() -> list[Any]:  # the server span ends just after the response is on its way
        spans = [s for s in span_exporter.get_finished_spans() if s.name == "/nerava.accounts.v1.AccountsService/GetMe"]
        assert spans, "the service span has not ended yet"
        return spans

    service_spans = await eventually(ended_service_spans)
    assert len(service_spans) == 1
    service_span = service_spans[0]
    assert service_span.context is not None and service_span.parent is not None
    trace_id = service_span.context.trace_id.to_bytes(16, "big")
    parent_id = service_span.parent.span_id.to_bytes(8, "big")

    def complete(spans: list[Any]) -> bool:
        ids = {span.span_id for span in spans}
        return any(span.span_id == parent_id for span in spans) and all(
            span.parent_span_id in ids or not span.parent_span_id for span in spans
        )

    def whole_tree() -> list[Any]:  # Envoy exports in batches: wait for the whole tree
        spans = [
            span for service, span in otlp_collector.spans if service == "nerava-gateway" and span.trace_id == trace_id
        ]
        assert complete(spans), "the gateway spans form one tree with a root"
        return spans

    gateway_spans = await eventually(whole_tree)
    assert any(span.span_id == parent_id for span in gateway_spans), "the service span's parent is a gateway span"
    assert complete(gateway_spans), "the gateway spans form one tree with a root"
