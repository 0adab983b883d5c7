"""SquareAccounts (merchants' Square adapter) against a local fake Square (fakes/square.py).

The fake server is the only test double: the adapter and the official squareup SDK underneath it run unmodified
over real HTTP, so the JSON bodies, bearer tokens, Square-Version header, Square's error JSON and timeouts are
the real ones.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio

from fakes.square import FakeLocation, FakeMerchant, FakeSquare
from services.merchants.adapters.square import (
    SquareAccounts,
    SquareAuthError,
    SquareError,
    SquareLocation,
    SquareNotFound,
    SquareTokens,
    SquareUnavailable,
)

REDIRECT_URI = "https://portal.nerava.test/merchants/square/callback"
ROOT = Path(__file__).resolve().parents[2]
UTC = datetime.UTC


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeSquare]:
    async with FakeSquare(redirect_uri=REDIRECT_URI) as server:
        yield server


def _adapter_for(
    fake: FakeSquare, *, secret: str | None = None, timeout: float = 5.0, max_retries: int = 0, base_url: str = ""
) -> SquareAccounts:
    # No SDK retries unless a test asks: each test looks at what one attempt does.
    return SquareAccounts(
        application_id=fake.application_id,
        application_secret=secret if secret is not None else fake.application_secret,
        redirect_uri=REDIRECT_URI,
        base_url=base_url or fake.base_url,
        timeout=timeout,
        max_retries=max_retries,
    )


@pytest_asyncio.fixture
async def square(fake: FakeSquare) -> AsyncIterator[SquareAccounts]:
    async with _adapter_for(fake) as adapter:
        yield adapter


@dataclass
class Seller:
    merchant: FakeMerchant
    location: FakeLocation
    tokens: SquareTokens


async def _connected(fake: FakeSquare, square: SquareAccounts, name: str = "Bean There") -> Seller:
    merchant = fake.add_merchant(name)
    location = fake.add_location(merchant.id, f"{name} Congress")
    tokens = await square.exchange_code(fake.issue_code(merchant.id))
    return Seller(merchant, location, tokens)


def _days_ago(now: datetime.datetime, days: float) -> datetime.datetime:
    return now - datetime.timedelta(days=days)


# -- OAuth --------------------------------------------------------------------------------------------


async def test_the_authorization_url_asks_for_the_merchant_scopes(fake: FakeSquare, square: SquareAccounts) -> None:
    url = square.authorization_url("state-abc_123")

    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{fake.base_url}/oauth2/authorize"
    assert "scope=MERCHANT_PROFILE_READ+ORDERS_READ+PAYMENTS_READ" in parts.query
    assert parse_qs(parts.query) == {
        "client_id": [fake.application_id],
        "scope": ["MERCHANT_PROFILE_READ ORDERS_READ PAYMENTS_READ"],
        "session": ["false"],
        "state": ["state-abc_123"],
        "redirect_uri": [REDIRECT_URI],
    }
    with pytest.raises(ValueError, match="state"):
        square.authorization_url("")


async def test_approving_redirects_with_a_code_and_the_state_that_connects_the_seller(
    fake: FakeSquare, square: SquareAccounts
) -> None:
    merchant = fake.add_merchant("Bean There")
    before = datetime.datetime.now(UTC)
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(square.authorization_url("state-approve"))

    assert answer.status_code == 302
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    params = parse_qs(location.query)
    assert params["state"] == ["state-approve"]
    assert params["response_type"] == ["code"]
    [code] = params["code"]

    tokens = await square.exchange_code(code)

    assert tokens.square_merchant_id == merchant.id
    assert tokens.access_token.startswith("EAAA") and tokens.refresh_token.startswith("EQAA")
    assert tokens.expires_at is not None
    assert before + datetime.timedelta(days=29) < tokens.expires_at <= before + datetime.timedelta(days=31)
    assert tokens.access_token not in repr(tokens) and tokens.refresh_token not in repr(tokens)
    # The token works for the seller's data.
    assert await square.main_location(tokens.access_token) is None


async def test_declining_redirects_with_access_denied_and_the_state(fake: FakeSquare, square: SquareAccounts) -> None:
    fake.add_merchant("Bean There")
    fake.deny_next_authorization()
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(square.authorization_url("state-deny"))

    assert answer.status_code == 302
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    params = parse_qs(location.query)
    assert params["error"] == ["access_denied"]
    assert params["state"] == ["state-deny"]
    assert "code" not in params


async def test_the_token_request_is_square_json_without_a_bearer(fake: FakeSquare, square: SquareAccounts) -> None:
    merchant = fake.add_merchant()
    code = fake.issue_code(merchant.id)

    await square.exchange_code(code)

    [request] = fake.requests_to("POST", "/oauth2/token")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["square-version"]  # the SDK's API version
    assert "authorization" not in request.headers
    assert request.json == {
        "client_id": fake.application_id,
        "client_secret": fake.application_secret,
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
    }


async def test_a_code_works_once(fake: FakeSquare, square: SquareAccounts) -> None:
    merchant = fake.add_merchant()
    code = fake.issue_code(merchant.id)
    await square.exchange_code(code)

    with pytest.raises(SquareAuthError) as again:
        await square.exchange_code(code)

    assert (again.value.http_status, again.value.code, again.value.retryable) == (401, "UNAUTHORIZED", False)
    with pytest.raises(SquareAuthError):
        await square.exchange_code("sq0cgp-never-issued")


async def test_a_wrong_application_secret_is_refused_without_spending_the_code(fake: FakeSquare) -> None:
    merchant = fake.add_merchant()
    code = fake.issue_code(merchant.id)
    async with _adapter_for(fake, secret="sq0csp-wrong") as wrong:
        with pytest.raises(SquareAuthError) as refused:
            await wrong.exchange_code(code)
    assert refused.value.http_status == 401

    async with _adapter_for(fake) as right:
        assert (await right.exchange_code(code)).square_merchant_id == merchant.id


async def test_a_code_for_another_redirect_url_is_refused(fake: FakeSquare, square: SquareAccounts) -> None:
    merchant = fake.add_merchant()
    code = fake.issue_code(merchant.id, redirect_uri="https://elsewhere.test/callback")

    with pytest.raises(SquareError) as refused:
        await square.exchange_code(code)

    assert type(refused.value) is SquareError
    assert (refused.value.http_status, refused.value.code) == (400, "INVALID_VALUE")


async def test_refresh_gives_a_new_access_token_and_keeps_the_refresh_token(
    fake: FakeSquare, square: SquareAccounts
) -> None:
    seller = await _connected(fake, square)

    refreshed = await square.refresh(seller.tokens.refresh_token)

    assert refreshed.square_merchant_id == seller.merchant.id
    assert refreshed.access_token != seller.tokens.access_token
    assert refreshed.refresh_token == seller.tokens.refresh_token
    [request] = [
        r
        for r in fake.requests_to("POST", "/oauth2/token")
        if isinstance(r.json, dict) and r.json.get("grant_type") == "refresh_token"
    ]
    assert request.json == {
        "client_id": fake.application_id,
        "client_secret": fake.application_secret,
        "grant_type": "refresh_token",
        "refresh_token": seller.tokens.refresh_token,
    }
    location = await square.main_location(refreshed.access_token)
    assert location is not None and location.id == seller.location.id


async def test_an_expired_access_token_is_an_auth_error_until_refreshed(
    fake: FakeSquare, square: SquareAccounts
) -> None:
    seller = await _connected(fake, square)
    fake.expire_access_tokens(seller.merchant.id)

    with pytest.raises(SquareAuthError) as expired:
        await square.main_location(seller.tokens.access_token)

    assert (expired.value.http_status, expired.value.code) == (401, "ACCESS_TOKEN_EXPIRED")
    refreshed = await square.refresh(seller.tokens.refresh_token)
    assert await square.main_location(refreshed.access_token) is not None


async def test_a_revoked_seller_cannot_be_called_or_refreshed(fake: FakeSquare, square: SquareAccounts) -> None:
    seller = await _connected(fake, square)
    fake.revoke(seller.merchant.id)

    with pytest.raises(SquareAuthError) as revoked:
        await square.main_location(seller.tokens.access_token)
    assert (revoked.value.http_status, revoked.value.code) == (401, "ACCESS_TOKEN_REVOKED")
    with pytest.raises(SquareAuthError):
        await square.refresh(seller.tokens.refresh_token)
    with pytest.raises(SquareAuthError) as unknown:
        await square.get_order("EAAA-not-a-token", "orderid123")
    assert unknown.value.code == "UNAUTHORIZED"


async def test_a_token_without_the_orders_scope_is_an_auth_error(fake: FakeSquare, square: SquareAccounts) -> None:
    merchant = fake.add_merchant()
    location = fake.add_location(merchant.id)
    tokens = await square.exchange_code(fake.issue_code(merchant.id, scopes=["MERCHANT_PROFILE_READ"]))

    with pytest.raises(SquareAuthError) as forbidden:
        await square.average_order_value_cents(tokens.access_token, location.id, datetime.datetime.now(UTC))

    assert (forbidden.value.http_status, forbidden.value.code) == (403, "INSUFFICIENT_SCOPES")


# -- the main location -----------------------------------------------------------------------------------


async def test_the_main_location_is_the_first_created_active_one(fake: FakeSquare, square: SquareAccounts) -> None:
    merchant = fake.add_merchant("Bean There")
    now = datetime.datetime.now(UTC)
    fake.add_location(merchant.id, "Aardvark Closed", status="INACTIVE", created_at=_days_ago(now, 900))
    main = fake.add_location(
        merchant.id,
        "Zilker Roastery",
        address_line_1="2100 Barton Springs Rd",
        locality="Austin",
        region="TX",
        postal_code="78704",
        lat=30.2642,
        lng=-97.7713,
        timezone="America/Chicago",
        created_at=_days_ago(now, 400),
    )
    fake.add_location(merchant.id, "Bean There Downtown", created_at=_days_ago(now, 10))
    tokens = await square.exchange_code(fake.issue_code(merchant.id))

    location = await square.main_location(tokens.access_token)

    assert location == SquareLocation(
        id=main.id,
        name="Zilker Roastery",
        address="2100 Barton Springs Rd, Austin, TX 78704",
        lat=30.2642,
        lng=-97.7713,
        timezone="America/Chicago",
    )
    [request] = fake.requests_to("GET", "/v2/locations")
    assert request.headers["authorization"] == f"Bearer {tokens.access_token}"
    assert request.headers["square-version"]


async def test_a_seller_without_an_active_location_has_no_main_location(
    fake: FakeSquare, square: SquareAccounts
) -> None:
    merchant = fake.add_merchant()
    fake.add_location(merchant.id, "Closed", status="INACTIVE", lat=None, lng=None)
    tokens = await square.exchange_code(fake.issue_code(merchant.id))

    assert await square.main_location(tokens.access_token) is None


# -- average order value -----------------------------------------------------------------------------------


async def test_the_average_counts_completed_orders_of_the_last_30_days_rounded_down(
    fake: FakeSquare, square: SquareAccounts
) -> None:
    seller = await _connected(fake, square)
    now = datetime.datetime.now(UTC)
    at = seller.location.id
    for days, total in ((0.1, 1000), (3, 1201), (15, 1500), (29.5, 2000)):
        fake.add_order(at, total, created_at=_days_ago(now, days + 0.01), closed_at=_days_ago(now, days))
    # Not counted: still open, canceled, closed 31 days ago, another location, another seller.
    fake.add_order(at, 90_000, state="OPEN", created_at=_days_ago(now, 1))
    fake.add_order(at, 90_000, state="CANCELED", created_at=_days_ago(now, 2))
    fake.add_order(at, 90_000, created_at=_days_ago(now, 31))
    other_location = fake.add_location(seller.merchant.id, "Elsewhere")
    fake.add_order(other_location.id, 90_000, created_at=_days_ago(now, 1))
    other = fake.add_merchant("Other")
    fake.add_order(fake.add_location(other.id).id, 90_000, created_at=_days_ago(now, 1))

    average = await square.average_order_value_cents(seller.tokens.access_token, at, now)

    assert average == (1000 + 1201 + 1500 + 2000) // 4  # 1425.25 → 1425


async def test_the_average_searches_square_for_completed_orders_closed_in_the_window(
    fake: FakeSquare, square: SquareAccounts
) -> None:
    seller = await _connected(fake, square)
    now = datetime.datetime(2026, 3, 31, 12, 0, tzinfo=UTC)

    await square.average_order_value_cents(seller.tokens.access_token, seller.location.id, now)

    [request] = fake.requests_to("POST", "/v2/orders/search")
    assert request.headers["authorization"] == f"Bearer {seller.tokens.access_token}"
    assert request.headers["content-type"] == "application/json"
    assert request.json == {
        "location_ids": [seller.location.id],
        "query": {
            "filter": {
                "state_filter": {"states": ["COMPLETED"]},
                "date_time_filter": {
                    "closed_at": {"start_at": "2026-03-01T12:00:00.000Z", "end_at": "2026-03-31T12:00:00.000Z"}
                },
            },
            "sort": {"sort_field": "CLOSED_AT", "sort_order": "DESC"},
        },
        "limit": 100,
    }


async def test_the_average_takes_the_newest_100_orders(fake: FakeSquare, square: SquareAccounts) -> None:
    seller = await _connected(fake, square)
    now = datetime.datetime.now(UTC)
    # 100 recent orders of 1000 and 2000 alternately (mean 1500), then 20 older but in-window ones of 9000.
    for index in range(100):
        fake.add_order(
            seller.location.id, 1000 if index % 2 else 2000, created_at=now - datetime.timedelta(hours=index + 1)
        )
    for index in range(20):
        fake.add_order(seller.location.id, 9000, created_at=_days_ago(now, 10 + index * 0.5))

    average = await square.average_order_value_cents(seller.tokens.access_token, seller.location.id, now)

    assert average == 1500


async def test_recent_orders_are_the_locations_open_and_completed_ones_since_newest_first(
    fake: FakeSquare, square: SquareAccounts
) -> None:
    seller = await _connected(fake, square)
    now = datetime.datetime.now(UTC)
    at = seller.location.id
    paid = fake.add_order(at, 300, created_at=now - datetime.timedelta(minutes=3))
    waiting = fake.add_order(at, 450, state="OPEN", created_at=now - datetime.timedelta(minutes=1))
    fake.add_order(at, 999, state="CANCELED", created_at=now - datetime.timedelta(minutes=2))
    fake.add_order(at, 700, created_at=now - datetime.timedelta(minutes=30))
    fake.add_order(fake.add_location(seller.merchant.id, "Elsewhere").id, 800, created_at=now)

    orders = await square.recent_orders(seller.tokens.access_token, at, now - datetime.timedelta(minutes=10))

    assert [(o.id, o.total_cents, o.state, o.currency) for o in orders] == [
        (waiting.id, 450, "OPEN", "USD"),
        (paid.id, 300, "COMPLETED", "USD"),
    ]
    assert orders[0].created_at is not None and abs(orders[0].created_at - waiting.created_at) < datetime.timedelta(
        seconds=1
    )
    [request] = fake.requests_to("POST", "/v2/orders/search")
    assert isinstance(request.json, dict)
    assert request.json["query"]["filter"]["state_filter"] == {"states": ["OPEN", "COMPLETED"]}
    assert request.json["query"]["sort"] == {"sort_field": "CREATED_AT", "sort_order": "DESC"}
    with pytest.raises(ValueError, match="aware"):
        await square.recent_orders(seller.tokens.access_token, at, now.replace(tzinfo=None))


async def test_no_orders_means_no_average(fake: FakeSquare, square: SquareAccounts) -> None:
    seller = await _connected(fake, square)
    now = datetime.datetime.now(UTC)
    fake.add_order(seller.location.id, 1500, state="OPEN", created_at=_days_ago(now, 1))
    fake.add_order(seller.location.id, 1500, created_at=_days_ago(now, 45))

    assert await square.average_order_value_cents(seller.tokens.access_token, seller.location.id, now) is None
    with pytest.raises(ValueError, match="timezone"):
        await square.average_order_value_cents(seller.tokens.access_token, seller.location.id, datetime.datetime.now())


# -- orders at checkout ------------------------------------------------------------------------------------


async def test_an_order_comes_with_its_total_location_and_state(fake: FakeSquare, square: SquareAccounts) -> None:
    seller = await _connected(fake, square)
    order = fake.add_order(seller.location.id, 1875)
    open_order = fake.add_order(seller.location.id, 640, state="OPEN")

    found = await square.get_order(seller.tokens.access_token, order.id)

    assert (found.id, found.location_id, found.total_cents, found.state, found.currency) == (
        order.id,
        seller.location.id,
        1875,
        "COMPLETED",
        "USD",
    )
    assert (await square.get_order(seller.tokens.access_token, open_order.id)).state == "OPEN"
    [request] = fake.requests_to("GET", f"/v2/orders/{order.id}")
    assert request.headers["authorization"] == f"Bearer {seller.tokens.access_token}"


async def test_an_unknown_order_is_not_found(fake: FakeSquare, square: SquareAccounts) -> None:
    seller = await _connected(fake, square)
    other = await _connected(fake, square, "Other Beans")
    theirs = fake.add_order(other.location.id, 1000)

    with pytest.raises(SquareNotFound) as unknown:
        await square.get_order(seller.tokens.access_token, "NoSuchOrder0000000000000000")
    assert (unknown.value.http_status, unknown.value.code, unknown.value.retryable) == (404, "NOT_FOUND", False)
    # Another seller's order is not one of theirs.
    with pytest.raises(SquareNotFound):
        await square.get_order(seller.tokens.access_token, theirs.id)
    # Something that is not a Square id never reaches Square (nor a URL path).
    calls = len(fake.requests)
    with pytest.raises(SquareNotFound):
        await square.get_order(seller.tokens.access_token, "../locations")
    assert len(fake.requests) == calls


# -- failures ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_server_errors_and_rate_limits_are_unavailable(
    fake: FakeSquare, square: SquareAccounts, status: int
) -> None:
    seller = await _connected(fake, square)
    fake.fail_next(times=1, status=status)

    with pytest.raises(SquareUnavailable) as unavailable:
        await square.get_order(seller.tokens.access_token, fake.add_order(seller.location.id, 1000).id)

    assert unavailable.value.http_status == status
    assert unavailable.value.retryable
    assert isinstance(unavailable.value, SquareError)


async def test_a_failing_token_endpoint_is_unavailable_and_keeps_the_code(
    fake: FakeSquare, square: SquareAccounts
) -> None:
    merchant = fake.add_merchant()
    code = fake.issue_code(merchant.id)
    fake.fail_next(times=1, status=500)

    with pytest.raises(SquareUnavailable):
        await square.exchange_code(code)

    assert (await square.exchange_code(code)).square_merchant_id == merchant.id


async def test_the_sdk_retries_a_passing_outage_when_allowed(fake: FakeSquare) -> None:
    async with _adapter_for(fake, max_retries=1) as patient:
        seller = await _connected(fake, patient)
        fake.fail_next(times=1, status=503)

        location = await patient.main_location(seller.tokens.access_token)

    assert location is not None and location.id == seller.location.id
    assert len(fake.requests_to("GET", "/v2/locations")) == 2


async def test_a_slow_square_is_unavailable(fake: FakeSquare) -> None:
    async with _adapter_for(fake, timeout=0.2) as hasty:
        seller = await _connected(fake, hasty)
        fake.delay_next(1.0)

        with pytest.raises(SquareUnavailable) as slow:
            await hasty.main_location(seller.tokens.access_token)

    assert slow.value.http_status is None and slow.value.retryable


async def test_an_unreachable_square_is_unavailable(fake: FakeSquare) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port once the probe is closed.
    async with _adapter_for(fake, base_url=f"http://127.0.0.1:{port}") as nowhere:
        with pytest.raises(SquareUnavailable):
            await nowhere.exchange_code("sq0cgp-anything")


async def test_arguments_are_checked_before_calling_square(fake: FakeSquare, square: SquareAccounts) -> None:
    with pytest.raises(ValueError):
        await square.exchange_code("")
    with pytest.raises(ValueError):
        await square.refresh("")
    with pytest.raises(ValueError):
        await square.main_location("")
    with pytest.raises(ValueError):
        await square.average_order_value_cents("EAAAtoken", "", datetime.datetime.now(UTC))
    with pytest.raises(ValueError):
        SquareAccounts(application_id="", application_secret="x", redirect_uri=REDIRECT_URI)
    assert fake.requests == []


# -- the fake as a process: control API and CLI ----------------------------------------------------------------


async def test_the_fake_runs_as_a_process_scripted_over_its_control_api(fake: FakeSquare) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fakes.square",
        "serve",
        "--port",
        "0",
        "--application-id",
        fake.application_id,
        "--application-secret",
        fake.application_secret,
        "--demo",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        started = json.loads(line)
        base_url = started["url"]
        [demo] = started["merchants"]
        async with httpx.AsyncClient(base_url=base_url, timeout=5.0) as control:
            merchant = (await control.post("/_fake/merchants", json={"business_name": "Scripted"})).json()
            location = (
                await control.post("/_fake/locations", json={"merchant_id": merchant["id"], "name": "Scripted HQ"})
            ).json()
            order = (
                await control.post("/_fake/orders", json={"location_id": location["id"], "total_cents": 1234})
            ).json()
            code = (await control.post("/_fake/codes", json={"merchant_id": merchant["id"]})).json()["code"]
            demo_code = (await control.post("/_fake/codes", json={"merchant_id": demo["id"]})).json()["code"]
            assert (await control.post("/_fake/nope", json={})).status_code == 404

        async with SquareAccounts(
            application_id=fake.application_id,
            application_secret=fake.application_secret,
            redirect_uri=REDIRECT_URI,
            base_url=base_url,
            max_retries=0,
        ) as square:
            tokens = await square.exchange_code(code)
            found = await square.get_order(tokens.access_token, order["id"])
            assert (found.total_cents, found.location_id) == (1234, location["id"])
            demo_tokens = await square.exchange_code(demo_code)
            demo_location = await square.main_location(demo_tokens.access_token)
            assert demo_location is not None
            now = datetime.datetime.now(UTC)
            assert await square.average_order_value_cents(demo_tokens.access_token, demo_location.id, now) == 1650
    finally:
        process.terminate()
        await process.wait()
