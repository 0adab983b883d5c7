"""Payouts through Stripe Express over REST through Envoy, with the fake Stripe server: onboarding, the
DOMAIN limits at their boundaries, lost answers and reconciliation, webhooks (signed, duplicate, out of
order, outside the transition table)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from nerava.ledger.v1 import ledger_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from fakes.stripe import FakeStripe
from fakes.twilio_verify import FakeTwilioVerify
from tests.ledger.helpers import CASH, Ledger, assert_ledger_sound, budget, driver_cash, external, new_key
from tests.support.eventually import eventually
from tests.support.gateway import Gateway
from tests.support.rpc import random_phone

WEBHOOK = "/v1/wallet/stripe/webhook"


class Driver:
    def __init__(self, rest: httpx.AsyncClient, login: dict[str, Any]) -> None:
        self.rest = rest
        self.id: str = login["user"]["public_id"]
        self.headers = {"Authorization": f"Bearer {login['access_token']}"}

    async def get(self, path: str) -> Any:
        reply = await self.rest.get(path, headers=self.headers)
        assert reply.status_code == 200, reply.text
        return reply.json()

    async def withdraw(self, amount: int, request_id: str | None = None) -> httpx.Response:
        body = {"amount_cents": amount, "request_id": request_id or str(uuid.uuid4())}
        return await self.rest.post("/v1/wallet/withdraw", json=body, headers=self.headers)


async def _driver(rest: httpx.AsyncClient, twilio: FakeTwilioVerify) -> Driver:
    phone = random_phone()
    await rest.post("/v1/auth/otp/start", json={"phone": phone})
    reply = await rest.post("/v1/auth/otp/verify", json={"phone": phone, "code": twilio.last_code_sent_to(phone)})
    return Driver(rest, reply.json())


async def _earn(ledger: Ledger, driver: str, amount: int) -> None:
    campaign = uuid.uuid4().hex[:10]
    for kind, source, target in (
        (pb.TRANSFER_KIND_CAMPAIGN_FUNDING, external(CASH), budget(campaign)),
        (pb.TRANSFER_KIND_CAMPAIGN_GRANT, budget(campaign), driver_cash(driver)),
    ):
        await ledger.post(
            pb.PostTransferRequest(
                idempotency_key=new_key(),
                kind=kind,
                currency=CASH,
                amount=amount,
                from_account=source,
                to_account=target,
            )
        )


async def _onboarded(
    rest: httpx.AsyncClient, twilio: FakeTwilioVerify, stripe: FakeStripe, ledger: Ledger, earn: int
) -> Driver:
    driver = await _driver(rest, twilio)
    created = await rest.post("/v1/wallet/stripe/account", json={"email": "d@example.com"}, headers=driver.headers)
    assert created.status_code == 200, created.text
    account_id = created.json()["stripe_account_id"]
    stripe.complete_onboarding(account_id)
    status = await driver.get("/v1/wallet/stripe/status")
    assert status["onboarding_complete"] is True
    await _earn(ledger, driver.id, earn)
    return driver


def settled_status(driver: Driver) -> Callable[[], Awaitable[str]]:
    """A check for `eventually`: the driver's latest payout's status once reconciliation (every 0.2 s in tests)
    has settled it out of UNKNOWN."""

    async def status() -> str:
        latest: str = (await driver.get("/v1/wallet/history"))["payouts"][0]["status"]
        assert latest != "PAYOUT_STATUS_UNKNOWN", "not reconciled yet"
        return latest

    return status


def _reason(reply: httpx.Response) -> str:
    return next((d["reason"] for d in reply.json().get("details", []) if d.get("@type", "").endswith("ErrorInfo")), "")


async def _deliver(stripe: FakeStripe, gateway: Gateway, event_type: str, obj: dict[str, Any]) -> httpx.Response:
    return await stripe.send_event(f"{gateway.base_url}{WEBHOOK}", event_type, obj)


async def test_onboarding_then_a_payout_reserves_then_webhook_pays(
    rest: httpx.AsyncClient,
    twilio: FakeTwilioVerify,
    stripe_fake: FakeStripe,
    ledger: Ledger,
    gateway: Gateway,
    ledger_engine: AsyncEngine,
) -> None:
    driver = await _driver(rest, twilio)
    assert (await driver.get("/v1/wallet/stripe/status"))["has_account"] is False
    missing = await driver.withdraw(2500)
    assert (missing.status_code, _reason(missing)) == (400, "STRIPE_ACCOUNT_MISSING")
    account = (await rest.post("/v1/wallet/stripe/account", json={}, headers=driver.headers)).json()
    again = (await rest.post("/v1/wallet/stripe/account", json={}, headers=driver.headers)).json()
    assert again["stripe_account_id"] == account["stripe_account_id"] and again["status"] == "existing"
    link = await rest.post(
        "/v1/wallet/stripe/account-link",
        json={"return_url": "http://localhost:5173/wallet", "refresh_url": "http://localhost:5173/wallet"},
        headers=driver.headers,
    )
    assert link.status_code == 200 and link.json()["url"].startswith("http")
    evil = await rest.post(
        "/v1/wallet/stripe/account-link",
        json={"return_url": "https://evil.example/", "refresh_url": "http://localhost:5173/x"},
        headers=driver.headers,
    )
    assert (evil.status_code, _reason(evil)) == (400, "REDIRECT_URL_NOT_ALLOWED")
    incomplete = await driver.withdraw(2500)
    assert _reason(incomplete) == "STRIPE_ONBOARDING_INCOMPLETE"
    assert (await driver.get("/v1/wallet/balance"))["stripe_onboarding_complete"] is False
    stripe_fake.complete_onboarding(account["stripe_account_id"])
    await driver.get("/v1/wallet/stripe/status")
    assert (await driver.get("/v1/wallet/balance"))["stripe_onboarding_complete"] is True
    await _earn(ledger, driver.id, 5000)

    request_id = str(uuid.uuid4())
    first = await driver.withdraw(3000, request_id)
    assert first.status_code == 200, first.text
    payout = first.json()
    assert payout["status"] == "PAYOUT_STATUS_PROCESSING"
    assert payout["transfer_id"].startswith("tr_")
    replay = (await driver.withdraw(3000, request_id)).json()
    assert replay["payout_id"] == payout["payout_id"]  # idempotent on request_id
    transfers = [t for t in stripe_fake.transfers if t["metadata"].get("payout_id") == payout["payout_id"]]
    assert len(transfers) == 1
    balance = await driver.get("/v1/wallet/balance")
    assert (balance["available_cents"], balance["pending_cents"]) == (2000, 3000)

    paid = await _deliver(stripe_fake, gateway, "transfer.created", transfers[0])
    assert paid.status_code == 200 and paid.json()["outcome"] == "WEBHOOK_OUTCOME_PROCESSED"
    balance = await driver.get("/v1/wallet/balance")
    assert (balance["pending_cents"], balance["total_withdrawn_cents"]) == (0, 3000)
    history = await driver.get("/v1/wallet/history")
    assert history["payouts"][0]["status"] == "PAYOUT_STATUS_PAID"
    await assert_ledger_sound(ledger_engine)


async def test_limits_hold_at_their_boundaries(
    rest: httpx.AsyncClient, twilio: FakeTwilioVerify, stripe_fake: FakeStripe, ledger: Ledger
) -> None:
    driver = await _onboarded(rest, twilio, stripe_fake, ledger, earn=200_000)
    below = await driver.withdraw(1999)
    assert (below.status_code, _reason(below)) == (400, "PAYOUT_BELOW_MINIMUM")
    assert (await driver.withdraw(2000)).status_code == 200  # exactly the minimum
    assert (await driver.withdraw(2000)).status_code == 200
    assert (await driver.withdraw(2000)).status_code == 200  # the 3rd of the UTC day
    fourth = await driver.withdraw(2000)
    assert (fourth.status_code, _reason(fourth)) == (429, "PAYOUT_DAILY_LIMIT")

    weekly = await _onboarded(rest, twilio, stripe_fake, ledger, earn=200_000)
    assert (await weekly.withdraw(60_000)).status_code == 200
    over = await weekly.withdraw(40_001)  # $1000.01 in the rolling 7 days
    assert (over.status_code, _reason(over)) == (429, "PAYOUT_WEEKLY_LIMIT")
    assert (await weekly.withdraw(40_000)).status_code == 200  # exactly $1000


async def test_a_payout_larger_than_the_balance_writes_nothing(
    rest: httpx.AsyncClient, twilio: FakeTwilioVerify, stripe_fake: FakeStripe, ledger: Ledger
) -> None:
    driver = await _onboarded(rest, twilio, stripe_fake, ledger, earn=2500)
    refused = await driver.withdraw(3000)
    assert (refused.status_code, _reason(refused)) == (400, "INSUFFICIENT_BALANCE")
    assert (await driver.get("/v1/wallet/history"))["payouts"] == []
    assert (await driver.get("/v1/wallet/balance"))["available_cents"] == 2500


async def test_concurrent_requests_cannot_pass_the_daily_limit_together(
    rest: httpx.AsyncClient, twilio: FakeTwilioVerify, stripe_fake: FakeStripe, ledger: Ledger
) -> None:
    driver = await _onboarded(rest, twilio, stripe_fake, ledger, earn=50_000)
    replies = await asyncio.gather(*(driver.withdraw(2000) for _ in range(8)))
    assert sorted(r.status_code for r in replies) == [200] * 3 + [429] * 5


async def test_a_refused_transfer_fails_the_payout_and_returns_the_funds_once(
    rest: httpx.AsyncClient,
    twilio: FakeTwilioVerify,
    stripe_fake: FakeStripe,
    ledger: Ledger,
    ledger_engine: AsyncEngine,
) -> None:
    driver = await _onboarded(rest, twilio, stripe_fake, ledger, earn=4000)
    stripe_fake.fail_next_transfer_with(400, "insufficient_capabilities_for_transfer")
    reply = await driver.withdraw(2500)
    assert reply.json()["status"] == "PAYOUT_STATUS_FAILED"
    balance = await driver.get("/v1/wallet/balance")
    assert (balance["available_cents"], balance["pending_cents"]) == (4000, 0)
    entries = (await driver.get("/v1/wallet/ledger"))["entries"]
    assert [e["transaction_type"] for e in entries[:2]] == ["reversal", "withdrawal"]  # the reversal entry
    await assert_ledger_sound(ledger_engine)


@pytest.mark.parametrize("lost", ["timeout", "dropped"])
async def test_a_lost_stripe_answer_is_unknown_until_reconciliation_settles_it(
    rest: httpx.AsyncClient,
    twilio: FakeTwilioVerify,
    stripe_fake: FakeStripe,
    ledger: Ledger,
    lost: str,
    ledger_engine: AsyncEngine,
) -> None:
    driver = await _onboarded(rest, twilio, stripe_fake, ledger, earn=3000)
    if lost == "timeout":
        stripe_fake.delay_next_transfer(2.0)  # Stripe does the work, the answer comes after our timeout
    else:
        stripe_fake.lose_next_transfer()
    reply = await driver.withdraw(2000)
    assert reply.json()["status"] == "PAYOUT_STATUS_UNKNOWN"
    assert (await driver.get("/v1/wallet/balance"))["pending_cents"] == 2000  # nothing refunded blindly
    assert await eventually(settled_status(driver)) == "PAYOUT_STATUS_PROCESSING"
    payout_id = reply.json()["payout_id"]
    assert len([t for t in stripe_fake.transfers if t["metadata"].get("payout_id") == payout_id]) == 1
    await assert_ledger_sound(ledger_engine)


async def test_webhooks_are_signed_replay_safe_and_follow_the_transition_table(
    rest: httpx.AsyncClient,
    twilio: FakeTwilioVerify,
    stripe_fake: FakeStripe,
    ledger: Ledger,
    gateway: Gateway,
    ledger_engine: AsyncEngine,
) -> None:
    driver = await _onboarded(rest, twilio, stripe_fake, ledger, earn=6000)
    payout = (await driver.withdraw(2500)).json()
    transfer = next(t for t in stripe_fake.transfers if t["metadata"].get("payout_id") == payout["payout_id"])

    payload, header = stripe_fake.signed_event("transfer.created", transfer)
    forged = await stripe_fake.deliver(f"{gateway.base_url}{WEBHOOK}", payload.replace(b"2500", b"9999"), header)
    assert forged.status_code == 400
    assert (await driver.get("/v1/wallet/history"))["payouts"][0]["status"] == "PAYOUT_STATUS_PROCESSING"

    first = await stripe_fake.deliver(f"{gateway.base_url}{WEBHOOK}", payload, header)
    assert first.json()["outcome"] == "WEBHOOK_OUTCOME_PROCESSED"
    duplicate = await stripe_fake.deliver(f"{gateway.base_url}{WEBHOOK}", payload, header)
    assert duplicate.json()["outcome"] == "WEBHOOK_OUTCOME_DUPLICATE"

    # paid is final: a late reversal event is outside the table and changes nothing.
    late = await _deliver(stripe_fake, gateway, "transfer.reversed", stripe_fake.reverse_transfer(transfer["id"]))
    assert late.json()["outcome"] == "WEBHOOK_OUTCOME_IGNORED"
    balance = await driver.get("/v1/wallet/balance")
    assert (balance["available_cents"], balance["total_withdrawn_cents"]) == (3500, 2500)

    # Out of order: the reversal arrives before the creation for a second payout.
    second = (await driver.withdraw(2000)).json()
    other = next(t for t in stripe_fake.transfers if t["metadata"].get("payout_id") == second["payout_id"])
    reversed_ = await _deliver(stripe_fake, gateway, "transfer.reversed", stripe_fake.reverse_transfer(other["id"]))
    assert reversed_.json()["outcome"] == "WEBHOOK_OUTCOME_PROCESSED"
    created_late = await _deliver(stripe_fake, gateway, "transfer.created", other)
    assert created_late.json()["outcome"] == "WEBHOOK_OUTCOME_IGNORED"
    history = {p["id"]: p["status"] for p in (await driver.get("/v1/wallet/history"))["payouts"]}
    assert history[second["payout_id"]] == "PAYOUT_STATUS_FAILED"
    assert (await driver.get("/v1/wallet/balance"))["available_cents"] == 3500  # returned once
    await assert_ledger_sound(ledger_engine)


async def test_reconciliation_fails_a_payout_stripe_never_made_and_returns_the_funds_once(
    rest: httpx.AsyncClient,
    twilio: FakeTwilioVerify,
    stripe_fake: FakeStripe,
    ledger: Ledger,
    ledger_engine: AsyncEngine,
) -> None:
    driver = await _onboarded(rest, twilio, stripe_fake, ledger, earn=2600)
    stripe_fake.fail_next_transfer_with(500, "api_error")  # Stripe failed before making the transfer
    reply = await driver.withdraw(2000)
    assert reply.json()["status"] == "PAYOUT_STATUS_UNKNOWN"
    assert await eventually(settled_status(driver)) == "PAYOUT_STATUS_FAILED"
    balance = await driver.get("/v1/wallet/balance")
    assert (balance["available_cents"], balance["pending_cents"]) == (2600, 0)
    payout_id = reply.json()["payout_id"]
    assert not [t for t in stripe_fake.transfers if t["metadata"].get("payout_id") == payout_id]
    await assert_ledger_sound(ledger_engine)


async def test_concurrent_account_creations_of_one_driver_get_one_account(
    rest: httpx.AsyncClient, twilio: FakeTwilioVerify, stripe_fake: FakeStripe
) -> None:
    """A double tap, two devices, or a corrected email: never a 500 (Stripe refuses one key with other
    parameters), and every answer names the one account the driver keeps."""
    driver = await _driver(rest, twilio)
    emails = ["first@example.com", "second@example.com", "", "first@example.com"]
    replies = await asyncio.gather(
        *(rest.post("/v1/wallet/stripe/account", json={"email": e}, headers=driver.headers) for e in emails)
    )
    assert [r.status_code for r in replies] == [200] * len(emails), [r.text for r in replies]
    accounts = {r.json()["stripe_account_id"] for r in replies}
    assert len(accounts) == 1
    assert sorted(r.json()["status"] for r in replies) == ["created", "existing", "existing", "existing"]
    again = await rest.post("/v1/wallet/stripe/account", json={"email": "third@example.com"}, headers=driver.headers)
    assert (again.json()["stripe_account_id"], again.json()["status"]) == (accounts.pop(), "existing")
