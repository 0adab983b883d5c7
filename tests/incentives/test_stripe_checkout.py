"""StripeCheckout (campaign funding) against a local fake Stripe (fakes/stripe.py).

The fake server is the only test double: the adapter and the official stripe library underneath it run
unmodified over real HTTP, so form encoding, auth, idempotency keys and timeouts are the real ones.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from fakes.stripe import FakeStripe
from services.incentives.adapters.stripe_checkout import (
    CheckoutSession,
    PaymentsRefused,
    PaymentsUnavailable,
    StripeCheckout,
)

SUCCESS_URL = "https://console.nerava.test/campaigns/c/?funded=true"
CANCEL_URL = "https://console.nerava.test/campaigns/c/?funded=false"


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeStripe]:
    async with FakeStripe() as server:
        yield server


def _adapter_for(fake: FakeStripe, *, api_key: str | None = None, timeout: float = 5.0) -> StripeCheckout:
    # No library retries: each test looks at what one attempt does.
    return StripeCheckout(
        api_key=api_key if api_key is not None else fake.api_key,
        base_url=fake.base_url,
        timeout=timeout,
        max_network_retries=0,
    )


@pytest_asyncio.fixture
async def checkout(fake: FakeStripe) -> AsyncIterator[StripeCheckout]:
    async with _adapter_for(fake) as adapter:
        yield adapter


async def _open(
    checkout: StripeCheckout,
    campaign_id: str,
    gross_cents: int = 150_000,
    *,
    bps: int = 2000,
    currency: str = "CURRENCY_CASH_CENTS",
    key: str | None = None,
) -> CheckoutSession:
    return await checkout.create_checkout_session(
        campaign_id=campaign_id,
        gross_cents=gross_cents,
        platform_fee_bps=bps,
        reward_currency=currency,
        success_url=SUCCESS_URL,
        cancel_url=CANCEL_URL,
        idempotency_key=key,
    )


def _expected_metadata(campaign_id: str, bps: int, currency: str) -> dict[str, str]:
    return {
        "type": "campaign_funding",
        "campaign_id": campaign_id,
        "platform_fee_bps": str(bps),
        "reward_currency": currency,
    }


async def test_checkout_charges_the_gross_budget_with_the_funding_metadata(
    fake: FakeStripe, checkout: StripeCheckout
) -> None:
    campaign_id = str(uuid.uuid4())
    before = datetime.datetime.now(datetime.UTC)

    session = await _open(checkout, campaign_id, 150_000, bps=2000)

    assert session.session_id.startswith("cs_test_")
    assert session.url == f"{fake.base_url}/c/pay/{session.session_id}"
    assert session.expires_at is not None
    assert before + datetime.timedelta(hours=23) < session.expires_at <= before + datetime.timedelta(hours=25)
    stored = fake.checkout_session(session.session_id)
    assert (stored["mode"], stored["amount_total"], stored["currency"]) == ("payment", 150_000, "usd")
    assert stored["metadata"] == _expected_metadata(campaign_id, 2000, "CURRENCY_CASH_CENTS")
    assert stored["client_reference_id"] == campaign_id
    assert (stored["success_url"], stored["cancel_url"]) == (SUCCESS_URL, CANCEL_URL)


async def test_requests_use_stripe_wire_format(fake: FakeStripe, checkout: StripeCheckout) -> None:
    campaign_id = str(uuid.uuid4())

    await _open(checkout, campaign_id, 2500, bps=1500, currency="CURRENCY_NOVA_POINTS")

    [request] = fake.requests_to("POST", "/v1/checkout/sessions")
    assert request.headers["authorization"] == f"Bearer {fake.api_key}"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["idempotency-key"]  # the library's own when the caller gives none
    assert ("line_items[0][price_data][unit_amount]", "2500") in request.form
    assert ("line_items[0][price_data][currency]", "usd") in request.form
    assert ("line_items[0][quantity]", "1") in request.form
    assert len(request.params["line_items"]) == 1
    expected = _expected_metadata(campaign_id, 1500, "CURRENCY_NOVA_POINTS")
    # Exactly these keys, on the session and on its PaymentIntent.
    assert request.params["metadata"] == expected
    assert request.params["payment_intent_data"] == {"metadata": expected}


async def test_the_payment_intent_carries_the_campaign_once_paid(fake: FakeStripe, checkout: StripeCheckout) -> None:
    campaign_id = str(uuid.uuid4())
    session = await _open(checkout, campaign_id, 40_000, bps=0, currency="CURRENCY_NOVA_POINTS")

    completed = fake.complete_checkout_session(session.session_id)

    assert (completed["status"], completed["payment_status"], completed["url"]) == ("complete", "paid", None)
    assert completed["amount_total"] == 40_000
    intent = fake.payment_intent(completed["payment_intent"])
    assert intent["metadata"] == _expected_metadata(campaign_id, 0, "CURRENCY_NOVA_POINTS")
    assert intent["amount_received"] == 40_000


async def test_the_same_idempotency_key_returns_the_same_session(fake: FakeStripe, checkout: StripeCheckout) -> None:
    campaign_id = str(uuid.uuid4())
    key = f"fund:{uuid.uuid4()}"

    first = await _open(checkout, campaign_id, key=key)
    again = await _open(checkout, campaign_id, key=key)

    assert again == first
    assert [s["id"] for s in fake.checkout_sessions] == [first.session_id]
    assert [r.headers["idempotency-key"] for r in fake.requests_to("POST", "/v1/checkout/sessions")] == [key, key]


async def test_the_same_key_for_another_amount_is_refused(fake: FakeStripe, checkout: StripeCheckout) -> None:
    campaign_id = str(uuid.uuid4())
    key = f"fund:{uuid.uuid4()}"
    await _open(checkout, campaign_id, 10_000, key=key)

    with pytest.raises(PaymentsRefused) as refused:
        await _open(checkout, campaign_id, 20_000, key=key)

    assert refused.value.code == "idempotency_error"
    assert refused.value.retryable is False
    assert len(fake.checkout_sessions) == 1


async def test_an_open_checkout_is_found_again(fake: FakeStripe, checkout: StripeCheckout) -> None:
    campaign_id = str(uuid.uuid4())
    session = await _open(checkout, campaign_id, 9_900, bps=2000)
    now = datetime.datetime.now(datetime.UTC)

    state = await checkout.get_checkout_session(session.session_id)

    assert (state.session_id, state.status, state.payment_status) == (session.session_id, "open", "unpaid")
    assert (state.url, state.expires_at, state.amount_total) == (session.url, session.expires_at, 9_900)
    assert state.metadata == _expected_metadata(campaign_id, 2000, "CURRENCY_CASH_CENTS")
    assert state.is_open(now)
    assert state.expires_at is not None
    assert not state.is_open(state.expires_at)  # the clock closes it even before Stripe does


async def test_a_paid_or_expired_checkout_is_not_open(fake: FakeStripe, checkout: StripeCheckout) -> None:
    now = datetime.datetime.now(datetime.UTC)
    paid = await _open(checkout, str(uuid.uuid4()))
    expired = await _open(checkout, str(uuid.uuid4()))
    fake.complete_checkout_session(paid.session_id)
    fake.expire_checkout_session(expired.session_id)

    paid_state = await checkout.get_checkout_session(paid.session_id)
    expired_state = await checkout.get_checkout_session(expired.session_id)

    assert (paid_state.status, paid_state.payment_status, paid_state.url) == ("complete", "paid", None)
    assert (expired_state.status, expired_state.payment_status, expired_state.url) == ("expired", "unpaid", None)
    assert not paid_state.is_open(now)
    assert not expired_state.is_open(now)


async def test_an_unknown_checkout_is_refused(checkout: StripeCheckout) -> None:
    with pytest.raises(PaymentsRefused) as refused:
        await checkout.get_checkout_session("cs_test_doesnotexist")

    assert (refused.value.http_status, refused.value.code) == (404, "resource_missing")


async def test_a_wrong_secret_key_makes_payments_unavailable(fake: FakeStripe) -> None:
    async with _adapter_for(fake, api_key="sk_test_notthekeyatall0000") as wrong:
        with pytest.raises(PaymentsUnavailable) as unavailable:
            await _open(wrong, str(uuid.uuid4()))

    assert unavailable.value.http_status == 401
    assert unavailable.value.retryable is True
    assert fake.checkout_sessions == []


async def test_a_slow_stripe_makes_payments_unavailable(fake: FakeStripe) -> None:
    fake.response_delay = 1.0
    async with _adapter_for(fake, timeout=0.2) as slow:
        with pytest.raises(PaymentsUnavailable):
            await _open(slow, str(uuid.uuid4()))


async def test_an_unreachable_stripe_is_unavailable(fake: FakeStripe) -> None:
    # Take a port, then close it: nothing listens there.
    server = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()

    async with StripeCheckout(api_key=fake.api_key, base_url=f"http://127.0.0.1:{port}", max_network_retries=0) as down:
        with pytest.raises(PaymentsUnavailable):
            await down.get_checkout_session("cs_test_whatever")


@pytest.mark.parametrize(
    ("gross", "bps", "currency", "campaign"),
    [
        (0, 2000, "CURRENCY_CASH_CENTS", "c"),
        (-5, 2000, "CURRENCY_CASH_CENTS", "c"),
        (1000, -1, "CURRENCY_CASH_CENTS", "c"),
        (1000, 10_001, "CURRENCY_CASH_CENTS", "c"),
        (1000, 2000, "CURRENCY_UNSPECIFIED", "c"),
        (1000, 2000, "cash", "c"),
        (1000, 2000, "CURRENCY_CASH_CENTS", ""),
    ],
)
async def test_arguments_are_checked_before_calling_stripe(
    fake: FakeStripe, checkout: StripeCheckout, gross: int, bps: int, currency: str, campaign: str
) -> None:
    with pytest.raises(ValueError):
        await _open(checkout, campaign, gross, bps=bps, currency=currency)
    assert fake.requests == []
