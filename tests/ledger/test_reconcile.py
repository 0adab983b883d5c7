"""The cross-service reconciliation holds over a real flow (a Stripe-funded campaign, grants, a clawback, a
cancellation refunded through Stripe) and fails — `make reconcile` exits 1 naming the ids — on each kind of drift
injected by hand into the test database; it passes again once the drift is undone."""

from __future__ import annotations

import asyncio
import datetime
import os
import sys
import uuid

import sqlalchemy as sa
from nerava.incentives.v1 import incentives_pb2 as pb
from nerava.incentives.v1 import incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from fakes.stripe import FakeStripe
from services.common.db import create_engine
from services.incentives import store as incentives_store
from services.ledger import store as ledger_store
from services.ledger.adapters.stripe_payouts import StripePayouts
from services.reconcile.worker import DRIFT, RUNS, reconcile_forever
from tests.incentives.helpers import Incentives
from tests.incentives.test_money import eventually, funded_by_stripe
from tests.support.mesh import Mesh
from tests.support.people import NewPerson, Person
from tests.support.reconcile import reconciled
from tests.support.rpc import as_service


async def _make_reconcile(database_url: str, stripe_fake: FakeStripe, since: datetime.datetime) -> tuple[int, str]:
    """`make reconcile ARGS=--since …` as a process: (exit code, output)."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "STRIPE_API_KEY": stripe_fake.api_key,
        "STRIPE_API_BASE": stripe_fake.base_url,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.reconcile",
        "--since",
        since.isoformat(),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_reconcile_holds_over_a_real_flow_and_names_each_injected_drift(
    mesh: Mesh,
    person: NewPerson,
    admin: Person,
    stripe_fake: FakeStripe,
    database_url: str,
    ledger_engine: AsyncEngine,
) -> None:
    since = datetime.datetime.now(datetime.UTC)
    incentives = Incentives(
        incentives_pb2_grpc.IncentivesServiceStub(mesh.channels["incentives"]),
        ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"]),
    )
    sponsor = await person("sponsor")
    # The world: one Stripe-funded campaign that granted twice, clawed one back, and another canceled with its
    # remainder refunded through Stripe.
    campaign, _ = await funded_by_stripe(incentives, sponsor, stripe_fake, mesh, budget_cents=10_000)
    grants = [(await incentives.evaluate(incentives.session((await person()).user_id))).grant for _ in range(2)]
    await incentives.stub.ClawbackGrant(
        pb.ClawbackGrantRequest(grant_id=grants[0].id, reason="test clawback", request_id=str(uuid.uuid4())),
        metadata=admin.auth,
    )
    other_sponsor = await person("sponsor")
    other_incentives = Incentives(incentives.stub, incentives.ledger)
    canceled, canceled_intent = await funded_by_stripe(other_incentives, other_sponsor, stripe_fake, mesh)
    await incentives.stub.CancelCampaign(pb.CancelCampaignRequest(campaign_id=canceled.id), metadata=other_sponsor.auth)

    async def refunded() -> bool:
        return stripe_fake.refunded_cents(canceled_intent) == 8_000

    await eventually(refunded)
    clean = await reconciled(ledger_engine, stripe_fake, since)
    assert clean.holds, clean.lines()
    assert (await _make_reconcile(database_url, stripe_fake, since))[0] == 0

    # Drift, by hand, one of each kind.
    c, g = incentives_store.campaigns, incentives_store.grants
    payments, payouts = ledger_store.campaign_payments, ledger_store.payouts
    budget_campaign = str(uuid.uuid4())
    payout_id = uuid.uuid4()
    redemption_id = str(uuid.uuid4())
    driver = (await person()).user_id
    incentives_db = create_engine(database_url, "incentives", pool_size=1, max_overflow=0)
    async with incentives_db.begin() as conn:
        # The incentives side believes in more budget than the ledger holds (budget and spend both drift).
        await conn.execute(
            sa.update(c).where(c.c.id == uuid.UUID(canceled.id)).values(budget_cents=c.c.budget_cents + 500)
        )
        # A grant that says more than its transfer moved.
        await conn.execute(
            sa.update(g).where(g.c.id == uuid.UUID(grants[1].id)).values(amount_cents=g.c.amount_cents + 1)
        )
    async with ledger_engine.begin() as conn:
        # A booked payment Stripe does not know at that amount.
        await conn.execute(
            sa.update(payments)
            .where(payments.c.campaign_id == campaign.id)
            .values(gross_cents=payments.c.gross_cents + 1)
        )
        # A payout the ledger calls paid that Stripe never transferred.
        await conn.execute(
            sa.insert(payouts).values(
                id=payout_id,
                driver_id=driver,
                request_id=uuid.uuid4(),
                amount_cents=2_500,
                status=ledger_pb2.PAYOUT_STATUS_PAID,
                stripe_account_id="acct_nobody",
                reservation_transfer_id=uuid.uuid4(),
                stripe_transfer_id="tr_never_made",
            )
        )
    # Ledger transfers with no owner on the other side: a redemption merchants never recorded, and funding for a
    # campaign incentives does not have.
    nova, cash = ledger_pb2.CURRENCY_NOVA_POINTS, ledger_pb2.CURRENCY_CASH_CENTS
    A = ledger_pb2.AccountType
    await _post(
        incentives,
        "ledger",
        f"nova:{redemption_id}",
        ledger_pb2.TRANSFER_KIND_ADMIN_GRANT,
        nova,
        300,
        (A.ACCOUNT_TYPE_EXTERNAL_FUNDING, "world"),
        (A.ACCOUNT_TYPE_DRIVER_NOVA, driver),
    )
    await _post(
        incentives,
        "merchants",
        f"redemption:{redemption_id}",
        ledger_pb2.TRANSFER_KIND_REDEMPTION,
        nova,
        300,
        (A.ACCOUNT_TYPE_DRIVER_NOVA, driver),
        (A.ACCOUNT_TYPE_MERCHANT_NOVA, "m-ghost"),
        ledger_pb2.TransferMetadata(redemption_id=redemption_id),
    )
    await _post(
        incentives,
        "ledger",
        f"funding:cs_test_{uuid.uuid4().hex}",
        ledger_pb2.TRANSFER_KIND_CAMPAIGN_FUNDING,
        cash,
        1_000,
        (A.ACCOUNT_TYPE_EXTERNAL_FUNDING, "stripe"),
        (A.ACCOUNT_TYPE_CAMPAIGN_BUDGET, budget_campaign),
    )

    drifted = await reconciled(ledger_engine, stripe_fake, since, within=0)
    expected = {
        "campaign_budget": {canceled.id, budget_campaign},
        "campaign_spend": {canceled.id, campaign.id},
        "grant_transfer": {grants[1].id},
        "redemption_transfer": {redemption_id},
        "checkout_payment": {
            str(row.checkout_session_id)
            for row in (await _rows(ledger_engine, sa.select(payments).where(payments.c.campaign_id == campaign.id)))
        },
        "payout_transfer": {str(payout_id)},
    }
    for invariant, ids in expected.items():
        assert ids <= set(drifted.drift[invariant]), (invariant, drifted.lines())
    code, output = await _make_reconcile(database_url, stripe_fake, since)
    assert code == 1
    assert str(payout_id) in output and grants[1].id in output

    # Undo what can be undone; what the ledger holds for good (immutable transfers) stays drift, as it should.
    async with incentives_db.begin() as conn:
        await conn.execute(
            sa.update(c).where(c.c.id == uuid.UUID(canceled.id)).values(budget_cents=c.c.budget_cents - 500)
        )
        await conn.execute(
            sa.update(g).where(g.c.id == uuid.UUID(grants[1].id)).values(amount_cents=g.c.amount_cents - 1)
        )
    await incentives_db.dispose()
    async with ledger_engine.begin() as conn:
        await conn.execute(
            sa.update(payments)
            .where(payments.c.campaign_id == campaign.id)
            .values(gross_cents=payments.c.gross_cents - 1)
        )
        await conn.execute(sa.delete(payouts).where(payouts.c.id == payout_id))
    after = await reconciled(ledger_engine, stripe_fake, since, within=0)
    assert {k: set(v) for k, v in after.drift.items() if v} == {
        "campaign_budget": {budget_campaign},
        "redemption_transfer": {redemption_id},
    }

    # The worker's gauges say the same (one run over the last hour, which holds at least this drift).
    stop = asyncio.Event()
    runs_before = _runs()
    async with StripePayouts(api_key=stripe_fake.api_key, base_url=stripe_fake.base_url) as stripe:
        run = asyncio.create_task(reconcile_forever(ledger_engine, stripe, stop, 60.0, datetime.timedelta(hours=1)))

        async def ran() -> bool:
            return _runs() > runs_before

        await eventually(ran)
        stop.set()
        await run
    assert DRIFT.labels("redemption_transfer")._value.get() >= 1
    assert DRIFT.labels("campaign_budget")._value.get() >= 1


def _runs() -> float:
    """Reconciliation runs so far in this process (the mesh's ledger runs its own worker too)."""
    return float(sum(RUNS.labels(result)._value.get() for result in ("ok", "drift", "error")))


async def _post(
    incentives: Incentives,
    service: str,
    key: str,
    kind: int,
    currency: int,
    amount: int,
    source: tuple[int, str],
    target: tuple[int, str],
    metadata: ledger_pb2.TransferMetadata | None = None,
) -> None:
    """A transfer posted straight to the ledger as `service`, behind the other services' backs."""
    await incentives.ledger.PostTransfer(
        ledger_pb2.PostTransferRequest(
            idempotency_key=key,
            kind=kind,  # type: ignore[arg-type]
            currency=currency,  # type: ignore[arg-type]
            amount=amount,
            from_account=ledger_pb2.AccountRef(type=source[0], owner_id=source[1], currency=currency),  # type: ignore[arg-type]
            to_account=ledger_pb2.AccountRef(type=target[0], owner_id=target[1], currency=currency),  # type: ignore[arg-type]
            metadata=metadata,
        ),
        metadata=as_service(service),
    )


async def _rows(engine: AsyncEngine, query: sa.Select) -> list[sa.Row]:  # type: ignore[type-arg]
    async with engine.connect() as conn:
        return list((await conn.execute(query)).all())
