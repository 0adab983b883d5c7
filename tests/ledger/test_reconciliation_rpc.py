"""RunReconciliation (`GET /v1/admin/reconciliation`, `nerava reconcile`) asks Stripe about every booked checkout
payment and payout: when Stripe does not answer, the run proves nothing and says so as UNAVAILABLE
STRIPE_UNAVAILABLE (retry), never as an internal error — the REST fuzzer met that 500 once on a loaded machine."""

from __future__ import annotations

import datetime

import grpc
import pytest
from google.protobuf import timestamp_pb2
from nerava.incentives.v1 import incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from fakes.stripe import FakeStripe
from tests.incentives.helpers import Incentives
from tests.incentives.test_money import funded_by_stripe
from tests.support.mesh import Mesh
from tests.support.people import NewPerson, Person
from tests.support.rpc import error_reason


async def test_a_reconciliation_stripe_does_not_answer_is_unavailable_and_the_next_one_runs(
    mesh: Mesh, person: NewPerson, admin: Person, stripe_fake: FakeStripe
) -> None:
    ledger = ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"])
    incentives = Incentives(incentives_pb2_grpc.IncentivesServiceStub(mesh.channels["incentives"]), ledger)
    since = timestamp_pb2.Timestamp()
    since.FromDatetime(datetime.datetime.now(datetime.UTC))
    await funded_by_stripe(incentives, await person("sponsor"), stripe_fake, mesh)  # a payment to ask Stripe about
    request = ledger_pb2.RunReconciliationRequest(since=since)

    with stripe_fake.outage(), pytest.raises(grpc.aio.AioRpcError) as refused:
        await ledger.RunReconciliation(request, metadata=admin.auth)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_reason(refused.value) == "STRIPE_UNAVAILABLE"

    report = await ledger.RunReconciliation(request, metadata=admin.auth)
    assert report.invariants and all(not invariant.drift_ids for invariant in report.invariants)
