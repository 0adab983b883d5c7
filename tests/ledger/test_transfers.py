"""The double-entry core over real gRPC and PostgreSQL: idempotency, refusals, concurrency, two-phase
transfers and reversals; the invariants are checked after every scenario."""

from __future__ import annotations

import asyncio
import random
import uuid

import grpc
import pytest
from nerava.ledger.v1 import ledger_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.ledger.helpers import (
    CASH,
    NOVA,
    Ledger,
    assert_ledger_sound,
    budget,
    driver_cash,
    driver_nova,
    external,
    merchant_nova,
    new_key,
)
from tests.support.rpc import as_service, bad_fields, error_reason


def _person() -> str:
    return uuid.uuid4().hex[:12]


async def test_a_transfer_moves_value_and_writes_both_entries(ledger: Ledger, ledger_engine: AsyncEngine) -> None:
    driver, merchant = _person(), _person()
    funded = await ledger.grant_nova(driver, 500)
    # The shared external account may go below zero; other tests move it too, so only its sign is known here.
    assert funded.to_balance_after == 500 and funded.from_balance_after <= -500
    spent = await ledger.post(ledger.redemption(driver, merchant, 120))
    assert spent.transfer.amount == 120
    assert (spent.from_balance_after, spent.to_balance_after) == (380, 120)
    assert not spent.replayed
    assert await ledger.balance(driver_nova(driver)) == 380
    assert await ledger.balance(merchant_nova(merchant)) == 120
    listed = await ledger.stub.ListTransfers(
        pb.ListTransfersRequest(account=driver_nova(driver)), metadata=ledger.metadata
    )
    assert [t.id for t in listed.transfers] == [spent.transfer.id, funded.transfer.id]
    await assert_ledger_sound(ledger_engine)


# --- idempotency -------------------------------------------------------------------------------------


async def test_same_key_same_request_returns_the_original(ledger: Ledger) -> None:
    driver, merchant = _person(), _person()
    await ledger.grant_nova(driver, 100)
    request = ledger.redemption(driver, merchant, 30)
    first = await ledger.post(request)
    again = await ledger.post(request)
    assert again.replayed
    assert again.transfer.id == first.transfer.id
    assert (again.from_balance_after, again.to_balance_after) == (first.from_balance_after, first.to_balance_after)
    assert await ledger.balance(driver_nova(driver)) == 70  # debited once


@pytest.mark.parametrize("change", ["amount", "account"])
async def test_same_key_different_request_is_refused(ledger: Ledger, change: str) -> None:
    driver, merchant = _person(), _person()
    await ledger.grant_nova(driver, 100)
    key = new_key()
    await ledger.post(ledger.redemption(driver, merchant, 30, key))
    other = (
        ledger.redemption(driver, merchant, 31, key)
        if change == "amount"
        else ledger.redemption(driver, _person(), 30, key)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ledger.post(other)
    assert caught.value.code() == grpc.StatusCode.ABORTED
    assert error_reason(caught.value) == "IDEMPOTENCY_KEY_REUSED"
    assert await ledger.balance(driver_nova(driver)) == 70


async def test_a_failed_attempt_is_remembered_even_after_the_balance_changes(ledger: Ledger) -> None:
    driver, merchant = _person(), _person()
    await ledger.grant_nova(driver, 10)
    request = ledger.redemption(driver, merchant, 50)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ledger.post(request)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(caught.value) == "INSUFFICIENT_BALANCE"
    await ledger.grant_nova(driver, 100)  # now the driver could afford it…
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ledger.post(request)  # …but the key already has its answer
    assert error_reason(caught.value) == "INSUFFICIENT_BALANCE"
    assert await ledger.balance(driver_nova(driver)) == 110


async def test_a_replay_after_the_balance_changed_returns_the_original_balances(ledger: Ledger) -> None:
    driver, merchant = _person(), _person()
    await ledger.grant_nova(driver, 100)
    request = ledger.redemption(driver, merchant, 40)
    first = await ledger.post(request)
    await ledger.grant_nova(driver, 1000)
    again = await ledger.post(request)
    assert again.replayed
    assert again.from_balance_after == first.from_balance_after == 60


async def test_keys_are_scoped_to_the_calling_service(ledger: Ledger) -> None:
    driver, merchant = _person(), _person()
    await ledger.grant_nova(driver, 100)
    key = new_key()
    first = await ledger.post(ledger.redemption(driver, merchant, 10, key))
    other_service = await ledger.stub.PostTransfer(
        ledger.redemption(driver, merchant, 10, key), metadata=as_service("merchants")
    )
    assert other_service.transfer.id != first.transfer.id
    assert await ledger.balance(driver_nova(driver)) == 80


async def test_twenty_concurrent_duplicates_make_one_transfer(ledger: Ledger, ledger_engine: AsyncEngine) -> None:
    driver, merchant = _person(), _person()
    await ledger.grant_nova(driver, 100)
    request = ledger.redemption(driver, merchant, 25)
    replies = await asyncio.gather(*(ledger.post(request) for _ in range(20)))
    assert len({r.transfer.id for r in replies}) == 1
    assert sum(not r.replayed for r in replies) == 1
    assert await ledger.balance(driver_nova(driver)) == 75
    await assert_ledger_sound(ledger_engine)


# --- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: setattr(r, "amount", 0), "amount"),
        (lambda r: setattr(r, "amount", -5), "amount"),
        (lambda r: setattr(r, "amount", 2**62), "amount"),
        (lambda r: setattr(r, "idempotency_key", ""), "idempotency_key"),
        (lambda r: r.to_account.CopyFrom(driver_cash("x")), "to_account"),  # cash account in a Nova transfer
        (lambda r: setattr(r, "kind", 0), "kind"),
    ],
    ids=["zero", "negative", "above-range", "missing-key", "currency-mismatch", "no-kind"],
)
async def test_bad_input_is_invalid_argument_and_writes_nothing(ledger: Ledger, mutate: object, field: str) -> None:
    driver, merchant = _person(), _person()
    await ledger.grant_nova(driver, 100)
    request = ledger.redemption(driver, merchant, 10)
    mutate(request)  # type: ignore[operator]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ledger.post(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = bad_fields(caught.value)
    assert any(f == field or f.startswith(field) for f in fields) or (field == "to_account" and fields == [""]), fields
    assert await ledger.balance(driver_nova(driver)) == 100


async def test_a_kind_that_does_not_fit_the_accounts_is_refused(ledger: Ledger) -> None:
    driver = _person()
    request = pb.PostTransferRequest(
        idempotency_key=new_key(),
        kind=pb.TRANSFER_KIND_REDEMPTION,  # redemptions go driver Nova → merchant Nova only
        currency=NOVA,
        amount=10,
        from_account=external(),
        to_account=driver_nova(driver),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ledger.post(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(caught.value) == "TRANSFER_KIND_MISMATCH"


async def test_an_unknown_account_is_not_found(ledger: Ledger) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ledger.stub.GetAccount(pb.GetAccountRequest(account=driver_nova(_person())), metadata=ledger.metadata)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(caught.value) == "ACCOUNT_NOT_FOUND"


async def test_only_services_may_post_transfers(ledger: Ledger) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ledger.stub.PostTransfer(ledger.redemption(_person(), _person(), 1))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_up_to_available_moves_what_the_driver_has(ledger: Ledger) -> None:
    driver, merchant = _person(), _person()
    await ledger.grant_nova(driver, 70)
    request = ledger.redemption(driver, merchant, 300)
    request.up_to_available = True
    spent = await ledger.post(request)
    assert spent.transfer.amount == 70
    assert spent.from_balance_after == 0


# --- concurrency -------------------------------------------------------------------------------------


async def test_fifty_concurrent_clients_over_shared_accounts_never_overdraw(
    ledger: Ledger, ledger_engine: AsyncEngine
) -> None:
    drivers = [_person() for _ in range(4)]
    merchants = [_person() for _ in range(3)]
    for driver in drivers:
        await ledger.grant_nova(driver, 200)
    rng = random.Random(7)
    requests = [
        ledger.redemption(rng.choice(drivers), rng.choice(merchants), rng.randint(1, 40)) for _ in range(50 * 6)
    ]

    async def client(batch: list[pb.PostTransferRequest]) -> list[pb.PostTransferResponse | None]:
        results: list[pb.PostTransferResponse | None] = []
        for request in batch:
            try:
                results.append(await ledger.post(request))
            except grpc.aio.AioRpcError as error:
                assert error_reason(error) == "INSUFFICIENT_BALANCE"
                results.append(None)
        return results

    batches = [requests[i::50] for i in range(50)]
    outcomes = await asyncio.gather(*(client(b) for b in batches))
    succeeded = [
        (req, res)
        for batch, results in zip(batches, outcomes, strict=True)
        for req, res in zip(batch, results, strict=True)
        if res
    ]
    spent_by = {d: sum(req.amount for req, _ in succeeded if req.from_account.owner_id == d) for d in drivers}
    received_by = {m: sum(req.amount for req, _ in succeeded if req.to_account.owner_id == m) for m in merchants}
    for driver in drivers:
        assert await ledger.balance(driver_nova(driver)) == 200 - spent_by[driver] >= 0
    for merchant in merchants:
        if received_by[merchant]:
            assert await ledger.balance(merchant_nova(merchant)) == received_by[merchant]
    assert len(succeeded) > 0
    await assert_ledger_sound(ledger_engine)


# --- two-phase payouts and reversals -----------------------------------------------------------------


async def _fund_cash(ledger: Ledger, driver: str, amount: int) -> None:
    campaign = _person()
    await ledger.post(
        pb.PostTransferRequest(
            idempotency_key=new_key(),
            kind=pb.TRANSFER_KIND_CAMPAIGN_FUNDING,
            currency=CASH,
            amount=amount,
            from_account=external(CASH),
            to_account=budget(campaign),
        )
    )
    await ledger.post(
        pb.PostTransferRequest(
            idempotency_key=new_key(),
            kind=pb.TRANSFER_KIND_CAMPAIGN_GRANT,
            currency=CASH,
            amount=amount,
            from_account=budget(campaign),
            to_account=driver_cash(driver),
        )
    )


async def test_a_reservation_is_posted_or_voided_exactly_once(ledger: Ledger, ledger_engine: AsyncEngine) -> None:
    driver = _person()
    await _fund_cash(ledger, driver, 5000)
    reserved = await ledger.stub.ReserveTransfer(
        pb.ReserveTransferRequest(
            idempotency_key=new_key(), from_account=driver_cash(driver), to_account=external(CASH), amount=3000
        ),
        metadata=ledger.metadata,
    )
    assert reserved.from_balance_after == 2000
    in_flight = pb.AccountRef(type=pb.ACCOUNT_TYPE_PAYOUTS_IN_FLIGHT, owner_id=driver, currency=CASH)
    assert await ledger.balance(in_flight) == 3000
    posted = await ledger.stub.PostReservedTransfer(
        pb.PostReservedTransferRequest(idempotency_key=new_key(), transfer_id=reserved.transfer.id),
        metadata=ledger.metadata,
    )
    assert posted.transfer.amount == 3000
    assert await ledger.balance(in_flight) == 0
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ledger.stub.VoidReservedTransfer(
            pb.VoidReservedTransferRequest(
                idempotency_key=new_key(), transfer_id=reserved.transfer.id, reason="late failure"
            ),
            metadata=ledger.metadata,
        )
    assert error_reason(caught.value) == "TRANSFER_NOT_RESERVED"
    assert await ledger.balance(driver_cash(driver)) == 2000
    await assert_ledger_sound(ledger_engine)


async def test_a_voided_reservation_returns_the_funds_once(ledger: Ledger, ledger_engine: AsyncEngine) -> None:
    driver = _person()
    await _fund_cash(ledger, driver, 2500)
    reserved = await ledger.stub.ReserveTransfer(
        pb.ReserveTransferRequest(
            idempotency_key=new_key(), from_account=driver_cash(driver), to_account=external(CASH), amount=2500
        ),
        metadata=ledger.metadata,
    )
    voids = await asyncio.gather(
        *(
            ledger.stub.VoidReservedTransfer(
                pb.VoidReservedTransferRequest(
                    idempotency_key=new_key(), transfer_id=reserved.transfer.id, reason="bank refused"
                ),
                metadata=ledger.metadata,
            )
            for _ in range(5)
        ),
        return_exceptions=True,
    )
    assert sum(isinstance(v, pb.VoidReservedTransferResponse) for v in voids) == 1
    assert await ledger.balance(driver_cash(driver)) == 2500
    await assert_ledger_sound(ledger_engine)


async def test_a_reversal_mirrors_the_original_and_cannot_exceed_it(ledger: Ledger, ledger_engine: AsyncEngine) -> None:
    driver, merchant = _person(), _person()
    grant = await ledger.grant_nova(driver, 90)
    reversed_ = await ledger.stub.ReverseTransfer(
        pb.ReverseTransferRequest(idempotency_key=new_key(), transfer_id=grant.transfer.id, reason="clawback"),
        metadata=ledger.metadata,
    )
    assert reversed_.transfer.amount == 90
    assert reversed_.transfer.reversal_of == grant.transfer.id
    assert await ledger.balance(driver_nova(driver)) == 0
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ledger.stub.ReverseTransfer(
            pb.ReverseTransferRequest(idempotency_key=new_key(), transfer_id=grant.transfer.id, reason="again"),
            metadata=ledger.metadata,
        )
    assert error_reason(caught.value) == "TRANSFER_ALREADY_REVERSED"
    spent_grant = await ledger.grant_nova(driver, 50)
    await ledger.post(ledger.redemption(driver, merchant, 50))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ledger.stub.ReverseTransfer(
            pb.ReverseTransferRequest(
                idempotency_key=new_key(), transfer_id=spent_grant.transfer.id, reason="clawback"
            ),
            metadata=ledger.metadata,
        )
    assert error_reason(caught.value) == "INSUFFICIENT_BALANCE"  # the Nova was already spent
    await assert_ledger_sound(ledger_engine)


async def test_debiting_an_account_that_never_existed_writes_nothing(
    ledger: Ledger, ledger_engine: AsyncEngine
) -> None:
    ghost, merchant = _person(), _person()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ledger.post(ledger.redemption(ghost, merchant, 5))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(caught.value) == "ACCOUNT_NOT_FOUND"
    for ref in (driver_nova(ghost), merchant_nova(merchant)):
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await ledger.stub.GetAccount(pb.GetAccountRequest(account=ref), metadata=ledger.metadata)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND  # no empty account was opened
    await assert_ledger_sound(ledger_engine)
