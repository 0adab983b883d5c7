"""The grant's credit reaches the ledger exactly once across a relay that dies mid-delivery and a ledger that is
away for a while. An incentives stack of its own (database, index, granting, relay) runs in the test, so that the
relay is the test's to kill; the ledger is the mesh's, over real gRPC."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest
import sqlalchemy as sa
from nerava.incentives.v1 import incentives_pb2 as pb
from nerava.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.auth import ServiceTokens
from services.common.clients import open_channel
from services.common.config import Secret
from services.common.db import create_engine, open_asyncpg_pool
from services.common.outbox import OutboxRelay
from services.incentives import domain, messages, store
from services.incentives.granting import GRANT_CREDIT_TOPIC, Granting
from services.incentives.index import CampaignIndex
from services.incentives.peers import GrantCredits
from tests.incentives.helpers import driver_cash, ended_session
from tests.support.database import fresh_database
from tests.support.eventually import eventually
from tests.support.mesh import Mesh
from tests.support.rpc import TEST_SERVICE_SECRET, as_service
from tests.support.tcp_proxy import tcp_proxy
from tools.embedded import free_port

CHARGER = "charger-exactly-once"
REWARD = 100


@pytest.fixture
async def database(database_server_url: str) -> AsyncIterator[str]:
    async with fresh_database(database_server_url) as url:
        yield url


@pytest.fixture
async def engine(database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database, "incentives")
    yield engine
    await engine.dispose()


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_asyncpg_pool(database, "incentives")
    yield pool
    await pool.close()


def ledger_stub(address: str) -> ledger_pb2_grpc.LedgerServiceAsyncStub:
    channel = open_channel(address, ServiceTokens(Secret(TEST_SERVICE_SECRET), "incentives"))
    return ledger_pb2_grpc.LedgerServiceStub(channel)


async def funded_campaign(engine: AsyncEngine, ledger: ledger_pb2_grpc.LedgerServiceAsyncStub) -> uuid.UUID:
    """An active cash campaign paying 100¢ at CHARGER, with its 10,000¢ budget in the ledger."""
    campaign_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(store.campaigns).values(
                id=campaign_id,
                created_by_user_id=str(uuid.uuid4()),
                sponsor_name="Exactly Once",
                sponsor_email="",
                sponsor_logo_url="",
                sponsor_type="",
                name="Exactly once",
                description="",
                campaign_type="custom",
                status=pb.CAMPAIGN_STATUS_ACTIVE,
                priority=100,
                reward_kind=pb.REWARD_KIND_CASH,
                cost_per_session_cents=REWARD,
                gross_funding_cents=12_500,
                platform_fee_cents=2_500,
                budget_cents=10_000,
                spent_cents=0,
                sessions_granted=0,
                start_date=datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1),
                time_zone="America/Chicago",
                rules=store.rules_to_json(domain.TargetingRules(charger_ids=(CHARGER,))),
                funding_status=pb.FUNDING_STATUS_FUNDED,
                pause_reason="",
            )
        )
    cash = ledger_pb2.CURRENCY_CASH_CENTS
    await ledger.PostTransfer(
        ledger_pb2.PostTransferRequest(
            idempotency_key=f"funding:{campaign_id}",
            kind=ledger_pb2.TRANSFER_KIND_CAMPAIGN_FUNDING,
            currency=cash,
            amount=10_000,
            from_account=ledger_pb2.AccountRef(
                type=ledger_pb2.ACCOUNT_TYPE_EXTERNAL_FUNDING, owner_id="stripe", currency=cash
            ),
            to_account=ledger_pb2.AccountRef(
                type=ledger_pb2.ACCOUNT_TYPE_CAMPAIGN_BUDGET, owner_id=str(campaign_id), currency=cash
            ),
        ),
        metadata=as_service("ledger"),
    )
    return campaign_id


async def credits_of(ledger: ledger_pb2_grpc.LedgerServiceAsyncStub, driver_id: str) -> list[ledger_pb2.Transfer]:
    try:
        reply = await ledger.ListTransfers(
            ledger_pb2.ListTransfersRequest(account=driver_cash(driver_id)), metadata=as_service("incentives")
        )
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return []
        raise
    return list(reply.transfers)


async def outbox_row(engine: AsyncEngine, grant_id: str) -> sa.Row[Any, Any, Any]:
    t = store.outbox
    async with engine.connect() as conn:
        return (
            await conn.execute(
                sa.select(t.c.attempts, t.c.last_error, t.c.delivered_at).where(
                    t.c.topic == GRANT_CREDIT_TOPIC, t.c.key == grant_id
                )
            )
        ).one()


class DiesAfterTheLedgerAnswers:
    """The ledger stub of a process that is killed right after the ledger committed the transfer, before it
    could mark anything."""

    def __init__(self, stub: ledger_pb2_grpc.LedgerServiceAsyncStub) -> None:
        self._stub = stub

    async def PostTransfer(self, request: ledger_pb2.PostTransferRequest) -> ledger_pb2.PostTransferResponse:
        await self._stub.PostTransfer(request)
        raise asyncio.CancelledError


async def test_a_relay_killed_after_the_ledger_committed_credits_exactly_once(
    engine: AsyncEngine, pool: asyncpg.Pool, mesh: Mesh
) -> None:
    ledger = ledger_stub(mesh.address("ledger"))
    await funded_campaign(engine, ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"]))
    index = CampaignIndex(engine)
    await index.refresh(full=True)
    driver = str(uuid.uuid4())
    reply = messages.evaluation_message(
        await Granting(engine, pool, index, GrantCredits(ledger)).evaluate(
            messages.ended_session(ended_session(driver, charger_id=CHARGER))
        )
    )
    assert reply.outcome == pb.EVALUATION_OUTCOME_GRANTED

    doomed = Granting(engine, pool, index, GrantCredits(DiesAfterTheLedgerAnswers(ledger)))  # type: ignore[arg-type]
    crashed = OutboxRelay(engine, store.outbox, {GRANT_CREDIT_TOPIC: doomed.deliver_credit}, "incentives", lease_s=0.3)
    with pytest.raises(asyncio.CancelledError):
        await crashed.run_once()
    assert [t.amount for t in await credits_of(ledger, driver)] == [REWARD]  # the ledger committed …
    row = await outbox_row(engine, reply.grant.id)
    assert row.delivered_at is None  # … and the outbox never heard of it

    restarted = OutboxRelay(
        engine,
        store.outbox,
        {GRANT_CREDIT_TOPIC: Granting(engine, pool, index, GrantCredits(ledger)).deliver_credit},
        "incentives",
    )

    async def claims_once_the_dead_relays_lease_runs_out() -> None:
        assert await restarted.run_once() == 1

    await eventually(claims_once_the_dead_relays_lease_runs_out)
    assert [t.amount for t in await credits_of(ledger, driver)] == [REWARD]
    assert (await outbox_row(engine, reply.grant.id)).delivered_at is not None
    async with engine.connect() as conn:
        status = (await conn.execute(sa.select(store.grants.c.status))).scalar_one()
    assert status == pb.GRANT_STATUS_GRANTED


async def test_credits_wait_while_the_ledger_is_away_and_land_when_it_returns(
    engine: AsyncEngine, pool: asyncpg.Pool, mesh: Mesh
) -> None:
    await funded_campaign(engine, ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"]))
    index = CampaignIndex(engine)
    await index.refresh(full=True)
    port = free_port()
    away = ledger_stub(f"127.0.0.1:{port}")  # nothing listens there yet
    granting = Granting(engine, pool, index, GrantCredits(away))
    relay = OutboxRelay(
        engine, store.outbox, {GRANT_CREDIT_TOPIC: granting.deliver_credit}, "incentives", max_backoff_s=0.2
    )
    driver = str(uuid.uuid4())
    reply = messages.evaluation_message(
        await granting.evaluate(messages.ended_session(ended_session(driver, charger_id=CHARGER)))
    )
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:

        async def tried_three_times() -> None:  # the relay keeps trying (and failing) while the ledger is away
            assert (await outbox_row(engine, reply.grant.id)).attempts >= 3

        await eventually(tried_three_times, within=30)
        row = await outbox_row(engine, reply.grant.id)
        assert row.delivered_at is None and row.last_error
        ledger = ledger_stub(mesh.address("ledger"))
        assert await credits_of(ledger, driver) == []
        async with tcp_proxy(port, "127.0.0.1", mesh.ports["ledger"]):

            async def delivered() -> None:
                assert (await outbox_row(engine, reply.grant.id)).delivered_at is not None

            await eventually(delivered, within=30)
            assert [t.amount for t in await credits_of(ledger, driver)] == [REWARD]
    finally:
        stop.set()
        await running


async def test_a_credit_committed_before_a_rename_is_never_failed_and_its_budget_never_returned(
    engine: AsyncEngine, pool: asyncpg.Pool, mesh: Mesh
) -> None:
    """The credit's request carries the campaign's name; renamed (a paused or exhausted campaign is editable)
    after the ledger committed the credit and before the outbox heard of it, the redelivery is another request
    under the grant's key: IDEMPOTENCY_KEY_REUSED. The driver holds the credit, so the grant must not be FAILED
    with its reward handed back to the budget (spent twice)."""
    ledger = ledger_stub(mesh.address("ledger"))
    campaign_id = await funded_campaign(engine, ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"]))
    index = CampaignIndex(engine)
    await index.refresh(full=True)
    driver = str(uuid.uuid4())
    reply = messages.evaluation_message(
        await Granting(engine, pool, index, GrantCredits(ledger)).evaluate(
            messages.ended_session(ended_session(driver, charger_id=CHARGER))
        )
    )
    assert reply.outcome == pb.EVALUATION_OUTCOME_GRANTED
    doomed = Granting(engine, pool, index, GrantCredits(DiesAfterTheLedgerAnswers(ledger)))  # type: ignore[arg-type]
    crashed = OutboxRelay(engine, store.outbox, {GRANT_CREDIT_TOPIC: doomed.deliver_credit}, "incentives", lease_s=0.3)
    with pytest.raises(asyncio.CancelledError):
        await crashed.run_once()
    assert [t.amount for t in await credits_of(ledger, driver)] == [REWARD]
    async with engine.begin() as conn:  # the sponsor renames the campaign
        await conn.execute(sa.update(store.campaigns).where(store.campaigns.c.id == campaign_id).values(name="Renamed"))

    granting = Granting(engine, pool, index, GrantCredits(ledger))
    restarted = OutboxRelay(
        engine,
        store.outbox,
        {GRANT_CREDIT_TOPIC: granting.deliver_credit},
        "incentives",
        max_attempts=1,
        on_dead_letter={GRANT_CREDIT_TOPIC: granting.fail_grant},
    )

    async def claims_once_the_dead_relays_lease_runs_out() -> None:
        assert await restarted.run_once() == 1

    await eventually(claims_once_the_dead_relays_lease_runs_out)
    assert [t.amount for t in await credits_of(ledger, driver)] == [REWARD]
    async with engine.connect() as conn:
        status = (await conn.execute(sa.select(store.grants.c.status))).scalar_one()
        spent = (
            await conn.execute(sa.select(store.campaigns.c.spent_cents).where(store.campaigns.c.id == campaign_id))
        ).scalar_one()
    assert status != pb.GRANT_STATUS_FAILED
    assert spent == REWARD
