"""Building blocks for ledger tests: refs, a service-authenticated stub, funding, invariants."""

from __future__ import annotations

import uuid

from nerava.ledger.v1 import ledger_pb2 as pb
from nerava.ledger.v1 import ledger_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ledger.invariants import violations
from tests.support.rpc import as_service

NOVA = pb.CURRENCY_NOVA_POINTS
CASH = pb.CURRENCY_CASH_CENTS


def driver_nova(owner: str) -> pb.AccountRef:
    return pb.AccountRef(type=pb.ACCOUNT_TYPE_DRIVER_NOVA, owner_id=owner, currency=NOVA)


def merchant_nova(owner: str) -> pb.AccountRef:
    return pb.AccountRef(type=pb.ACCOUNT_TYPE_MERCHANT_NOVA, owner_id=owner, currency=NOVA)


def driver_cash(owner: str) -> pb.AccountRef:
    return pb.AccountRef(type=pb.ACCOUNT_TYPE_DRIVER_CASH, owner_id=owner, currency=CASH)


def budget(owner: str, currency: int = CASH) -> pb.AccountRef:
    return pb.AccountRef(type=pb.ACCOUNT_TYPE_CAMPAIGN_BUDGET, owner_id=owner, currency=currency)  # type: ignore[arg-type]


def external(currency: int = NOVA) -> pb.AccountRef:
    return pb.AccountRef(type=pb.ACCOUNT_TYPE_EXTERNAL_FUNDING, owner_id="world", currency=currency)  # type: ignore[arg-type]


def new_key() -> str:
    return uuid.uuid4().hex


class Ledger:
    """The LedgerService as another service calls it."""

    def __init__(self, stub: ledger_pb2_grpc.LedgerServiceAsyncStub, caller: str = "incentives") -> None:
        self.stub = stub
        self.metadata = as_service(caller)

    async def post(self, request: pb.PostTransferRequest) -> pb.PostTransferResponse:
        return await self.stub.PostTransfer(request, metadata=self.metadata)

    async def grant_nova(self, driver: str, amount: int, key: str | None = None) -> pb.PostTransferResponse:
        return await self.post(
            pb.PostTransferRequest(
                idempotency_key=key or new_key(),
                kind=pb.TRANSFER_KIND_ADMIN_GRANT,
                currency=NOVA,
                amount=amount,
                from_account=external(),
                to_account=driver_nova(driver),
            )
        )

    def redemption(self, driver: str, merchant: str, amount: int, key: str | None = None) -> pb.PostTransferRequest:
        return pb.PostTransferRequest(
            idempotency_key=key or new_key(),
            kind=pb.TRANSFER_KIND_REDEMPTION,
            currency=NOVA,
            amount=amount,
            from_account=driver_nova(driver),
            to_account=merchant_nova(merchant),
        )

    async def balance(self, ref: pb.AccountRef) -> int:
        account = await self.stub.GetAccount(pb.GetAccountRequest(account=ref), metadata=self.metadata)
        return account.account.balance


async def assert_ledger_sound(engine: AsyncEngine) -> None:
    problems = await violations(engine)
    assert not problems, problems
