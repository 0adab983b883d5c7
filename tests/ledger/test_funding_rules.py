"""What a paid campaign checkout books (services/ledger/domain.py): pure rules, no I/O."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nerava.ledger.v1 import ledger_pb2 as pb

from services.ledger import domain

CAMPAIGN = str(uuid.uuid4())


def _session(**changes: Any) -> dict[str, Any]:
    session: dict[str, Any] = {
        "id": "cs_test_a1B2c3",
        "object": "checkout.session",
        "amount_total": 150_000,
        "currency": "usd",
        "payment_status": "paid",
        "status": "complete",
        "metadata": {
            "type": "campaign_funding",
            "campaign_id": CAMPAIGN,
            "platform_fee_bps": "2000",
            "reward_currency": "CURRENCY_CASH_CENTS",
        },
    }
    for name, value in changes.items():
        target = session["metadata"] if name in session["metadata"] else session
        if value is None:
            del target[name]
        else:
            target[name] = value
    return session


@pytest.mark.parametrize(
    ("gross", "bps", "fee", "net"),
    [
        (150_000, 2000, 30_000, 120_000),
        (9_999, 2000, 1_999, 8_000),  # 1 999.8 rounds down
        (1, 2000, 0, 1),
        (5_000, 0, 0, 5_000),
        (5_000, 10_000, 5_000, 0),
        (0, 2000, 0, 0),
    ],
)
def test_the_fee_is_rounded_down_and_the_budget_gets_the_rest(gross: int, bps: int, fee: int, net: int) -> None:
    assert domain.funding_split(gross, bps) == (fee, net)


@given(st.integers(min_value=0, max_value=2**31 - 1), st.integers(min_value=0, max_value=10_000))
def test_fee_and_budget_add_up_to_the_payment(gross: int, bps: int) -> None:
    fee, net = domain.funding_split(gross, bps)
    assert fee + net == gross
    assert 0 <= fee * 10_000 <= gross * bps < (fee + 1) * 10_000


@pytest.mark.parametrize(("gross", "bps"), [(-1, 2000), (100, -1), (100, 10_001)])
def test_a_split_outside_its_domain_is_an_error(gross: int, bps: int) -> None:
    with pytest.raises(ValueError):
        domain.funding_split(gross, bps)


def test_a_paid_cash_checkout() -> None:
    funding = domain.campaign_funding(_session())

    assert funding == domain.CampaignFunding(
        checkout_session_id="cs_test_a1B2c3",
        campaign_id=CAMPAIGN,
        currency=pb.CURRENCY_CASH_CENTS,
        gross_cents=150_000,
        fee_cents=30_000,
        net_cents=120_000,
    )
    assert (funding.funding_key, funding.fee_key) == ("funding:cs_test_a1B2c3", "platform-fee:cs_test_a1B2c3")


def test_a_nova_campaign_is_funded_in_points() -> None:
    funding = domain.campaign_funding(_session(reward_currency="CURRENCY_NOVA_POINTS", amount_total=9_999))

    assert funding is not None
    assert (funding.currency, funding.fee_cents, funding.net_cents) == (pb.CURRENCY_NOVA_POINTS, 1_999, 8_000)


@pytest.mark.parametrize(
    "changes",
    [
        {"type": None},
        {"type": "merchant_order"},
        {"metadata": {}},
        {"metadata": None},
        {"payment_status": "unpaid"},
        {"payment_status": "no_payment_required"},
        {"payment_status": None},
    ],
)
def test_what_is_not_a_paid_campaign_checkout_books_nothing(changes: dict[str, Any]) -> None:
    assert domain.campaign_funding(_session(**changes)) is None


@pytest.mark.parametrize(
    "changes",
    [
        {"platform_fee_bps": "10001"},
        {"platform_fee_bps": "10000"},  # nothing left for the budget
        {"platform_fee_bps": "-1"},
        {"platform_fee_bps": "20.5"},
        {"platform_fee_bps": "²"},
        {"platform_fee_bps": " 2000"},
        {"platform_fee_bps": "2000\n"},
        {"platform_fee_bps": None},
        {"reward_currency": "CURRENCY_UNSPECIFIED"},
        {"reward_currency": "cash"},
        {"reward_currency": None},
        {"campaign_id": "campaign-42"},
        {"campaign_id": None},
        {"currency": "eur"},
        {"currency": None},
        {"amount_total": 0},
        {"amount_total": -100},
        {"amount_total": "150000"},
        {"amount_total": True},
        {"amount_total": 2**31},
        {"amount_total": None},
        {"id": None},
        {"id": "cs_test_with space"},
        {"id": "x" * 201},
    ],
)
def test_a_paid_campaign_checkout_that_cannot_be_booked_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(domain.FundingNotBookable):
        domain.campaign_funding(_session(**changes))


def test_the_largest_recordable_payment_is_bookable() -> None:
    funding = domain.campaign_funding(_session(amount_total=2**31 - 1))

    assert funding is not None and funding.fee_cents + funding.net_cents == 2**31 - 1
