"""The black-box findings of issue #14, each replayed through the real Envoy in front of the real services.

Every answer is a 4xx carrying a google.rpc.ErrorInfo: no input reaches a decoder or a SQL statement in a form
that makes it fail, and no internal type name reaches a client.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from typing import Any

import grpc
import httpx
import pytest
import redis.asyncio as redis

from gateway import render
from services.common.auth import SERVICE_TOKEN_HEADER, ServiceTokens
from services.common.config import Secret
from services.merchants import domain as merchants_domain
from tests.support.eventually import eventually
from tests.support.gateway import Gateway
from tests.support.mesh import Mesh
from tests.support.people import NewPerson
from tests.support.rpc import random_phone


def _reason(body: dict[str, Any]) -> str:
    for detail in body.get("details", []):
        if detail.get("@type", "").endswith("google.rpc.ErrorInfo"):
            return str(detail["reason"])
    return ""


def _bad_fields(body: dict[str, Any]) -> list[str]:
    return [
        violation["field"]
        for detail in body.get("details", [])
        if detail.get("@type", "").endswith("google.rpc.BadRequest")
        for violation in detail["field_violations"]
    ]


def _assert_refused(reply: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    body: dict[str, Any] = reply.json()
    assert _reason(body) == reason, body
    for leak in ("class", "DecodeError", "Traceback", "asyncpg", "google.protobuf"):
        assert leak not in reply.text, reply.text
    return body


# ------------------------------------------------------------------------------------------------------------
# Text that is not UTF-8, or holds NUL


async def test_a_path_segment_that_is_not_utf8_is_400_not_500(rest: httpx.AsyncClient) -> None:
    reply = await rest.get("/v1/checkout/qr/%C0%AE")
    _assert_refused(reply, 400, "INVALID_ARGUMENT")


async def test_an_admin_route_with_bad_utf8_still_tells_a_merchant_it_may_not_call(
    rest: httpx.AsyncClient, person: NewPerson
) -> None:
    merchant = await person("merchant")
    reply = await rest.post("/v1/admin/users/%C0%AE:setRoles", json={"roles": []}, headers=merchant.headers)
    _assert_refused(reply, 403, "PERMISSION_DENIED")


async def test_an_admin_gets_400_for_a_user_id_that_is_not_utf8(rest: httpx.AsyncClient, person: NewPerson) -> None:
    admin = await person("admin")
    reply = await rest.post("/v1/admin/users/%FF%FE:setRoles", json={"roles": []}, headers=admin.headers)
    _assert_refused(reply, 400, "INVALID_ARGUMENT")


async def test_a_nul_in_a_query_value_is_400_before_postgresql_sees_it(rest: httpx.AsyncClient) -> None:
    reply = await rest.get("/v1/chargers/search", params={"q": "a\x00b"})
    body = _assert_refused(reply, 400, "INVALID_ARGUMENT")
    assert _bad_fields(body) == ["q"]


async def test_a_nul_in_a_json_string_is_400_naming_the_field(rest: httpx.AsyncClient, person: NewPerson) -> None:
    driver = await person()
    reply = await rest.post(
        "/v1/devices",
        content=json.dumps({"token": "device-token-\u0000-x", "platform": "DEVICE_PLATFORM_IOS"}),
        headers={**driver.headers, "content-type": "application/json"},
    )
    body = _assert_refused(reply, 400, "INVALID_ARGUMENT")
    assert _bad_fields(body) == ["token"]


async def test_the_access_log_records_the_real_grpc_status(rest: httpx.AsyncClient, gateway: Gateway) -> None:
    request_id = f"edge-log-{uuid.uuid4().hex}"
    reply = await rest.get("/v1/checkout/qr/%C0%AE", headers={"x-request-id": request_id})
    assert reply.status_code == 400

    def logged() -> dict[str, Any]:  # Envoy flushes its stdout log on its own schedule
        lines = [line for line in gateway.log.read_text().splitlines() if request_id in line]
        assert lines, "no access log line for the request"
        entry: dict[str, Any] = json.loads(lines[-1])
        return entry

    entry = await eventually(logged)
    assert entry["grpc_status"] == "3"  # INVALID_ARGUMENT, not 13 guessed from "HTTP 400"


async def test_the_access_log_records_ok_for_an_answered_request(rest: httpx.AsyncClient, gateway: Gateway) -> None:
    # The services send the OK header only to requests the gateway forwarded (services/common/interceptors.py).
    request_id = f"edge-log-{uuid.uuid4().hex}"
    reply = await rest.get("/.well-known/jwks.json", headers={"x-request-id": request_id})
    assert reply.status_code == 200
    entry: dict[str, Any] | None = None
    for _ in range(300):  # Envoy flushes its stdout log on its own schedule
        lines = [line for line in gateway.log.read_text().splitlines() if request_id in line]
        if lines:
            entry = json.loads(lines[-1])
            break
        await asyncio.sleep(0.05)
    assert entry is not None, "no access log line for the request"
    assert entry["grpc_status"] == "0"


# ------------------------------------------------------------------------------------------------------------
# Client identity


async def test_x_forwarded_for_does_not_choose_the_per_ip_otp_counter(rest: httpx.AsyncClient, redis_url: str) -> None:
    forged = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    client = redis.Redis.from_url(redis_url)
    try:
        before = int(await client.get("accounts:otp:start-ip:127.0.0.1") or 0)
        reply = await rest.post(
            "/v1/auth/otp/start", json={"phone": random_phone()}, headers={"x-forwarded-for": forged}
        )
        assert reply.status_code == 200, reply.text
        # Counted against the address Envoy saw, not the one the client wrote (other runs on a shared Redis may
        # count from loopback too: at least ours).
        assert int(await client.get("accounts:otp:start-ip:127.0.0.1") or 0) >= before + 1
        assert await client.get(f"accounts:otp:start-ip:{forged}") is None
    finally:
        await client.aclose()


async def test_a_client_cannot_claim_an_address_with_the_services_header(
    rest: httpx.AsyncClient, redis_url: str
) -> None:
    forged = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    client = redis.Redis.from_url(redis_url)
    try:
        reply = await rest.post(
            "/v1/auth/otp/start", json={"phone": random_phone()}, headers={"x-nerava-client-address": forged}
        )
        assert reply.status_code == 200, reply.text
        assert await client.get(f"accounts:otp:start-ip:{forged}") is None
    finally:
        await client.aclose()


# ------------------------------------------------------------------------------------------------------------
# Limits


def _post_oversized(base_url: str, path: str, declared: int, sent: int) -> bytes:
    """POSTs a body declared as `declared` bytes, sending `sent` of them, and returns the status line and
    headers. Envoy answers as soon as its buffer overflows and may reset the connection while we still write."""
    host, _, port = base_url.removeprefix("http://").partition(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: api\r\nContent-Length: {declared}\r\n\r\n"
        sock.sendall(head.encode())
        chunk = b"x" * 16384
        try:
            for _ in range(0, min(declared, sent), len(chunk)):
                sock.sendall(chunk)
        except OSError:
            pass  # answered and closed before the rest of the body: what we read next says why
        answer = b""
        while b"\r\n\r\n" not in answer:
            part = sock.recv(65536)
            if not part:
                break
            answer += part
        return answer


@pytest.mark.parametrize("size", [1_100_000, 4_500_000, 16_000_000, 64_000_000])
async def test_a_large_anonymous_body_is_413_every_time(gateway: Gateway, size: int) -> None:
    for _ in range(3):
        answer = await asyncio.to_thread(
            _post_oversized, gateway.base_url, "/v1/auth/otp/start", size, render.REQUEST_BODY_LIMIT + 65536
        )
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


async def test_a_body_just_over_64_kib_is_413_payload_too_large(rest: httpx.AsyncClient) -> None:
    reply = await rest.post("/v1/auth/otp/start", content=b" " * (render.REQUEST_BODY_LIMIT + 1))
    _assert_refused(reply, 413, "PAYLOAD_TOO_LARGE")
    assert reply.json()["code"] == 3


async def test_a_webhook_may_carry_more_than_64_kib_but_not_more_than_1_mib(rest: httpx.AsyncClient) -> None:
    allowed = await rest.post("/v1/wallet/stripe/webhook", content=b"{" + b" " * 200_000 + b"}")
    assert allowed.status_code == 400  # it reached the ledger, which wants a Stripe signature
    assert _reason(allowed.json()) == "STRIPE_SIGNATURE_INVALID"
    refused = await rest.post("/v1/wallet/stripe/webhook", content=b" " * (render.WEBHOOK_BODY_LIMIT + 1))
    _assert_refused(refused, 413, "PAYLOAD_TOO_LARGE")


async def test_a_query_parameter_cannot_set_a_field_the_path_binds(rest: httpx.AsyncClient, person: NewPerson) -> None:
    admin = await person("admin")
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    reply = await rest.get(
        f"/v1/merchants/{mine}/billing/summary", params={"merchant_id": str(theirs)}, headers=admin.headers
    )
    body = _assert_refused(reply, 400, "INVALID_ARGUMENT")
    assert _bad_fields(body) == ["merchant_id"]


# ------------------------------------------------------------------------------------------------------------
# Envoy's own replies and security headers


@pytest.mark.parametrize(
    ("method", "path", "status", "reason"),
    [
        ("GET", "/v1/auth/me", 401, "UNAUTHENTICATED"),
        ("GET", "/v1/no/such/route", 404, "NOT_FOUND"),
    ],
)
async def test_envoys_own_replies_carry_an_error_info(
    rest: httpx.AsyncClient, method: str, path: str, status: int, reason: str
) -> None:
    reply = await rest.request(method, path)
    body = _assert_refused(reply, status, reason)
    assert body["details"][0]["domain"] == "gateway.nerava"


async def test_every_answer_carries_the_security_headers(rest: httpx.AsyncClient, person: NewPerson) -> None:
    driver = await person()
    for reply in (
        await rest.get("/v1/auth/me", headers=driver.headers),  # proxied
        await rest.get("/v1/auth/me"),  # Envoy's own 401
        await rest.post("/v1/auth/otp/start", json={"phone": random_phone()}),
    ):
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["cache-control"] == "no-store"
        assert "strict-transport-security" not in reply.headers  # only the Kubernetes (TLS-fronted) gateway


# ------------------------------------------------------------------------------------------------------------
# Values that were public defaults


PUBLIC_SERVICE_TOKEN_SECRET = "dev-only-service-token-secret-change-me"  # the old default, in git history
PUBLIC_PREVIEW_KEY = b"dev-only-preview-signing-key"


@pytest.mark.parametrize(
    ("service", "path", "request_bytes"),
    [
        ("ledger", "/nerava.ledger.v1.LedgerService/PostTransfer", b""),
        ("accounts", "/nerava.accounts.v1.AccountsService/GetUser", b""),
    ],
)
async def test_a_service_token_minted_from_the_old_public_default_is_refused(
    mesh: Mesh, service: str, path: str, request_bytes: bytes
) -> None:
    forged = ServiceTokens(Secret(PUBLIC_SERVICE_TOKEN_SECRET), "incentives").mint()
    call = mesh.channels[service].unary_unary(path, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(request_bytes, metadata=((SERVICE_TOKEN_HEADER, forged),), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_preview_link_signed_with_the_public_default_key_for_a_year_ahead_is_refused(
    rest: httpx.AsyncClient,
) -> None:
    merchant_id = "m_nosuchstore"
    expires = int(time.time()) + 365 * 24 * 3600
    signature = merchants_domain.preview_signature(PUBLIC_PREVIEW_KEY, merchant_id, expires)
    reply = await rest.get(
        "/v1/merchant/funnel/preview", params={"merchant_id": merchant_id, "exp": expires, "sig": signature}
    )
    _assert_refused(reply, 403, "PREVIEW_LINK_INVALID")
