"""How peers.py reads the ledger's and the directory's errors, without a mesh: a grant's credit refused for good
fails the grant, refused without a remembered refusal is parked, unanswered is retried by the relay (the ledger's
error as it came); a clawback tells LEDGER_UNAVAILABLE from GRANT_ALREADY_SPENT; platform funding tells the key held
by an earlier attempt from a ledger that does not answer."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from nerava.incentives.v1 import incentives_pb2 as pb

from services.common.errors import FailedPrecondition, NotFound, Unavailable
from services.common.outbox import PermanentDeliveryError
from services.incentives.peers import (
    CampaignBudgets,
    ChargerDirectory,
    CreditRefused,
    DriverEmails,
    GrantCredits,
    PlatformFunding,
)
from services.incentives.reasons import Reason

GRANT_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")
GRANT = {
    "id": GRANT_ID,
    "reward_kind": pb.REWARD_KIND_CASH,
    "amount_cents": 100,
    "campaign_id": uuid.UUID("00000000-0000-0000-0000-000000000002"),
    "driver_id": "d1",
    "credit_campaign_name": "Charge here",
    "credit_sponsor_id": "s1",
    "credit_sponsor_name": "Sponsor",
    "session_id": uuid.UUID("00000000-0000-0000-0000-000000000003"),
}


def _error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="refused", debug_error_string=""
    )


class Failing:
    """A stub every call of which fails with `code`."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self.code = code

    def __getattr__(self, name: str) -> Any:
        async def call(request: object) -> object:
            raise _error(self.code)

        return call


def _credits(code: grpc.StatusCode) -> GrantCredits:
    stub: Any = Failing(code)
    return GrantCredits(stub)


async def test_the_relay_fails_a_refused_credit_parks_an_unremembered_one_and_retries_the_rest() -> None:
    with pytest.raises(CreditRefused, match=f"ledger refused grant {GRANT_ID}: refused"):
        await _credits(grpc.StatusCode.FAILED_PRECONDITION).deliver(GRANT_ID, GRANT)
    for parked in (grpc.StatusCode.ABORTED, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED):
        with pytest.raises(PermanentDeliveryError) as raised:
            await _credits(parked).deliver(GRANT_ID, GRANT)
        assert not isinstance(raised.value, CreditRefused)
    for retried in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL):
        with pytest.raises(grpc.aio.AioRpcError):
            await _credits(retried).deliver(GRANT_ID, GRANT)


async def test_a_clawback_tells_refused_from_unanswered_from_spent() -> None:
    with pytest.raises(CreditRefused):
        await _credits(grpc.StatusCode.FAILED_PRECONDITION).credit(GRANT_ID, GRANT)
    for unanswered in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        with pytest.raises(Unavailable) as down:
            await _credits(unanswered).credit(GRANT_ID, GRANT)
        assert down.value.reason == Reason.LEDGER_UNAVAILABLE
        with pytest.raises(Unavailable):
            await _credits(unanswered).reverse(GRANT_ID, "t1", "c1", "fraud", "admin")
    with pytest.raises(grpc.aio.AioRpcError):
        await _credits(grpc.StatusCode.INTERNAL).credit(GRANT_ID, GRANT)
    with pytest.raises(FailedPrecondition) as spent:
        await _credits(grpc.StatusCode.FAILED_PRECONDITION).reverse(GRANT_ID, "t1", "c1", "fraud", "admin")
    assert spent.value.reason == Reason.GRANT_ALREADY_SPENT


async def test_platform_funding_tells_a_key_held_before_from_a_ledger_away() -> None:
    funding = PlatformFunding("platform-funding:c1", "c1", "Charge here", pb.REWARD_KIND_CASH, 500, "a1", "promo")
    held: Any = Failing(grpc.StatusCode.ABORTED)
    assert await CampaignBudgets(held).fund_from_platform(funding) is False
    away: Any = Failing(grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(Unavailable) as down:
        await CampaignBudgets(away).fund_from_platform(funding)
    assert down.value.reason == Reason.LEDGER_UNAVAILABLE


async def test_an_unknown_charger_and_driver() -> None:
    unknown: Any = Failing(grpc.StatusCode.NOT_FOUND)
    with pytest.raises(NotFound) as missing:
        await ChargerDirectory(unknown).place("ch-1")
    assert missing.value.reason == Reason.CHARGER_NOT_FOUND
    assert await DriverEmails(unknown).email("d1") == ""
    away: Any = Failing(grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(Unavailable) as down:
        await DriverEmails(away).email("d1")
    assert down.value.reason == Reason.ACCOUNTS_UNAVAILABLE
