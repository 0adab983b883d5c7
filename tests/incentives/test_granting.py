"""EvaluateSession end to end over gRPC: grants, budget, caps, idempotency, the ledger credit."""

from __future__ import annotations

import asyncio

import pytest
from nerava.incentives.v1 import incentives_pb2 as pb

from tests.incentives.conftest import NewPerson
from tests.incentives.helpers import Incentives, Person, budget_account, driver_cash, driver_nova


async def wait_for_balance(incentives: Incentives, account, expected: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(100):
        if await incentives.ledger_balance(account) == expected:
            return
        await asyncio.sleep(0.05)
    assert await incentives.ledger_balance(account) == expected


async def test_a_matching_session_is_granted_once_and_credited_in_the_ledger(
    incentives: Incentives, sponsor: Person, driver: Person
) -> None:
    campaign = await incentives.active(sponsor)
    assert campaign.status == pb.CAMPAIGN_STATUS_ACTIVE
    session = incentives.session(driver.user_id)
    first = await incentives.evaluate(session)
    assert first.outcome == pb.EVALUATION_OUTCOME_GRANTED, first
    assert first.grant.amount_cents == 100
    assert first.grant.campaign_id == campaign.id
    assert first.reputation_points_awarded == 100
    again = await incentives.evaluate(session)
    assert again.replayed and again.grant.id == first.grant.id
    await wait_for_balance(incentives, driver_cash(driver.user_id), 100)
    await wait_for_balance(incentives, budget_account(campaign), campaign.budget_cents - 100)
    after = await incentives.campaign(campaign.id, sponsor)
    assert (after.spent_cents, after.sessions_granted) == (100, 1)


async def test_nova_campaigns_pay_points(incentives: Incentives, sponsor: Person, driver: Person) -> None:
    await incentives.active(sponsor, reward_kind=pb.REWARD_KIND_NOVA, cost_per_session_cents=250)
    reply = await incentives.evaluate(incentives.session(driver.user_id))
    assert reply.grant.reward_kind == pb.REWARD_KIND_NOVA
    await wait_for_balance(incentives, driver_nova(driver.user_id), 250)
    assert await incentives.ledger_balance(driver_cash(driver.user_id)) == 0


@pytest.mark.parametrize("concurrency", [1000])
async def test_concurrent_evaluations_never_overspend(
    incentives: Incentives, sponsor: Person, person: NewPerson, concurrency: int
) -> None:
    # 100 rewards of 100¢: gross 12 500 → fee 2 500 → net 10 000.
    campaign = await incentives.active(sponsor, budget_cents=12_500, caps=pb.CampaignCaps(per_day=1))
    assert campaign.budget_cents == 10_000
    drivers = [await person() for _ in range(20)]
    sessions = [incentives.session(drivers[n % 20].user_id) for n in range(concurrency)]
    replies = await asyncio.gather(*(incentives.evaluate(s) for s in sessions))
    granted = [r for r in replies if r.outcome == pb.EVALUATION_OUTCOME_GRANTED]
    after = await incentives.campaign(campaign.id, sponsor)
    # per_day=1 and 20 drivers: 20 grants at most, each driver once.
    assert len(granted) == 20
    assert len({r.grant.driver_user_id for r in granted}) == 20
    assert after.spent_cents == 20 * 100
