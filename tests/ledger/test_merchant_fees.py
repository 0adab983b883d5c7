"""Merchant fees: 15 % of the Nova redeemed, half-up per redemption, accrued by the redemption's own
transaction into the calendar month; an invoiced period takes no more (the fee goes to the next open month)."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa
from nerava.ledger.v1 import ledger_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from fakes.twilio_verify import FakeTwilioVerify
from services.accounts.seed import ensure_phone_user
from services.common.db import create_engine
from services.ledger import domain
from tests.ledger.helpers import Ledger, assert_ledger_sound
from tests.support.rpc import error_reason, random_phone


def _merchant() -> str:
    return f"m_{uuid.uuid4().hex[:12]}"


def _this_month() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m")


def _next_month(month: str) -> str:
    _, last = domain.month_bounds(month)
    return (last + datetime.timedelta(days=1)).strftime("%Y-%m")


async def _period(ledger: Ledger, merchant: str, month: str = "") -> pb.MerchantFeePeriod:
    reply = await ledger.stub.GetMerchantFeePeriod(
        pb.GetMerchantFeePeriodRequest(merchant_id=merchant, month=month), metadata=ledger.metadata
    )
    return reply.period


@pytest.mark.parametrize(
    ("redeemed", "fee"), [(300, 45), (10, 2), (30, 5), (50, 8), (70, 11), (333, 50), (1, 0), (3, 0), (4, 1), (99, 15)]
)
def test_the_fee_is_fifteen_percent_rounded_half_up(redeemed: int, fee: int) -> None:
    assert domain.merchant_fee_cents(redeemed) == fee


async def test_each_redemption_accrues_its_fee_in_the_same_transaction(
    ledger: Ledger, ledger_engine: AsyncEngine
) -> None:
    driver, merchant = uuid.uuid4().hex[:12], _merchant()
    amounts = [300, 10, 30, 333, 1, 70, 99, 4]
    await ledger.grant_nova(driver, sum(amounts))
    replies = [await ledger.post(ledger.redemption(driver, merchant, amount)) for amount in amounts]
    assert [reply.merchant_fee_cents for reply in replies] == [domain.merchant_fee_cents(a) for a in amounts]
    # The trigger's arithmetic is the domain's: one accrual per transfer, with the fee the reply announced.
    async with ledger_engine.connect() as conn:
        accrued: dict[str, int] = dict(
            (
                await conn.execute(
                    sa.text("SELECT transfer_id::text, fee_cents FROM merchant_fee_accruals WHERE merchant_id = :m"),
                    {"m": merchant},
                )
            ).all()
        )
    assert accrued == {reply.transfer.id: reply.merchant_fee_cents for reply in replies}
    period = await _period(ledger, merchant)
    first, last = domain.month_bounds(_this_month())
    assert (period.period_start, period.period_end) == (first.isoformat(), last.isoformat())
    assert period.nova_redeemed == sum(amounts)
    assert period.fee_cents == sum(domain.merchant_fee_cents(a) for a in amounts)  # per redemption, not on the sum
    assert period.redemption_count == len(amounts)
    assert period.status == pb.FEE_PERIOD_STATUS_ACCRUING
    await assert_ledger_sound(ledger_engine)


async def test_a_replayed_or_refused_redemption_accrues_nothing_more(
    ledger: Ledger, ledger_engine: AsyncEngine
) -> None:
    driver, merchant = uuid.uuid4().hex[:12], _merchant()
    await ledger.grant_nova(driver, 300)
    request = ledger.redemption(driver, merchant, 300)
    first = await ledger.post(request)
    again = await ledger.post(request)
    assert again.replayed and again.merchant_fee_cents == first.merchant_fee_cents == 45
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await ledger.post(ledger.redemption(driver, merchant, 1))
    assert error_reason(refused.value) == "INSUFFICIENT_BALANCE"
    period = await _period(ledger, merchant)
    assert (period.nova_redeemed, period.fee_cents, period.redemption_count) == (300, 45, 1)
    await assert_ledger_sound(ledger_engine)


async def test_a_month_without_redemptions_reads_as_zero_and_accruing(ledger: Ledger) -> None:
    period = await _period(ledger, _merchant(), "2024-02")
    assert (period.period_start, period.period_end) == ("2024-02-01", "2024-02-29")
    assert (period.nova_redeemed, period.fee_cents, period.status) == (0, 0, pb.FEE_PERIOD_STATUS_ACCRUING)


async def _login(rest: httpx.AsyncClient, twilio: FakeTwilioVerify, phone: str) -> dict[str, str]:
    await rest.post("/v1/auth/otp/start", json={"phone": phone})
    reply = await rest.post("/v1/auth/otp/verify", json={"phone": phone, "code": twilio.last_code_sent_to(phone)})
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


@pytest.fixture
async def admin(rest: httpx.AsyncClient, twilio: FakeTwilioVerify, database_url: str) -> dict[str, str]:
    phone = random_phone()
    accounts = create_engine(database_url, "accounts")
    await ensure_phone_user(accounts, phone, ["admin"])
    await accounts.dispose()
    return await _login(rest, twilio, phone)


async def _close(rest: httpx.AsyncClient, who: dict[str, str], merchant: str, month: str, status: str) -> Any:
    return await rest.post(
        f"/v1/admin/merchant-fees/{merchant}:close", json={"month": month, "status": status}, headers=who
    )


async def test_an_invoiced_period_takes_no_more_and_the_fee_goes_to_the_next_month(
    rest: httpx.AsyncClient, admin: dict[str, str], ledger: Ledger, ledger_engine: AsyncEngine
) -> None:
    driver, merchant, month = uuid.uuid4().hex[:12], _merchant(), _this_month()
    await ledger.grant_nova(driver, 1000)
    await ledger.post(ledger.redemption(driver, merchant, 300))
    closed = await _close(rest, admin, merchant, month, "FEE_PERIOD_STATUS_INVOICED")
    assert closed.status_code == 200, closed.text
    assert closed.json()["period"]["status"] == "FEE_PERIOD_STATUS_INVOICED"
    assert closed.json()["period"]["fee_cents"] == "45"
    # Closing again is harmless; skipping a step or going back is refused.
    assert (await _close(rest, admin, merchant, month, "FEE_PERIOD_STATUS_INVOICED")).status_code == 200
    later = await ledger.post(ledger.redemption(driver, merchant, 200))
    assert later.merchant_fee_cents == 30
    invoiced, following = await _period(ledger, merchant, month), await _period(ledger, merchant, _next_month(month))
    assert (invoiced.nova_redeemed, invoiced.fee_cents, invoiced.status) == (300, 45, pb.FEE_PERIOD_STATUS_INVOICED)
    assert (following.nova_redeemed, following.fee_cents, following.status) == (200, 30, pb.FEE_PERIOD_STATUS_ACCRUING)
    paid = await _close(rest, admin, merchant, month, "FEE_PERIOD_STATUS_PAID")
    assert paid.json()["period"]["status"] == "FEE_PERIOD_STATUS_PAID"
    back = await _close(rest, admin, merchant, month, "FEE_PERIOD_STATUS_INVOICED")
    assert back.status_code == 400 and back.json()["details"][0]["reason"] == "FEE_PERIOD_TRANSITION_INVALID"
    skip = await _close(rest, admin, merchant, _next_month(month), "FEE_PERIOD_STATUS_PAID")
    assert skip.status_code == 400
    await assert_ledger_sound(ledger_engine)


async def test_concurrent_redemptions_and_a_close_lose_no_fee(
    rest: httpx.AsyncClient, admin: dict[str, str], ledger: Ledger, ledger_engine: AsyncEngine
) -> None:
    drivers, merchant, month = [uuid.uuid4().hex[:12] for _ in range(20)], _merchant(), _this_month()
    for driver in drivers:
        await ledger.grant_nova(driver, 100)
    replies = await asyncio.gather(
        *(ledger.post(ledger.redemption(driver, merchant, 100)) for driver in drivers),
        _close(rest, admin, merchant, month, "FEE_PERIOD_STATUS_INVOICED"),
    )
    assert replies[-1].status_code == 200
    invoiced, following = await _period(ledger, merchant, month), await _period(ledger, merchant, _next_month(month))
    # Each redemption landed in exactly one of the two periods, and the invoice shows what it had when closed.
    assert invoiced.redemption_count + following.redemption_count == 20
    assert invoiced.fee_cents + following.fee_cents == 20 * 15
    assert invoiced.status == pb.FEE_PERIOD_STATUS_INVOICED
    await assert_ledger_sound(ledger_engine)


async def test_only_a_write_admin_closes_a_period(
    rest: httpx.AsyncClient, twilio: FakeTwilioVerify, ledger: Ledger
) -> None:
    driver = await _login(rest, twilio, random_phone())
    refused = await _close(rest, driver, _merchant(), _this_month(), "FEE_PERIOD_STATUS_INVOICED")
    assert refused.status_code == 403
    with pytest.raises(grpc.aio.AioRpcError) as internal:
        await ledger.stub.GetMerchantFeePeriod(pb.GetMerchantFeePeriodRequest(merchant_id="m_1"))
    assert internal.value.code() == grpc.StatusCode.UNAUTHENTICATED
