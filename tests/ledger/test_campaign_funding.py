"""Campaign funding: a paid Stripe Checkout (signed checkout.session.completed through HandleStripeEvent over
real gRPC) books the net budget and the platform fee in one transaction, once per checkout session, and the
ledger's outbox relay tells incentives (RecordCampaignFunding) — here a stand-in incentives server, so the
test does not depend on the real one.

The checkouts are opened with incentives' own StripeCheckout adapter against the fake Stripe, so the
metadata the ledger reads is exactly what incentives writes.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.api import httpbody_pb2
from nerava.ledger.v1 import ledger_pb2 as pb
from nerava.ledger.v1 import ledger_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from fakes.stripe import FakeStripe
from services.common.db import create_engine
from services.incentives.adapters.stripe_checkout import StripeCheckout
from services.ledger import store
from tests.ledger.funding_support import IncentivesReceiver, eventually, ledger_database, running_ledger
from tests.ledger.helpers import CASH, NOVA, assert_ledger_sound
from tests.support.rpc import TEST_SERVICE_SECRET, as_service
from tools.embedded import free_port

COMPLETED = "checkout.session.completed"
PROCESSED, DUPLICATE, IGNORED = pb.WEBHOOK_OUTCOME_PROCESSED, pb.WEBHOOK_OUTCOME_DUPLICATE, pb.WEBHOOK_OUTCOME_IGNORED
CURRENCY_NAMES: dict[int, str] = {CASH: "CURRENCY_CASH_CENTS", NOVA: "CURRENCY_NOVA_POINTS"}


def _budget(campaign_id: str, currency: int) -> pb.AccountRef:
    return pb.AccountRef(type=pb.ACCOUNT_TYPE_CAMPAIGN_BUDGET, owner_id=campaign_id, currency=currency)  # type: ignore[arg-type]


PLATFORM_FEES = pb.AccountRef(type=pb.ACCOUNT_TYPE_PLATFORM_FEES, owner_id="platform", currency=CASH)


def _stripe_funding(currency: int) -> pb.AccountRef:
    return pb.AccountRef(type=pb.ACCOUNT_TYPE_EXTERNAL_FUNDING, owner_id="stripe", currency=currency)  # type: ignore[arg-type]


@dataclasses.dataclass
class FundingLedger:
    stub: ledger_pb2_grpc.LedgerServiceAsyncStub
    engine: AsyncEngine
    stripe: FakeStripe
    checkout: StripeCheckout
    receiver: IncentivesReceiver

    async def open_checkout(self, gross: int, bps: int = 2000, currency: int = CASH) -> tuple[str, str]:
        """(campaign id, checkout session id) of a new, unpaid checkout."""
        campaign_id = str(uuid.uuid4())
        session = await self.checkout.create_checkout_session(
            campaign_id=campaign_id,
            gross_cents=gross,
            platform_fee_bps=bps,
            reward_currency=CURRENCY_NAMES[currency],
            success_url="https://console.nerava.test/ok",
            cancel_url="https://console.nerava.test/cancel",
            idempotency_key=None,
        )
        return campaign_id, session.session_id

    async def paid_checkout(self, gross: int, bps: int = 2000, currency: int = CASH) -> tuple[str, dict[str, Any]]:
        """(campaign id, the completed session as checkout.session.completed carries it)."""
        campaign_id, session_id = await self.open_checkout(gross, bps, currency)
        return campaign_id, self.stripe.complete_checkout_session(session_id)

    async def relay_moved_on(self) -> None:
        """Waits for the delivery of a later payment's funding: by then the relay has made a pass after every
        earlier row was answered, so a second delivery of one of them, were it made, has been made."""
        _, later = await self.paid_checkout(1_000)
        assert (await self.webhook(later)).outcome == PROCESSED
        await eventually(lambda: self.receiver.calls_for(later["id"]))

    async def deliver(self, payload: bytes, header: str) -> pb.HandleStripeEventResponse:
        return await self.stub.HandleStripeEvent(
            pb.HandleStripeEventRequest(http_body=httpbody_pb2.HttpBody(content_type="application/json", data=payload)),
            metadata=(("stripe-signature", header),),
        )

    async def webhook(self, obj: dict[str, Any], event_type: str = COMPLETED) -> pb.HandleStripeEventResponse:
        payload, header = self.stripe.signed_event(event_type, obj)
        return await self.deliver(payload, header)

    async def balance(self, ref: pb.AccountRef) -> int | None:
        try:
            reply = await self.stub.GetAccount(pb.GetAccountRequest(account=ref), metadata=as_service("incentives"))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return reply.account.balance

    async def transfers(self, ref: pb.AccountRef) -> list[pb.Transfer]:
        reply = await self.stub.ListTransfers(pb.ListTransfersRequest(account=ref), metadata=as_service("incentives"))
        return list(reply.transfers)

    async def issues(self) -> list[Any]:
        """What ListPaymentIssues shows an admin (read here from its table: this ledger runs without accounts)."""
        return await store.payment_issues_page(self.engine, 200)

    async def outbox_rows(self, key: str) -> list[Any]:
        t = store.outbox
        async with self.engine.connect() as conn:
            return list((await conn.execute(sa.select(t).where(t.c.key == key))).all())


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[IncentivesReceiver]:
    running = IncentivesReceiver(free_port())
    await running.start()
    yield running
    await running.stop()


@pytest.fixture(scope="module")
async def funding_ledger(
    database_server_url: str, redis_url: str, stripe_fake: FakeStripe, receiver: IncentivesReceiver
) -> AsyncIterator[FundingLedger]:
    async with ledger_database(database_server_url) as database_url:
        port = free_port()
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SERVICE_TOKEN_SECRET": TEST_SERVICE_SECRET,
            "LEDGER_PORT": str(port),
            "INCENTIVES_ADDR": receiver.address,
            "STRIPE_API_BASE": stripe_fake.base_url,
            "STRIPE_API_KEY": stripe_fake.api_key,
            "STRIPE_WEBHOOK_SECRET": stripe_fake.webhook_secret,
            "STOP_GRACE_SECONDS": "1",
            # Deliver promptly and retry often: the tests wait for the relay.
            "OUTBOX_POLL_S": "0.1",
            "OUTBOX_MAX_BACKOFF_S": "0.5",
            # Bounded: a delivery still failing after 8 attempts (about 3 s here) goes to the dead-letter list.
            "OUTBOX_MAX_ATTEMPTS": "8",
        }
        engine = create_engine(database_url, "ledger")
        async with (
            running_ledger(env),
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
            StripeCheckout(api_key=stripe_fake.api_key, base_url=stripe_fake.base_url, max_network_retries=0) as co,
        ):
            yield FundingLedger(ledger_pb2_grpc.LedgerServiceStub(channel), engine, stripe_fake, co, receiver)
        await engine.dispose()


async def test_a_paid_cash_checkout_funds_the_budget_net_of_the_fee(funding_ledger: FundingLedger) -> None:
    ledger = funding_ledger
    fees_before = await ledger.balance(PLATFORM_FEES) or 0
    stripe_before = await ledger.balance(_stripe_funding(CASH)) or 0
    campaign_id, session = await ledger.paid_checkout(150_000, bps=2000)
    payload, header = ledger.stripe.signed_event(COMPLETED, session)

    reply = await ledger.deliver(payload, header)

    assert (reply.outcome, reply.event_type) == (PROCESSED, COMPLETED)
    assert reply.event_id == json.loads(payload)["id"]
    assert await ledger.balance(_budget(campaign_id, CASH)) == 120_000
    assert await ledger.balance(PLATFORM_FEES) == fees_before + 30_000
    assert await ledger.balance(_stripe_funding(CASH)) == stripe_before - 150_000
    assert await ledger.balance(_budget(campaign_id, NOVA)) is None
    [funding] = await ledger.transfers(_budget(campaign_id, CASH))
    assert (funding.kind, funding.amount, funding.currency) == (pb.TRANSFER_KIND_CAMPAIGN_FUNDING, 120_000, CASH)
    assert funding.idempotency_key == f"funding:{session['id']}"
    assert funding.from_account == _stripe_funding(CASH)
    assert funding.metadata.campaign_id == campaign_id
    [fee] = [t for t in await ledger.transfers(PLATFORM_FEES) if t.metadata.campaign_id == campaign_id]
    assert (fee.kind, fee.amount, fee.idempotency_key) == (
        pb.TRANSFER_KIND_PLATFORM_FEE,
        30_000,
        f"platform-fee:{session['id']}",
    )
    assert funding.created_at == fee.created_at  # one transaction

    recorded = await eventually(lambda: ledger.receiver.recorded.get(session["id"]))
    assert (recorded.campaign_id, recorded.checkout_session_id) == (campaign_id, session["id"])
    assert (recorded.gross_cents, recorded.platform_fee_cents, recorded.net_budget_cents) == (150_000, 30_000, 120_000)
    assert recorded.paid_at.seconds == json.loads(payload)["created"]
    assert [call.caller for call in ledger.receiver.calls_for(session["id"])] == ["ledger"]
    [row] = await eventually(lambda: _delivered(ledger, session["id"]))
    assert row.topic == "campaign.funded"
    assert row.payload["paid_at"].endswith("Z")
    await assert_ledger_sound(ledger.engine)


async def _delivered(ledger: FundingLedger, key: str) -> list[Any]:
    rows = await ledger.outbox_rows(key)
    return rows if rows and all(row.delivered_at is not None for row in rows) else []


async def test_a_nova_campaign_budget_is_funded_in_points_and_the_fee_in_cash(funding_ledger: FundingLedger) -> None:
    ledger = funding_ledger
    fees_before = await ledger.balance(PLATFORM_FEES) or 0
    campaign_id, session = await ledger.paid_checkout(9_999, bps=2000, currency=NOVA)

    assert (await ledger.webhook(session)).outcome == PROCESSED

    # 9999 * 20 % = 1999.8: the fee is rounded down, the budget gets the rest.
    assert await ledger.balance(_budget(campaign_id, NOVA)) == 8_000
    assert await ledger.balance(_budget(campaign_id, CASH)) is None
    assert await ledger.balance(PLATFORM_FEES) == fees_before + 1_999
    [funding] = await ledger.transfers(_budget(campaign_id, NOVA))
    assert (funding.currency, funding.from_account) == (NOVA, _stripe_funding(NOVA))
    recorded = await eventually(lambda: ledger.receiver.recorded.get(session["id"]))
    assert (recorded.gross_cents, recorded.platform_fee_cents, recorded.net_budget_cents) == (9_999, 1_999, 8_000)
    await assert_ledger_sound(ledger.engine)


async def test_without_a_fee_only_the_budget_moves(funding_ledger: FundingLedger) -> None:
    ledger = funding_ledger
    fees_before = await ledger.balance(PLATFORM_FEES) or 0
    campaign_id, session = await ledger.paid_checkout(5_000, bps=0)

    assert (await ledger.webhook(session)).outcome == PROCESSED

    assert await ledger.balance(_budget(campaign_id, CASH)) == 5_000
    assert await ledger.balance(PLATFORM_FEES) == fees_before
    assert not [t for t in await ledger.transfers(PLATFORM_FEES) if t.metadata.campaign_id == campaign_id]
    recorded = await eventually(lambda: ledger.receiver.recorded.get(session["id"]))
    assert (recorded.gross_cents, recorded.platform_fee_cents, recorded.net_budget_cents) == (5_000, 0, 5_000)


async def test_the_same_event_twice_is_a_duplicate(funding_ledger: FundingLedger) -> None:
    ledger = funding_ledger
    campaign_id, session = await ledger.paid_checkout(10_000)
    payload, header = ledger.stripe.signed_event(COMPLETED, session)

    first = await ledger.deliver(payload, header)
    again = await ledger.deliver(payload, header)

    assert (first.outcome, again.outcome) == (PROCESSED, DUPLICATE)
    assert again.event_id == first.event_id
    assert await ledger.balance(_budget(campaign_id, CASH)) == 8_000
    assert len(await ledger.transfers(_budget(campaign_id, CASH))) == 1


async def test_another_event_for_the_same_checkout_funds_it_once(funding_ledger: FundingLedger) -> None:
    ledger = funding_ledger
    fees_before = await ledger.balance(PLATFORM_FEES) or 0
    campaign_id, session = await ledger.paid_checkout(10_000)

    first = await ledger.webhook(session)
    resent = await ledger.webhook(session)  # a new event id, the same checkout session
    late = await ledger.webhook(session, "checkout.session.async_payment_succeeded")

    assert first.event_id != resent.event_id
    assert (first.outcome, resent.outcome, late.outcome) == (PROCESSED, DUPLICATE, DUPLICATE)
    assert await ledger.balance(_budget(campaign_id, CASH)) == 8_000
    assert await ledger.balance(PLATFORM_FEES) == fees_before + 2_000
    assert len(await ledger.transfers(_budget(campaign_id, CASH))) == 1
    await eventually(lambda: _delivered(ledger, session["id"]))
    assert len(await ledger.outbox_rows(session["id"])) == 1
    await ledger.relay_moved_on()
    assert len(ledger.receiver.calls_for(session["id"])) == 1
    await assert_ledger_sound(ledger.engine)


async def test_concurrent_events_for_one_checkout_fund_it_once(funding_ledger: FundingLedger) -> None:
    ledger = funding_ledger
    campaign_id, session = await ledger.paid_checkout(25_000, bps=1000)

    replies = await asyncio.gather(*(ledger.webhook(session) for _ in range(6)))

    assert sorted(reply.outcome for reply in replies) == [PROCESSED] + [DUPLICATE] * 5
    assert await ledger.balance(_budget(campaign_id, CASH)) == 22_500
    assert len(await ledger.transfers(_budget(campaign_id, CASH))) == 1
    await assert_ledger_sound(ledger.engine)


def _altered(session: dict[str, Any], **changes: Any) -> dict[str, Any]:
    altered = copy.deepcopy(session)
    metadata = altered["metadata"]
    for name, value in changes.items():
        if name == "metadata":
            altered["metadata"] = value
        elif name in metadata:
            if value is None:
                del metadata[name]
            else:
                metadata[name] = value
        else:
            altered[name] = value
    return altered


NEEDS_ATTENTION = pb.WEBHOOK_OUTCOME_NEEDS_ATTENTION


@pytest.mark.parametrize(
    ("changes", "outcome"),
    [
        pytest.param({"metadata": {}}, IGNORED, id="a checkout without metadata"),
        pytest.param({"type": "merchant_order"}, IGNORED, id="another kind of checkout"),
        pytest.param({"type": None}, IGNORED, id="no type"),
        pytest.param({"payment_status": "unpaid"}, IGNORED, id="completed but not paid yet"),
        # Paid campaign checkouts the ledger cannot book: acknowledged, and recorded for an admin.
        pytest.param({"platform_fee_bps": "20000"}, NEEDS_ATTENTION, id="fee above 100 %"),
        pytest.param({"platform_fee_bps": "10000"}, NEEDS_ATTENTION, id="fee of 100 % leaves no budget"),
        pytest.param({"platform_fee_bps": "-5"}, NEEDS_ATTENTION, id="negative fee"),
        pytest.param({"platform_fee_bps": "twenty"}, NEEDS_ATTENTION, id="fee not a number"),
        pytest.param({"platform_fee_bps": None}, NEEDS_ATTENTION, id="no fee"),
        pytest.param({"reward_currency": "CURRENCY_UNSPECIFIED"}, NEEDS_ATTENTION, id="unknown currency"),
        pytest.param({"campaign_id": "campaign-42"}, NEEDS_ATTENTION, id="campaign id not a UUID"),
        pytest.param({"currency": "eur"}, NEEDS_ATTENTION, id="paid in euros"),
        pytest.param({"amount_total": 0}, NEEDS_ATTENTION, id="nothing paid"),
    ],
)
async def test_checkouts_that_fund_nothing_are_ignored(
    funding_ledger: FundingLedger, changes: dict[str, Any], outcome: int
) -> None:
    ledger = funding_ledger
    campaign_id, session = await ledger.paid_checkout(10_000)

    reply = await ledger.webhook(_altered(session, **changes))

    assert reply.outcome == outcome
    if outcome == NEEDS_ATTENTION:
        issues = await ledger.issues()
        assert any(i.event_id == reply.event_id and i.object_id == session["id"] for i in issues)
    for currency in (CASH, NOVA):
        assert await ledger.balance(_budget(campaign_id, currency)) is None
    assert await ledger.outbox_rows(session["id"]) == []


async def test_a_delayed_payment_is_booked_when_it_succeeds(funding_ledger: FundingLedger) -> None:
    ledger = funding_ledger
    campaign_id, session = await ledger.paid_checkout(4_000, bps=2500)

    pending = await ledger.webhook(_altered(session, payment_status="unpaid"))
    succeeded = await ledger.webhook(session, "checkout.session.async_payment_succeeded")

    assert (pending.outcome, succeeded.outcome) == (IGNORED, PROCESSED)
    assert await ledger.balance(_budget(campaign_id, CASH)) == 3_000


async def test_an_unpaid_checkout_that_expires_is_ignored(funding_ledger: FundingLedger) -> None:
    ledger = funding_ledger
    campaign_id, session_id = await ledger.open_checkout(4_000)

    reply = await ledger.webhook(ledger.stripe.expire_checkout_session(session_id), "checkout.session.expired")

    assert reply.outcome == IGNORED
    assert await ledger.balance(_budget(campaign_id, CASH)) is None


async def test_a_forged_checkout_event_books_nothing(funding_ledger: FundingLedger) -> None:
    ledger = funding_ledger
    campaign_id, session = await ledger.paid_checkout(10_000)
    payload, header = ledger.stripe.signed_event(COMPLETED, session)
    tampered = payload.replace(b'"amount_total": 10000', b'"amount_total": 99999')
    assert tampered != payload

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await ledger.deliver(tampered, header)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await ledger.balance(_budget(campaign_id, CASH)) is None


async def test_funding_reaches_incentives_once_it_is_back(funding_ledger: FundingLedger) -> None:
    ledger = funding_ledger
    await ledger.receiver.stop()
    try:
        campaign_id, session = await ledger.paid_checkout(30_000)

        # The money is booked at once; only the news waits.
        assert (await ledger.webhook(session)).outcome == PROCESSED
        assert await ledger.balance(_budget(campaign_id, CASH)) == 24_000

        async def retried() -> bool:
            [row] = await ledger.outbox_rows(session["id"])
            return row.attempts >= 3 and row.last_error is not None and row.delivered_at is None

        await eventually(retried)
    finally:
        await ledger.receiver.start()
    recorded = await eventually(lambda: ledger.receiver.recorded.get(session["id"]), timeout_s=20)
    assert recorded.net_budget_cents == 24_000
    [row] = await eventually(lambda: _delivered(ledger, session["id"]))
    assert row.failed_at is None


async def test_a_transient_refusal_is_retried(funding_ledger: FundingLedger) -> None:
    ledger = funding_ledger
    campaign_id, session_id = await ledger.open_checkout(12_000)
    ledger.receiver.refusals[campaign_id] = (grpc.StatusCode.INTERNAL, "database restarting")
    session = ledger.stripe.complete_checkout_session(session_id)

    assert (await ledger.webhook(session)).outcome == PROCESSED

    await eventually(lambda: len(ledger.receiver.calls_for(session_id)) >= 2)
    del ledger.receiver.refusals[campaign_id]
    await eventually(lambda: _delivered(ledger, session_id))
    assert ledger.receiver.recorded[session_id].net_budget_cents == 9_600


async def test_a_delivery_that_keeps_failing_is_dead_lettered_then_replayed(funding_ledger: FundingLedger) -> None:
    ledger = funding_ledger
    campaign_id, session_id = await ledger.open_checkout(15_000)
    ledger.receiver.refusals[campaign_id] = (grpc.StatusCode.INTERNAL, "incentives keeps failing")
    session = ledger.stripe.complete_checkout_session(session_id)
    assert (await ledger.webhook(session)).outcome == PROCESSED

    async def parked() -> Any:
        rows = await ledger.outbox_rows(session_id)
        assert rows and rows[0].failed_at is not None  # `eventually` retries an assertion, not a None
        return rows[0]

    row = await eventually(parked)
    assert (row.attempts, row.delivered_at) == (8, None)
    assert len(ledger.receiver.calls_for(session_id)) == 8  # bounded, not every 60 s forever
    # The operator lists it (`make outbox`) and replays it once incentives is back.
    listed = await _outbox_cli(ledger, "--service", "ledger")
    assert f"#{row.id} campaign.funded {session_id} attempts=8" in listed
    del ledger.receiver.refusals[campaign_id]
    assert "1 row(s) back in the queue" in await _outbox_cli(ledger, "--service", "ledger", "--replay", str(row.id))
    await eventually(lambda: _delivered(ledger, session_id))
    assert ledger.receiver.recorded[session_id].net_budget_cents == 12_000


async def _outbox_cli(ledger: FundingLedger, *args: str) -> str:
    """`make outbox ARGS=…` on this ledger's database, as a process; its output."""
    url = ledger.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.common.outbox_cli",
        *args,
        env={**os.environ, "DATABASE_URL": url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    return output.decode()


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (grpc.StatusCode.FAILED_PRECONDITION, "CAMPAIGN_ALREADY_FUNDED"),
        (grpc.StatusCode.NOT_FOUND, "CAMPAIGN_NOT_FOUND"),
    ],
)
async def test_a_payment_the_campaign_does_not_take_is_refunded_whole(
    funding_ledger: FundingLedger, code: grpc.StatusCode, message: str
) -> None:
    ledger = funding_ledger
    campaign_id, session_id = await ledger.open_checkout(20_000)
    ledger.receiver.refusals[campaign_id] = (code, message)
    fees_before = await ledger.balance(PLATFORM_FEES) or 0
    session = ledger.stripe.complete_checkout_session(session_id)

    assert (await ledger.webhook(session)).outcome == PROCESSED

    await eventually(lambda: ledger.stripe.refunded_cents(session["payment_intent"]) == 20_000)
    await eventually(lambda: _delivered(ledger, session_id))
    # Net and fee both reversed: nothing of the payment stays, not even the platform fee.
    assert await ledger.balance(_budget(campaign_id, CASH)) == 0
    assert (await ledger.balance(PLATFORM_FEES) or 0) == fees_before
    refunds = [r for r in ledger.stripe.refunds if r["payment_intent"] == session["payment_intent"]]
    assert [r["amount"] for r in refunds] == [20_000]  # once, whatever the relay retried
    await ledger.relay_moved_on()
    assert len(ledger.receiver.calls_for(session_id)) == 1


async def test_an_unreadable_delivery_parks_the_row(funding_ledger: FundingLedger) -> None:
    code, message = grpc.StatusCode.INVALID_ARGUMENT, "bad request"
    ledger = funding_ledger
    campaign_id, session_id = await ledger.open_checkout(20_000)
    ledger.receiver.refusals[campaign_id] = (code, message)
    session = ledger.stripe.complete_checkout_session(session_id)

    assert (await ledger.webhook(session)).outcome == PROCESSED

    async def parked() -> Any:
        rows = await ledger.outbox_rows(session_id)
        assert rows and rows[0].failed_at is not None  # `eventually` retries an assertion, not a None
        return rows[0]

    row = await eventually(parked)
    assert row.delivered_at is None
    assert code.name in row.last_error and message in row.last_error
    await ledger.relay_moved_on()
    assert len(ledger.receiver.calls_for(session_id)) == 1  # not retried
    # A request incentives cannot read is for a person (make outbox): the money stays booked meanwhile.
    assert await ledger.balance(_budget(campaign_id, CASH)) == 16_000
