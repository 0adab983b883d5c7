"""StripePayouts against a local fake Stripe (fakes/stripe.py).

The fake server is the only test double: the adapter and the official stripe library underneath it run
unmodified over real HTTP, so form encoding, auth, idempotency keys, retries and timeouts are the real ones.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self

import httpx
import pytest
import pytest_asyncio

from fakes.stripe import FakeStripe
from services.ledger.adapters.stripe_payouts import (
    AccountStatus,
    StripePayouts,
    StripeRefused,
    StripeSignatureInvalid,
    StripeUnavailable,
)

DRIVER_ID = "driver-7f3a"
EMAIL = "ada@example.com"
REFRESH_URL = "https://app.nerava.test/wallet/stripe/refresh"
RETURN_URL = "https://app.nerava.test/wallet/stripe/done"


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeStripe]:
    async with FakeStripe() as server:
        yield server


def _adapter_for(
    fake: FakeStripe,
    *,
    api_key: str | None = None,
    timeout: float = 5.0,
    max_network_retries: int = 0,
) -> StripePayouts:
    # No library retries unless a test asks: most tests look at what one attempt does.
    return StripePayouts(
        api_key=api_key if api_key is not None else fake.api_key,
        base_url=fake.base_url,
        timeout=timeout,
        max_network_retries=max_network_retries,
    )


@pytest_asyncio.fixture
async def payouts(fake: FakeStripe) -> AsyncIterator[StripePayouts]:
    async with _adapter_for(fake) as adapter:
        yield adapter


async def _onboarded_account(fake: FakeStripe, payouts: StripePayouts) -> str:
    account_id = await payouts.create_express_account(DRIVER_ID, EMAIL)
    fake.complete_onboarding(account_id)
    return account_id


def _payout_id() -> str:
    return str(uuid.uuid4())


# -- Express accounts ------------------------------------------------------------------------


async def test_express_account_is_created_for_the_driver(fake: FakeStripe, payouts: StripePayouts) -> None:
    account_id = await payouts.create_express_account(DRIVER_ID, EMAIL)

    assert account_id.startswith("acct_")
    account = fake.account(account_id)
    assert (account["type"], account["country"], account["business_type"]) == ("express", "US", "individual")
    assert account["email"] == EMAIL
    assert account["metadata"] == {"driver_id": DRIVER_ID}
    assert account["capabilities"] == {"transfers": "inactive", "card_payments": "inactive"}
    assert account["business_profile"]["mcc"] == "7299"


async def test_requests_use_stripe_wire_format(fake: FakeStripe, payouts: StripePayouts) -> None:
    await payouts.create_express_account(DRIVER_ID, EMAIL)

    [request] = fake.requests_to("POST", "/v1/accounts")
    assert request.headers["authorization"] == f"Bearer {fake.api_key}"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "stripe-version" in request.headers
    # The library names every POST with an idempotency key of its own, so its retries are safe too.
    assert request.headers["idempotency-key"]
    assert ("metadata[driver_id]", DRIVER_ID) in request.form
    assert ("capabilities[transfers][requested]", "true") in request.form
    assert ("business_profile[mcc]", "7299") in request.form


async def test_express_account_without_email(fake: FakeStripe, payouts: StripePayouts) -> None:
    account_id = await payouts.create_express_account(DRIVER_ID, None)

    assert fake.account(account_id)["email"] is None
    [request] = fake.requests_to("POST", "/v1/accounts")
    assert "email" not in request.params


async def test_account_creation_with_an_idempotency_key_is_not_repeated(
    fake: FakeStripe, payouts: StripePayouts
) -> None:
    first = await payouts.create_express_account(DRIVER_ID, EMAIL, idempotency_key="account-request-1")
    second = await payouts.create_express_account(DRIVER_ID, EMAIL, idempotency_key="account-request-1")

    assert first == second
    assert list(fake.accounts) == [first]


async def test_account_link_is_a_single_onboarding_url(fake: FakeStripe, payouts: StripePayouts) -> None:
    account_id = await payouts.create_express_account(DRIVER_ID, EMAIL)

    url = await payouts.create_account_link(account_id, REFRESH_URL, RETURN_URL)

    assert url.startswith(f"{fake.base_url}/setup/e/{account_id}/")
    [request] = fake.requests_to("POST", "/v1/account_links")
    assert request.params == {
        "account": account_id,
        "refresh_url": REFRESH_URL,
        "return_url": RETURN_URL,
        "type": "account_onboarding",
    }


async def test_account_link_for_an_unknown_account_is_refused(payouts: StripePayouts) -> None:
    with pytest.raises(StripeRefused) as refused:
        await payouts.create_account_link("acct_doesnotexist00", REFRESH_URL, RETURN_URL)

    assert refused.value.code == "resource_missing"
    assert refused.value.http_status == 400
    assert refused.value.retryable is False


async def test_account_status_follows_onboarding(fake: FakeStripe, payouts: StripePayouts) -> None:
    account_id = await payouts.create_express_account(DRIVER_ID, EMAIL)

    before = await payouts.get_account_status(account_id)
    fake.complete_onboarding(account_id)
    after = await payouts.get_account_status(account_id)

    assert before == AccountStatus(
        account_id=account_id,
        details_submitted=False,
        payouts_enabled=False,
        charges_enabled=False,
        transfers_active=False,
    )
    assert not before.onboarding_complete
    assert after == AccountStatus(
        account_id=account_id,
        details_submitted=True,
        payouts_enabled=True,
        charges_enabled=True,
        transfers_active=True,
    )
    assert after.onboarding_complete


async def test_status_of_an_unknown_account_is_refused(payouts: StripePayouts) -> None:
    with pytest.raises(StripeRefused) as refused:
        await payouts.get_account_status("acct_doesnotexist00")

    assert (refused.value.http_status, refused.value.code) == (403, "account_invalid")


# -- transfers -------------------------------------------------------------------------------


async def test_transfer_is_keyed_and_tagged_by_payout(fake: FakeStripe, payouts: StripePayouts) -> None:
    account_id = await _onboarded_account(fake, payouts)
    payout_id = _payout_id()

    transfer_id = await payouts.create_transfer(2500, account_id, payout_id)

    assert transfer_id.startswith("tr_")
    [transfer] = fake.transfers
    assert transfer["id"] == transfer_id
    assert (transfer["amount"], transfer["currency"], transfer["destination"]) == (2500, "usd", account_id)
    assert transfer["metadata"] == {"payout_id": payout_id}
    assert transfer["transfer_group"] == payout_id
    [request] = fake.requests_to("POST", "/v1/transfers")
    assert request.headers["idempotency-key"] == payout_id
    assert ("metadata[payout_id]", payout_id) in request.form
    assert fake.balance_available_cents == 10_000_000 - 2500


async def test_repeating_a_transfer_replays_it_instead_of_paying_twice(
    fake: FakeStripe, payouts: StripePayouts, caplog: pytest.LogCaptureFixture
) -> None:
    account_id = await _onboarded_account(fake, payouts)
    payout_id = _payout_id()

    with caplog.at_level(logging.INFO, logger="services.ledger.adapters.stripe_payouts"):
        first = await payouts.create_transfer(2500, account_id, payout_id)
        second = await payouts.create_transfer(2500, account_id, payout_id)

    assert first == second
    assert len(fake.transfers) == 1
    assert [record.getMessage() for record in caplog.records if record.getMessage().startswith("Stripe transfer")] == [
        "Stripe transfer created",
        "Stripe transfer replayed",
    ]


async def test_reusing_a_payout_id_for_another_amount_is_refused(fake: FakeStripe, payouts: StripePayouts) -> None:
    account_id = await _onboarded_account(fake, payouts)
    payout_id = _payout_id()
    await payouts.create_transfer(2500, account_id, payout_id)

    with pytest.raises(StripeRefused) as refused:
        await payouts.create_transfer(3000, account_id, payout_id)

    assert refused.value.code == "idempotency_error"
    assert refused.value.http_status == 400
    assert len(fake.transfers) == 1


async def test_timeout_leaves_the_outcome_unknown_until_reconciliation_finds_the_transfer(
    fake: FakeStripe, payouts: StripePayouts
) -> None:
    account_id = await _onboarded_account(fake, payouts)
    payout_id = _payout_id()
    fake.delay_next_transfer(2.0)

    async with _adapter_for(fake, timeout=0.2) as impatient:
        with pytest.raises(StripeUnavailable) as unavailable:
            await impatient.create_transfer(2500, account_id, payout_id)

    assert unavailable.value.retryable is True
    # Stripe did the work before the answer was lost: the transfer exists and must not be refunded.
    [transfer] = fake.transfers
    assert await payouts.find_transfer_by_payout(payout_id) == transfer["id"]


async def test_lost_answer_then_reconciliation_finds_the_transfer(fake: FakeStripe, payouts: StripePayouts) -> None:
    account_id = await _onboarded_account(fake, payouts)
    payout_id = _payout_id()
    fake.lose_next_transfer()

    with pytest.raises(StripeUnavailable):
        await payouts.create_transfer(2500, account_id, payout_id)

    [transfer] = fake.transfers
    assert await payouts.find_transfer_by_payout(payout_id) == transfer["id"]
    # Re-sending the create within Stripe's key window settles it the same way, without paying again.
    assert await payouts.create_transfer(2500, account_id, payout_id) == transfer["id"]
    assert len(fake.transfers) == 1


async def test_library_retry_after_a_lost_answer_reuses_the_payout_key(fake: FakeStripe) -> None:
    async with _adapter_for(fake, max_network_retries=1) as retrying:
        account_id = await _onboarded_account(fake, retrying)
        payout_id = _payout_id()
        fake.lose_next_transfer()

        transfer_id = await retrying.create_transfer(2500, account_id, payout_id)

    [transfer] = fake.transfers
    assert transfer["id"] == transfer_id
    attempts = fake.requests_to("POST", "/v1/transfers")
    assert [attempt.headers["idempotency-key"] for attempt in attempts] == [payout_id, payout_id]


async def test_no_transfer_for_a_payout_that_never_reached_stripe(fake: FakeStripe, payouts: StripePayouts) -> None:
    account_id = await _onboarded_account(fake, payouts)
    await payouts.create_transfer(2500, account_id, _payout_id())

    assert await payouts.find_transfer_by_payout(_payout_id()) is None


async def test_reconciliation_ignores_a_group_member_made_for_another_payout(
    fake: FakeStripe, payouts: StripePayouts
) -> None:
    account_id = await _onboarded_account(fake, payouts)
    payout_id = _payout_id()
    # A transfer someone made by hand in the same group, for another payout: not ours to claim.
    async with httpx.AsyncClient(base_url=fake.base_url, auth=(fake.api_key, "")) as raw:
        response = await raw.post(
            "/v1/transfers",
            data={
                "amount": "700",
                "currency": "usd",
                "destination": account_id,
                "transfer_group": payout_id,
                "metadata[payout_id]": "someone-else",
            },
        )
    assert response.status_code == 200

    assert await payouts.find_transfer_by_payout(payout_id) is None
    ours = await payouts.create_transfer(2500, account_id, payout_id)
    assert await payouts.find_transfer_by_payout(payout_id) == ours


async def test_refusal_carries_stripes_code_and_is_replayed_for_the_same_payout(
    fake: FakeStripe, payouts: StripePayouts
) -> None:
    account_id = await _onboarded_account(fake, payouts)
    payout_id = _payout_id()
    fake.fail_next_transfer_with(400, "balance_insufficient", "You have insufficient available funds.")

    with pytest.raises(StripeRefused) as refused:
        await payouts.create_transfer(2500, account_id, payout_id)
    assert refused.value.code == "balance_insufficient"
    assert refused.value.error_type == "invalid_request_error"
    assert refused.value.retryable is False
    assert refused.value.request_id is not None and refused.value.request_id.startswith("req_")

    # Stripe keeps the refusal under the key: the same payout id gets the same answer, and no money moves.
    with pytest.raises(StripeRefused) as again:
        await payouts.create_transfer(2500, account_id, payout_id)
    assert again.value.code == "balance_insufficient"
    assert fake.transfers == []


async def test_transfer_to_an_account_not_yet_onboarded_is_refused(fake: FakeStripe, payouts: StripePayouts) -> None:
    account_id = await payouts.create_express_account(DRIVER_ID, EMAIL)

    with pytest.raises(StripeRefused) as refused:
        await payouts.create_transfer(2500, account_id, _payout_id())

    assert refused.value.code == "insufficient_capabilities_for_transfer"
    assert fake.transfers == []


async def test_transfer_beyond_the_platform_balance_is_refused(fake: FakeStripe, payouts: StripePayouts) -> None:
    account_id = await _onboarded_account(fake, payouts)
    fake.balance_available_cents = 2000

    with pytest.raises(StripeRefused) as refused:
        await payouts.create_transfer(2500, account_id, _payout_id())

    assert refused.value.code == "balance_insufficient"


@pytest.mark.parametrize(("status", "code"), [(500, None), (503, None), (429, "rate_limit")])
async def test_server_errors_and_rate_limits_are_retryable(
    fake: FakeStripe, payouts: StripePayouts, status: int, code: str | None
) -> None:
    account_id = await _onboarded_account(fake, payouts)
    fake.fail_next_transfer_with(status, code)

    with pytest.raises(StripeUnavailable) as unavailable:
        await payouts.create_transfer(2500, account_id, _payout_id())

    assert unavailable.value.http_status == status
    assert unavailable.value.retryable is True


async def test_rate_limited_transfer_can_be_retried_with_the_same_payout(
    fake: FakeStripe, payouts: StripePayouts
) -> None:
    account_id = await _onboarded_account(fake, payouts)
    payout_id = _payout_id()
    fake.fail_next_transfer_with(429, "rate_limit")

    with pytest.raises(StripeUnavailable):
        await payouts.create_transfer(2500, account_id, payout_id)
    # A 429 is answered before the endpoint runs, so nothing was saved under the key.
    transfer_id = await payouts.create_transfer(2500, account_id, payout_id)

    assert [transfer["id"] for transfer in fake.transfers] == [transfer_id]


async def test_unreachable_stripe_is_unavailable(fake: FakeStripe) -> None:
    # Take a port, then close it: nothing listens there.
    server = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()

    async with StripePayouts(api_key=fake.api_key, base_url=f"http://127.0.0.1:{port}", max_network_retries=0) as down:
        with pytest.raises(StripeUnavailable):
            await down.get_account_status("acct_whatever000000")


async def test_wrong_secret_key_is_refused(fake: FakeStripe) -> None:
    async with _adapter_for(fake, api_key="sk_test_notthekeyatall0000") as wrong:
        with pytest.raises(StripeRefused) as refused:
            await wrong.create_express_account(DRIVER_ID, EMAIL)

    assert refused.value.http_status == 401
    assert refused.value.retryable is False
    assert fake.accounts == {}


async def test_amounts_must_be_positive(payouts: StripePayouts) -> None:
    with pytest.raises(ValueError):
        await payouts.create_transfer(0, "acct_x", _payout_id())


# -- webhooks ---------------------------------------------------------------------------------


async def test_connected_account_events_name_the_account(fake: FakeStripe, payouts: StripePayouts) -> None:
    account_id = await payouts.create_express_account(DRIVER_ID, EMAIL)
    onboarded = fake.complete_onboarding(account_id)

    payload, header = fake.signed_event(
        "account.updated", onboarded, account=account_id, previous_attributes={"details_submitted": False}
    )
    event = payouts.verify_webhook(payload, header, fake.webhook_secret)

    assert event["account"] == account_id
    assert event["data"]["object"]["capabilities"]["transfers"] == "active"
    assert event["data"]["previous_attributes"] == {"details_submitted": False}


async def test_transfer_and_payout_lifecycle_events_are_verified(fake: FakeStripe, payouts: StripePayouts) -> None:
    account_id = await _onboarded_account(fake, payouts)
    payout_id = _payout_id()
    transfer_id = await payouts.create_transfer(2500, account_id, payout_id)

    events = [
        fake.signed_event("transfer.created", fake.transfer(transfer_id)),
        fake.signed_event("transfer.reversed", fake.reverse_transfer(transfer_id)),
        fake.signed_event("payout.paid", fake.connected_account_payout(account_id, 2500), account=account_id),
        fake.signed_event(
            "payout.failed",
            fake.connected_account_payout(account_id, 2500, failure_code="account_closed"),
            account=account_id,
        ),
    ]
    verified = [payouts.verify_webhook(payload, header, fake.webhook_secret) for payload, header in events]

    assert [event["type"] for event in verified] == [
        "transfer.created",
        "transfer.reversed",
        "payout.paid",
        "payout.failed",
    ]
    assert verified[0]["data"]["object"]["metadata"] == {"payout_id": payout_id}
    assert verified[1]["data"]["object"]["amount_reversed"] == 2500
    assert verified[3]["data"]["object"]["failure_code"] == "account_closed"
    assert verified[3]["account"] == account_id
    assert fake.balance_available_cents == 10_000_000


def test_event_object_must_match_its_type(fake: FakeStripe) -> None:
    with pytest.raises(ValueError):
        fake.signed_event("payout.paid", {"object": "transfer", "id": "tr_1"})


def test_tampered_body_is_rejected(fake: FakeStripe) -> None:
    payload, header = fake.signed_event("transfer.created", {"object": "transfer", "id": "tr_1", "amount": 2500})
    tampered = payload.replace(b"2500", b"9500")
    assert tampered != payload

    with pytest.raises(StripeSignatureInvalid):
        StripePayouts.verify_webhook(tampered, header, fake.webhook_secret)


def test_re_serialised_body_is_rejected(fake: FakeStripe) -> None:
    payload, header = fake.signed_event("transfer.created", {"object": "transfer", "id": "tr_1"})
    compact = json.dumps(json.loads(payload), separators=(",", ":")).encode()

    with pytest.raises(StripeSignatureInvalid):
        StripePayouts.verify_webhook(compact, header, fake.webhook_secret)


def test_wrong_secret_is_rejected(fake: FakeStripe) -> None:
    payload, header = fake.signed_event("transfer.created", {"object": "transfer", "id": "tr_1"})

    with pytest.raises(StripeSignatureInvalid):
        StripePayouts.verify_webhook(payload, header, "whsec_someoneelsessecret")


def test_stale_timestamp_is_rejected(fake: FakeStripe) -> None:
    payload, header = fake.signed_event(
        "transfer.created", {"object": "transfer", "id": "tr_1"}, timestamp=int(time.time()) - 301
    )

    with pytest.raises(StripeSignatureInvalid) as invalid:
        StripePayouts.verify_webhook(payload, header, fake.webhook_secret)
    assert "tolerance" in str(invalid.value)
    # The signature itself is right: a wider window accepts it.
    assert StripePayouts.verify_webhook(payload, header, fake.webhook_secret, tolerance_s=600)["type"] == (
        "transfer.created"
    )


@pytest.mark.parametrize("header", ["", "garbage", "t=notanumber,v1=abc", "t=1700000000"])
def test_missing_or_malformed_signature_is_rejected(fake: FakeStripe, header: str) -> None:
    payload, _ = fake.signed_event("transfer.created", {"object": "transfer", "id": "tr_1"})

    with pytest.raises(StripeSignatureInvalid):
        StripePayouts.verify_webhook(payload, header, fake.webhook_secret)


def test_signed_body_that_is_not_an_event_is_rejected(fake: FakeStripe) -> None:
    for body in (b"\xff\xfe not utf-8", b"not json", b'{"object": "transfer"}'):
        with pytest.raises(StripeSignatureInvalid):
            StripePayouts.verify_webhook(body, fake.sign(body), fake.webhook_secret)


def test_verification_cannot_be_switched_off(fake: FakeStripe) -> None:
    payload, header = fake.signed_event("transfer.created", {"object": "transfer", "id": "tr_1"})

    with pytest.raises(ValueError):
        StripePayouts.verify_webhook(payload, header, fake.webhook_secret, tolerance_s=0)
    with pytest.raises(ValueError):
        StripePayouts.verify_webhook(payload, header, "")


class _WebhookReceiver:
    """The smallest HTTP endpoint that keeps what Stripe's sender posts to it."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}/v1/wallet/stripe/webhook"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        headers = {
            name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines if line)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        await self.received.put((headers, body))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()


async def test_delivered_webhook_verifies_at_the_receiver(fake: FakeStripe, payouts: StripePayouts) -> None:
    account_id = await _onboarded_account(fake, payouts)
    transfer_id = await payouts.create_transfer(2500, account_id, _payout_id())

    async with _WebhookReceiver() as receiver:
        response = await fake.send_event(receiver.url, "transfer.created", fake.transfer(transfer_id))
        headers, body = await asyncio.wait_for(receiver.received.get(), timeout=5)

    assert response.status_code == 200
    assert headers["content-type"].startswith("application/json")
    event = StripePayouts.verify_webhook(body, headers["stripe-signature"], fake.webhook_secret)
    assert event["data"]["object"]["id"] == transfer_id
    assert event == fake.events[-1]


# -- the fake's own list semantics, relied on by reconciliation ---------------------------------


async def test_fake_lists_transfers_newest_first_in_pages(fake: FakeStripe, payouts: StripePayouts) -> None:
    account_id = await _onboarded_account(fake, payouts)
    created = [await payouts.create_transfer(2000 + n, account_id, _payout_id()) for n in range(3)]

    async with httpx.AsyncClient(base_url=fake.base_url, headers={"Authorization": f"Bearer {fake.api_key}"}) as raw:
        first = (await raw.get("/v1/transfers", params={"limit": 2})).json()
        rest = (await raw.get("/v1/transfers", params={"limit": 2, "starting_after": first["data"][-1]["id"]})).json()

    assert (first["object"], first["has_more"], rest["has_more"]) == ("list", True, False)
    assert [transfer["id"] for transfer in first["data"] + rest["data"]] == created[::-1]
