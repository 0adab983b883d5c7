"""EvaluateSession end to end over gRPC: grants, budget, caps, idempotency, the ledger credit."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections import Counter

import grpc
import pytest
import sqlalchemy as sa
from nerava.incentives.v1 import incentives_pb2 as pb
from nerava.ledger.v1 import ledger_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

from services.incentives import store
from services.incentives.workers import end_due_campaigns
from tests.incentives.helpers import Incentives, budget_account, driver_cash, driver_nova, stamp
from tests.support.eventually import eventually
from tests.support.people import Person
from tests.support.rpc import as_service, error_reason


async def spend_nova(incentives: Incentives, driver_id: str, points: int) -> None:
    """The driver redeems Nova at a merchant (what the merchants service posts)."""
    await incentives.ledger.PostTransfer(
        ledger_pb2.PostTransferRequest(
            idempotency_key=f"redemption:{uuid.uuid4()}",
            kind=ledger_pb2.TRANSFER_KIND_REDEMPTION,
            currency=ledger_pb2.CURRENCY_NOVA_POINTS,
            amount=points,
            from_account=driver_nova(driver_id),
            to_account=ledger_pb2.AccountRef(
                type=ledger_pb2.ACCOUNT_TYPE_MERCHANT_NOVA,
                owner_id="merchant-1",
                currency=ledger_pb2.CURRENCY_NOVA_POINTS,
            ),
        ),
        metadata=as_service("merchants"),
    )


async def wait_for_balance(incentives: Incentives, account, expected: int) -> None:  # type: ignore[no-untyped-def]
    async def balance_is_expected() -> None:
        assert await incentives.ledger_balance(account) == expected

    await eventually(balance_is_expected)


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


async def test_1000_concurrent_evaluations_spend_exactly_the_budget_for_100_rewards(
    incentives: Incentives, sponsor: Person, incentives_engine: AsyncEngine
) -> None:
    # 100 rewards of 100¢: gross 12 500 → 20 % fee 2 500 → net budget 10 000.
    campaign = await incentives.active(sponsor, budget_cents=12_500, caps=pb.CampaignCaps(per_day=3, per_campaign=3))
    assert campaign.budget_cents == 10_000
    drivers = [str(uuid.uuid4()) for _ in range(50)]  # 50 drivers, 3 grants each allowed = 150 > 100 rewards
    sessions = [incentives.session(drivers[n % 50]) for n in range(1000)]
    replies = await asyncio.gather(*(incentives.evaluate(s) for s in sessions))
    granted = [r for r in replies if r.outcome == pb.EVALUATION_OUTCOME_GRANTED]
    assert len(granted) == 100
    after = await incentives.campaign(campaign.id, sponsor)
    assert after.spent_cents == after.budget_cents == 10_000
    assert after.sessions_granted == 100
    assert after.status == pb.CAMPAIGN_STATUS_EXHAUSTED
    per_driver = Counter(r.grant.driver_user_id for r in granted)
    assert max(per_driver.values()) <= 3
    refused = {c.failure for r in replies if r.outcome == pb.EVALUATION_OUTCOME_NO_MATCH for c in r.candidates}
    assert refused <= {pb.RULE_FAILURE_BUDGET_EXHAUSTED, pb.RULE_FAILURE_CAP_PER_DRIVER_PER_DAY}
    async with incentives_engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(sa.func.count(), sa.func.sum(store.grants.c.amount_cents)).where(
                    store.grants.c.campaign_id == uuid.UUID(campaign.id)
                )
            )
        ).one()
    assert tuple(rows) == (100, 10_000)
    # Every credit reaches the ledger once: the budget account is emptied, never overdrawn.
    await wait_for_balance(incentives, budget_account(campaign), 0)


async def test_the_same_session_evaluated_20_times_at_once_is_granted_once(
    incentives: Incentives, sponsor: Person, driver: Person
) -> None:
    campaign = await incentives.active(sponsor)
    session = incentives.session(driver.user_id)
    replies = await asyncio.gather(*(incentives.evaluate(session) for _ in range(20)))
    assert {r.grant.id for r in replies} == {replies[0].grant.id}
    assert sum(not r.replayed for r in replies) == 1
    after = await incentives.campaign(campaign.id, sponsor)
    assert after.sessions_granted == 1
    await wait_for_balance(incentives, driver_cash(driver.user_id), 100)


async def test_a_repeat_with_a_different_snapshot_is_refused(
    incentives: Incentives, sponsor: Person, driver: Person
) -> None:
    await incentives.active(sponsor)
    session = incentives.session(driver.user_id)
    await incentives.evaluate(session)
    changed = pb.EndedSession()
    changed.CopyFrom(session)
    changed.kwh_delivered = 99.0
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await incentives.evaluate(changed)
    assert refused.value.code() == grpc.StatusCode.ABORTED
    assert error_reason(refused.value) == "IDEMPOTENCY_KEY_REUSED"


async def test_lowest_priority_number_pays_and_grants_never_stack(
    incentives: Incentives, sponsor: Person, driver: Person
) -> None:
    later = await incentives.active(sponsor, name="Priority 10", priority=10)
    first = await incentives.active(sponsor, name="Priority 5", priority=5, caps=pb.CampaignCaps(per_campaign=1))
    one = await incentives.evaluate(incentives.session(driver.user_id))
    assert one.grant.campaign_id == first.id
    assert [c.campaign_id for c in one.candidates] == [first.id]
    # The driver reached the first campaign's cap: the next one in priority order pays, and only it.
    two = await incentives.evaluate(incentives.session(driver.user_id))
    assert two.grant.campaign_id == later.id
    assert [(c.campaign_id, c.failure) for c in two.candidates] == [
        (first.id, pb.RULE_FAILURE_CAP_PER_DRIVER_PER_CAMPAIGN),
        (later.id, pb.RULE_FAILURE_UNSPECIFIED),
    ]


async def test_no_match_explains_each_candidate_and_earns_5_points(
    incentives: Incentives, sponsor: Person, driver: Person
) -> None:
    await incentives.active(sponsor, rules=pb.CampaignRules(charger_ids=[incentives.charger], min_duration_minutes=45))
    reply = await incentives.evaluate(incentives.session(driver.user_id, minutes=30))
    assert reply.outcome == pb.EVALUATION_OUTCOME_NO_MATCH
    [candidate] = reply.candidates
    assert candidate.failure == pb.RULE_FAILURE_MIN_DURATION
    assert candidate.detail == "duration 30 min < minimum 45 min"
    assert reply.reputation_points_awarded == 5
    short = await incentives.evaluate(incentives.session(driver.user_id, minutes=0))
    assert short.outcome == pb.EVALUATION_OUTCOME_SESSION_TOO_SHORT


async def test_a_reopened_session_is_re_evaluated_after_its_earlier_grant_is_reversed(
    incentives: Incentives, sponsor: Person, driver: Person
) -> None:
    campaign = await incentives.active(sponsor, cost_per_session_cents=150)
    session = incentives.session(driver.user_id)
    first = await incentives.evaluate(session)
    await wait_for_balance(incentives, driver_cash(driver.user_id), 150)
    reopened = pb.EndedSession()
    reopened.CopyFrom(session)
    reopened.end_sequence = 2
    reopened.duration_minutes += 20
    again = await incentives.evaluate(reopened)
    assert again.outcome == pb.EVALUATION_OUTCOME_GRANTED
    assert again.grant.id != first.grant.id
    assert (await incentives.evaluate(reopened)).replayed
    # The earlier grant is clawed back (ledger reversed, budget refunded): the driver holds one reward.
    await wait_for_balance(incentives, driver_cash(driver.user_id), 150)
    after = await incentives.campaign(campaign.id, sponsor)
    assert (after.spent_cents, after.sessions_granted) == (150, 1)
    batch = await incentives.stub.BatchGetSessionGrants(
        pb.BatchGetSessionGrantsRequest(session_ids=[session.session_id]), metadata=as_service("sessions")
    )
    assert [g.id for g in batch.grants] == [again.grant.id]
    assert (await incentives.evaluate(session)).replayed  # the first end's answer, unchanged


async def test_a_reopened_session_whose_reward_was_spent_keeps_its_grant_and_gets_no_second(
    incentives: Incentives, sponsor: Person, driver: Person
) -> None:
    await incentives.active(sponsor, reward_kind=pb.REWARD_KIND_NOVA)
    session = incentives.session(driver.user_id)
    first = await incentives.evaluate(session)
    await wait_for_balance(incentives, driver_nova(driver.user_id), 100)
    await spend_nova(incentives, driver.user_id, 100)
    reopened = pb.EndedSession()
    reopened.CopyFrom(session)
    reopened.end_sequence = 2
    again = await incentives.evaluate(reopened)
    assert again.outcome == pb.EVALUATION_OUTCOME_PREVIOUS_GRANT_KEPT
    assert again.grant.id == first.grant.id
    assert (await incentives.evaluate(session)).replayed
    # An end that arrives after a later end of the same session was evaluated is ignored.
    later = incentives.session(driver.user_id, end_sequence=3)
    await incentives.evaluate(later)
    earlier = pb.EndedSession()
    earlier.CopyFrom(later)
    earlier.end_sequence = 2
    assert (await incentives.evaluate(earlier)).outcome == pb.EVALUATION_OUTCOME_SUPERSEDED


async def test_a_paused_campaign_pays_nothing(incentives: Incentives, sponsor: Person, driver: Person) -> None:
    campaign = await incentives.active(sponsor)
    await incentives.stub.PauseCampaign(
        pb.PauseCampaignRequest(campaign_id=campaign.id, reason="audit"), metadata=sponsor.auth
    )
    paused = await incentives.evaluate(incentives.session(driver.user_id))
    assert paused.outcome == pb.EVALUATION_OUTCOME_NO_MATCH
    assert list(paused.candidates) == []


async def test_clawback_reverses_the_credit_refunds_the_budget_and_frees_the_caps(
    incentives: Incentives, sponsor: Person, admin: Person, driver: Person
) -> None:
    # Budget for exactly one reward and one grant per driver.
    campaign = await incentives.active(sponsor, budget_cents=125, caps=pb.CampaignCaps(per_campaign=1))
    granted = await incentives.evaluate(incentives.session(driver.user_id))
    assert (await incentives.campaign(campaign.id, sponsor)).status == pb.CAMPAIGN_STATUS_EXHAUSTED
    request = pb.ClawbackGrantRequest(
        grant_id=granted.grant.id, reason="duplicate session", request_id=str(uuid.uuid4())
    )
    reply = await incentives.stub.ClawbackGrant(request, metadata=admin.auth)
    assert reply.grant.status == pb.GRANT_STATUS_CLAWED_BACK
    assert reply.grant.clawback_reason == "duplicate session"
    assert reply.campaign_remaining_cents == 100
    assert await incentives.ledger_balance(driver_cash(driver.user_id)) == 0
    assert await incentives.ledger_balance(budget_account(campaign)) == 100
    after = await incentives.campaign(campaign.id, sponsor)
    assert (after.status, after.spent_cents, after.sessions_granted) == (pb.CAMPAIGN_STATUS_ACTIVE, 0, 0)
    # Idempotent, and the clawed-back grant no longer counts toward the driver's cap.
    assert (
        await incentives.stub.ClawbackGrant(request, metadata=admin.auth)
    ).grant.status == pb.GRANT_STATUS_CLAWED_BACK
    regained = await incentives.evaluate(incentives.session(driver.user_id))
    assert regained.outcome == pb.EVALUATION_OUTCOME_GRANTED
    await wait_for_balance(incentives, driver_cash(driver.user_id), 100)


async def test_a_reward_already_spent_cannot_be_clawed_back(
    incentives: Incentives, sponsor: Person, admin: Person, driver: Person
) -> None:
    await incentives.active(sponsor, reward_kind=pb.REWARD_KIND_NOVA)
    granted = await incentives.evaluate(incentives.session(driver.user_id))
    await wait_for_balance(incentives, driver_nova(driver.user_id), 100)
    await spend_nova(incentives, driver.user_id, 60)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await incentives.stub.ClawbackGrant(
            pb.ClawbackGrantRequest(grant_id=granted.grant.id, reason="fraud check", request_id=str(uuid.uuid4())),
            metadata=admin.auth,
        )
    assert error_reason(refused.value) == "GRANT_ALREADY_SPENT"
    batch = await incentives.stub.BatchGetSessionGrants(
        pb.BatchGetSessionGrantsRequest(session_ids=[granted.grant.session_event_id]), metadata=as_service("sessions")
    )
    assert [g.status for g in batch.grants] == [pb.GRANT_STATUS_GRANTED]


async def test_reputation_counts_grants_and_unrewarded_sessions(
    incentives: Incentives, sponsor: Person, driver: Person
) -> None:
    await incentives.active(sponsor, cost_per_session_cents=120)
    await incentives.evaluate(incentives.session(driver.user_id))
    await incentives.evaluate(incentives.session(driver.user_id, charger_id="elsewhere-" + incentives.charger))

    async def credited() -> pb.GetReputationResponse:  # a grant counts once the ledger credited it
        reputation = await incentives.stub.GetReputation(pb.GetReputationRequest(), metadata=driver.auth)
        assert reputation.points == 125, reputation
        return reputation

    reputation = await eventually(credited)
    assert (reputation.points, reputation.tier, reputation.next_tier, reputation.points_to_next) == (
        125,
        "Silver",
        "Gold",
        175,
    )
    assert reputation.streak_days == 1


async def test_the_dry_run_replays_past_sessions_against_a_draft(incentives: Incentives, sponsor: Person) -> None:
    drivers = [str(uuid.uuid4()) for _ in range(3)]
    for n in range(6):
        await incentives.evaluate(incentives.session(drivers[n % 3], minutes=10 + 10 * n))
    draft = await incentives.create(
        sponsor,
        rules=pb.CampaignRules(charger_ids=[incentives.charger], min_duration_minutes=30),
        caps=pb.CampaignCaps(per_campaign=1),
        budget_cents=250,  # net 200: two rewards
    )
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=3)
    reply = await incentives.stub.SimulateCampaign(
        pb.SimulateCampaignRequest(campaign_id=draft.id, since=stamp(since)), metadata=sponsor.auth
    )
    # Our sessions last 10..60 min (of other tests' sessions in the window, none is at this charger).
    assert reply.sessions_matched == 4
    assert (reply.grants, reply.spend_cents, reply.unique_drivers) == (2, 200, 2)
    assert reply.HasField("budget_exhausted_at")
    failures = {f.failure: f.sessions for f in reply.failures}
    # Duration is judged before the charger: other tests' sessions in the window under 30 minutes fail on it too.
    assert failures[pb.RULE_FAILURE_MIN_DURATION] >= 2
    assert failures[pb.RULE_FAILURE_MIN_DURATION] + failures[pb.RULE_FAILURE_CHARGER] == reply.sessions_evaluated - 4


async def test_campaigns_past_their_end_date_end_and_stop_paying(
    incentives: Incentives, sponsor: Person, driver: Person, incentives_engine: AsyncEngine
) -> None:
    campaign = await incentives.active(sponsor)
    c = store.campaigns
    async with incentives_engine.begin() as conn:
        await conn.execute(
            sa.update(c)
            .where(c.c.id == uuid.UUID(campaign.id))
            .values(end_date=sa.func.now() - datetime.timedelta(seconds=1))
        )
    late = await incentives.evaluate(incentives.session(driver.user_id))
    # The grant's UPDATE checks the dates itself, whatever the index still holds.
    assert late.outcome == pb.EVALUATION_OUTCOME_NO_MATCH
    assert [c.detail for c in late.candidates] in ([], ["campaign is outside its dates and cannot pay now"])
    assert await end_due_campaigns(incentives_engine) >= 1
    assert (await incentives.campaign(campaign.id, sponsor)).status == pb.CAMPAIGN_STATUS_ENDED


async def test_an_allowlist_of_emails_admits_the_driver_with_that_email(
    incentives: Incentives, sponsor: Person, accounts_engine: AsyncEngine, driver: Person
) -> None:
    email = f"driver-{uuid.uuid4().hex[:8]}@example.com"
    async with accounts_engine.begin() as conn:
        await conn.execute(
            sa.text("UPDATE users SET email = :email WHERE public_id = :id"), {"email": email, "id": driver.user_id}
        )
    await incentives.active(
        sponsor, rules=pb.CampaignRules(charger_ids=[incentives.charger], driver_allowlist=[email.upper()])
    )
    listed = await incentives.evaluate(incentives.session(driver.user_id))
    assert listed.outcome == pb.EVALUATION_OUTCOME_GRANTED
    stranger = await incentives.evaluate(incentives.session(str(uuid.uuid4())))
    assert [c.failure for c in stranger.candidates] == [pb.RULE_FAILURE_DRIVER_ALLOWLIST]


async def test_when_the_first_matching_campaigns_cannot_pay_the_next_ones_are_tried_in_order(
    incentives: Incentives, sponsor: Person, driver: Person
) -> None:
    """More matching campaigns than one batch to the database: the later batches follow in the same transaction."""
    capped = [
        await incentives.active(sponsor, name=f"Once {n}", priority=n, caps=pb.CampaignCaps(per_campaign=1))
        for n in range(1, 6)
    ]
    fallback = await incentives.active(sponsor, name="Always", priority=50)
    for campaign in capped:  # each session is paid by the next campaign the driver has not used up
        reply = await incentives.evaluate(incentives.session(driver.user_id))
        assert reply.grant.campaign_id == campaign.id
    last = await incentives.evaluate(incentives.session(driver.user_id))
    assert last.grant.campaign_id == fallback.id
    assert [(c.campaign_id, c.failure) for c in last.candidates] == [
        *((c.id, pb.RULE_FAILURE_CAP_PER_DRIVER_PER_CAMPAIGN) for c in capped),
        (fallback.id, pb.RULE_FAILURE_UNSPECIFIED),
    ]
