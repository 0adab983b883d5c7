"""QR checkout: Nova spent exactly once — under concurrency, on replays, with Square orders, and while the
ledger is away — with the 15 % merchant fee accrued by the same ledger transaction."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa
from nerava.ledger.v1 import ledger_pb2
from nerava.merchants.v1 import merchants_pb2 as pb
from nerava.merchants.v1 import merchants_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from fakes.square import FakeSquare
from services.common.config import Env
from services.ledger.invariants import violations
from services.merchants import store
from services.merchants.__main__ import build_server
from services.merchants.adapters.square import SquareAccounts
from services.merchants.checkout import redemption_transfer
from services.merchants.config import MerchantsSettings
from services.merchants.peers import redemption_request
from services.merchants.records import token_cipher
from tests.merchants.helpers import Merchants, Store, driver_nova
from tests.support.eventually import eventually
from tests.support.mesh import Mesh
from tests.support.people import NewPerson, Person
from tests.support.rpc import as_service, error_metadata, error_reason
from tests.support.tcp_proxy import tcp_proxy
from tools.embedded import free_port

R = store.redemptions


def redeem(shop: Store, total: int = 1000, key: str | None = None, **extra: Any) -> pb.RedeemAtCheckoutRequest:
    return pb.RedeemAtCheckoutRequest(
        qr_token=shop.qr_token, order_total_cents=total, idempotency_key=key or str(uuid.uuid4()), **extra
    )


async def redemption_debits(merchants: Merchants, driver: Person) -> list[int]:
    listed = await merchants.ledger.ListTransfers(
        ledger_pb2.ListTransfersRequest(account=driver_nova(driver.user_id), page_size=100),
        metadata=as_service("merchants"),
    )
    return [t.amount for t in listed.transfers if t.kind == ledger_pb2.TRANSFER_KIND_REDEMPTION]


async def test_a_redemption_spends_the_perk_and_accrues_the_fee(
    merchants: Merchants, shop: Store, driver: Person, rest: httpx.AsyncClient, database_url: str
) -> None:
    await merchants.give_nova(driver, 500)
    body = {"qr_token": shop.qr_token, "order_total_cents": 1000, "idempotency_key": str(uuid.uuid4())}
    reply = await rest.post("/v1/checkout/redeem", json=body, headers=driver.headers)
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert result["success"] is True and result["status"] == "REDEMPTION_STATUS_COMPLETED"
    assert (result["discount_cents"], result["nova_spent_cents"], result["remaining_nova_cents"]) == (300, 300, 200)
    assert result["merchant_fee_cents"] == 45  # 15 % of 300
    assert result["message"] == "$3.00 off applied at Test Coffee"
    assert await merchants.nova(driver) == 200
    fees = await merchants.ledger.GetMerchantFeePeriod(
        ledger_pb2.GetMerchantFeePeriodRequest(merchant_id=shop.id), metadata=as_service("merchants")
    )
    assert (fees.period.nova_redeemed, fees.period.fee_cents) == (300, 45)
    # The cashier screen: the driver and the store's owner see it.
    for who in (driver, shop.owner):
        seen = await rest.get(f"/v1/checkout/redemption/{result['redemption_id']}", headers=who.headers)
        assert seen.status_code == 200, seen.text
        assert (seen.json()["discount_cents"], seen.json()["order_total_cents"]) == (300, 1000)


async def test_the_discount_is_the_smallest_of_perk_balance_and_order(
    merchants: Merchants, shop: Store, driver: Person, person: NewPerson
) -> None:
    await merchants.give_nova(driver, 120)
    partial = await merchants.stub.RedeemAtCheckout(redeem(shop, 1000), metadata=driver.auth)
    assert (partial.discount_cents, partial.remaining_nova_cents) == (120, 0)  # the balance was short
    await merchants.give_nova(driver, 500)
    small_order = await merchants.stub.RedeemAtCheckout(redeem(shop, 180), metadata=driver.auth)
    assert (small_order.discount_cents, small_order.order_total_cents) == (180, 180)
    never_had_nova = await person()
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await merchants.stub.RedeemAtCheckout(redeem(shop), metadata=never_had_nova.auth)
    assert error_reason(empty.value) == "INSUFFICIENT_BALANCE"


async def test_twenty_concurrent_redemptions_with_nova_for_three(
    merchants: Merchants, shop: Store, driver: Person, merchants_engine: AsyncEngine, database_url: str
) -> None:
    await merchants.give_nova(driver, 900)  # exactly three perks of 300
    outcomes = await asyncio.gather(
        *(merchants.stub.RedeemAtCheckout(redeem(shop), metadata=driver.auth) for _ in range(20)),
        return_exceptions=True,
    )
    completed = [o for o in outcomes if isinstance(o, pb.RedeemAtCheckoutResponse)]
    refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(completed) == 3 and all(o.discount_cents == 300 for o in completed)
    assert len(refused) == 17
    assert {error_reason(o) for o in refused} == {"INSUFFICIENT_BALANCE"}
    assert {o.code() for o in refused} == {grpc.StatusCode.FAILED_PRECONDITION}
    assert await redemption_debits(merchants, driver) == [300, 300, 300]
    assert await merchants.nova(driver) == 0
    async with merchants_engine.connect() as conn:
        statuses = (
            await conn.execute(
                sa.select(R.c.status, sa.func.count()).where(R.c.driver_id == driver.user_id).group_by(R.c.status)
            )
        ).all()
    assert dict(statuses) == {pb.REDEMPTION_STATUS_COMPLETED: 3, pb.REDEMPTION_STATUS_FAILED: 17}
    await _assert_ledger_sound(database_url)


async def test_the_same_redemption_replayed_debits_once(merchants: Merchants, shop: Store, driver: Person) -> None:
    await merchants.give_nova(driver, 1000)
    request = redeem(shop)
    first = await merchants.stub.RedeemAtCheckout(request, metadata=driver.auth)
    replies = await asyncio.gather(*(merchants.stub.RedeemAtCheckout(request, metadata=driver.auth) for _ in range(20)))
    assert {r.redemption_id for r in replies} == {first.redemption_id}
    assert all(r.replayed and r.discount_cents == 300 and r.remaining_nova_cents == 700 for r in replies)
    assert await redemption_debits(merchants, driver) == [300]
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await merchants.stub.RedeemAtCheckout(redeem(shop, 2000, key=request.idempotency_key), metadata=driver.auth)
    assert reused.value.code() == grpc.StatusCode.ABORTED and error_reason(reused.value) == "IDEMPOTENCY_KEY_REUSED"


async def test_concurrent_first_attempts_with_one_key_debit_once(
    merchants: Merchants, shop: Store, driver: Person
) -> None:
    await merchants.give_nova(driver, 1000)
    request = redeem(shop)
    replies = await asyncio.gather(*(merchants.stub.RedeemAtCheckout(request, metadata=driver.auth) for _ in range(20)))
    assert len({r.redemption_id for r in replies}) == 1
    assert await redemption_debits(merchants, driver) == [300]


async def test_a_key_is_the_drivers_own(merchants: Merchants, shop: Store, driver: Person, person: NewPerson) -> None:
    other = await person()
    await merchants.give_nova(driver, 300)
    await merchants.give_nova(other, 300)
    key = str(uuid.uuid4())
    mine = await merchants.stub.RedeemAtCheckout(redeem(shop, key=key), metadata=driver.auth)
    theirs = await merchants.stub.RedeemAtCheckout(redeem(shop, key=key), metadata=other.auth)
    assert mine.redemption_id != theirs.redemption_id and not theirs.replayed  # 🐞 keys were not bound to drivers


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"order_total_cents": 0}, "order_total_cents"),
        ({"order_total_cents": -5}, "order_total_cents"),
        ({"idempotency_key": "not-a-uuid"}, "idempotency_key"),
        ({"qr_token": "short"}, "qr_token"),
    ],
)
async def test_bad_redemptions_are_refused_and_write_nothing(
    shop: Store,
    driver: Person,
    rest: httpx.AsyncClient,
    merchants_engine: AsyncEngine,
    body: dict[str, Any],
    field: str,
) -> None:
    request = {"qr_token": shop.qr_token, "order_total_cents": 500, "idempotency_key": str(uuid.uuid4()), **body}
    reply = await rest.post("/v1/checkout/redeem", json=request, headers=driver.headers)
    assert reply.status_code == 400, reply.text
    violations_named = [v["field"] for d in reply.json()["details"] for v in d.get("field_violations", [])]
    assert field in violations_named
    assert await _redemptions_of(merchants_engine, driver) == 0


async def test_an_unknown_qr_token_is_not_found_and_writes_nothing(
    driver: Person, rest: httpx.AsyncClient, merchants_engine: AsyncEngine
) -> None:
    request = {"qr_token": "Z" * 43, "order_total_cents": 500, "idempotency_key": str(uuid.uuid4())}
    reply = await rest.post("/v1/checkout/redeem", json=request, headers=driver.headers)
    assert reply.status_code == 404 and reply.json()["details"][0]["reason"] == "QR_TOKEN_UNKNOWN"
    assert await _redemptions_of(merchants_engine, driver) == 0


async def test_redemptions_are_private_to_the_driver_and_the_store(
    merchants: Merchants, shop: Store, driver: Person, person: NewPerson, rest: httpx.AsyncClient
) -> None:
    await merchants.give_nova(driver, 300)
    done = await merchants.stub.RedeemAtCheckout(redeem(shop), metadata=driver.auth)
    for stranger in (await person(), await person("merchant")):
        seen = await rest.get(f"/v1/checkout/redemption/{done.redemption_id}", headers=stranger.headers)
        assert seen.status_code == 404 and seen.json()["details"][0]["reason"] == "REDEMPTION_NOT_FOUND"
    assert (await rest.post("/v1/checkout/redeem", json={})).status_code == 401


async def _redemptions_of(engine: AsyncEngine, driver: Person) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).where(R.c.driver_id == driver.user_id))).scalar_one()


async def _assert_ledger_sound(database_url: str) -> None:
    from services.common.db import create_engine

    ledger_engine = create_engine(database_url, "ledger")
    try:
        assert await violations(ledger_engine) == []
    finally:
        await ledger_engine.dispose()


# --- Square orders ---------------------------------------------------------------------------------------


async def _connect_square(square_fake: FakeSquare, merchants_engine: AsyncEngine, shop: Store) -> str:
    """Connects the shop to a new Square seller (the OAuth exchange through the real adapter); returns the
    location id."""
    seller = square_fake.add_merchant("Test Coffee")
    location = square_fake.add_location(seller.id, "Main")
    async with SquareAccounts(
        application_id=square_fake.application_id,
        application_secret=square_fake.application_secret,
        redirect_uri="http://portal.test/square/callback",
        base_url=square_fake.base_url,
    ) as square:
        tokens = await square.exchange_code(square_fake.issue_code(seller.id))
    cipher = token_cipher(MerchantsSettings.from_env(Env.development()).square_token_keys.value)
    async with merchants_engine.begin() as conn:
        await conn.execute(
            sa.insert(store.square_connections).values(
                merchant_id=shop.id,
                square_merchant_id=tokens.square_merchant_id,
                location_id=location.id,
                access_token=cipher.encrypt(tokens.access_token.encode()),
                refresh_token=cipher.encrypt(tokens.refresh_token.encode()),
                expires_at=tokens.expires_at,
                connected_by_user_id=shop.owner.user_id,
            )
        )
    return location.id


async def test_a_square_order_uses_squares_total_and_is_redeemed_once(
    merchants: Merchants,
    shop: Store,
    driver: Person,
    square_fake: FakeSquare,
    merchants_engine: AsyncEngine,
    person: NewPerson,
) -> None:
    location = await _connect_square(square_fake, merchants_engine, shop)
    order = square_fake.add_order(location, 250, state="OPEN")
    await merchants.give_nova(driver, 1000)
    first = await merchants.stub.RedeemAtCheckout(redeem(shop, 99_999, square_order_id=order.id), metadata=driver.auth)
    assert (first.order_total_cents, first.discount_cents) == (250, 250)  # Square's total, not the client's
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await merchants.stub.RedeemAtCheckout(redeem(shop, 250, square_order_id=order.id), metadata=driver.auth)
    assert again.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_reason(again.value) == "ORDER_ALREADY_REDEEMED"
    assert await redemption_debits(merchants, driver) == [250]  # no debit for the duplicate
    assert error_metadata(again.value)["redemption_id"] == first.redemption_id  # the driver's own
    someone = await person()
    await merchants.give_nova(someone, 500)
    with pytest.raises(grpc.aio.AioRpcError) as theirs:
        await merchants.stub.RedeemAtCheckout(redeem(shop, 250, square_order_id=order.id), metadata=someone.auth)
    assert error_reason(theirs.value) == "ORDER_ALREADY_REDEEMED"
    assert error_metadata(theirs.value)["redemption_id"] == ""  # another driver's redemption is not named
    euros = square_fake.add_order(location, 900, currency="EUR")
    with pytest.raises(grpc.aio.AioRpcError) as foreign_money:
        await merchants.stub.RedeemAtCheckout(redeem(shop, square_order_id=euros.id), metadata=driver.auth)
    assert error_reason(foreign_money.value) == "SQUARE_ORDER_UNAVAILABLE"


async def test_square_orders_of_another_location_or_store_are_refused(
    merchants: Merchants,
    shop: Store,
    driver: Person,
    square_fake: FakeSquare,
    merchants_engine: AsyncEngine,
    admin: Person,
    owner: Person,
) -> None:
    await _connect_square(square_fake, merchants_engine, shop)
    elsewhere = square_fake.add_location(square_fake.add_merchant("Other").id, "Other")
    foreign = square_fake.add_order(elsewhere.id, 800)
    await merchants.give_nova(driver, 1000)
    with pytest.raises(grpc.aio.AioRpcError) as wrong_place:
        await merchants.stub.RedeemAtCheckout(redeem(shop, square_order_id=foreign.id), metadata=driver.auth)
    assert error_reason(wrong_place.value) == "SQUARE_ORDER_UNAVAILABLE"
    unconnected = await merchants.create_store(admin, owner)
    with pytest.raises(grpc.aio.AioRpcError) as not_connected:
        await merchants.stub.RedeemAtCheckout(redeem(unconnected, square_order_id=foreign.id), metadata=driver.auth)
    assert error_reason(not_connected.value) == "SQUARE_NOT_CONNECTED"
    assert await redemption_debits(merchants, driver) == []


# --- the ledger away ---------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def merchants_beside(mesh: Mesh, ledger_port: int) -> AsyncIterator[merchants_pb2_grpc.MerchantsServiceAsyncStub]:
    """A second merchants process whose ledger is at `ledger_port` (nothing, or a proxy to the real one)."""
    port = free_port()
    env = dict(mesh.env, LEDGER_ADDR=f"127.0.0.1:{ledger_port}", MERCHANTS_PORT=str(port))
    async with contextlib.AsyncExitStack() as stack:
        server = await build_server(MerchantsSettings.from_env(Env(env)), stack)
        await server.start()
        stack.push_async_callback(server.stop)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        stack.push_async_callback(channel.close, None)
        yield merchants_pb2_grpc.MerchantsServiceStub(channel)


async def test_with_the_ledger_away_the_driver_gets_unavailable_and_the_retry_completes_once(
    merchants: Merchants, shop: Store, driver: Person, mesh: Mesh, merchants_engine: AsyncEngine
) -> None:
    await merchants.give_nova(driver, 1000)
    ledger_port = free_port()
    request = redeem(shop)
    async with merchants_beside(mesh, ledger_port) as cut_off:
        with pytest.raises(grpc.aio.AioRpcError) as away:
            await cut_off.RedeemAtCheckout(request, metadata=driver.auth)
        assert away.value.code() == grpc.StatusCode.UNAVAILABLE and error_reason(away.value) == "LEDGER_UNAVAILABLE"
        async with merchants_engine.connect() as conn:
            pending = (await conn.execute(sa.select(R.c.status).where(R.c.driver_id == driver.user_id))).scalars().all()
        assert pending == [pb.REDEMPTION_STATUS_PENDING]  # recorded, nothing debited
        assert await redemption_debits(merchants, driver) == []
        async with tcp_proxy(ledger_port, "127.0.0.1", mesh.ports["ledger"]):
            retried = await cut_off.RedeemAtCheckout(request, metadata=driver.auth)
    assert retried.status == pb.REDEMPTION_STATUS_COMPLETED and retried.discount_cents == 300
    assert await redemption_debits(merchants, driver) == [300]


async def test_a_lost_ledger_answer_is_settled_by_the_worker_exactly_once(
    merchants: Merchants, shop: Store, driver: Person, merchants_engine: AsyncEngine
) -> None:
    """The ledger committed, the answer never came back: the redemption sits PENDING with the debit done; the
    settling worker asks again with the same key and records COMPLETED without a second debit."""
    await merchants.give_nova(driver, 1000)
    async with merchants_engine.begin() as conn:
        row = (
            await conn.execute(
                sa.insert(R)
                .values(
                    id=uuid.uuid4(),
                    merchant_id=shop.id,
                    merchant_name="Test Coffee",
                    driver_id=driver.user_id,
                    idempotency_key=uuid.uuid4(),
                    request_hash=b"x",
                    order_total_cents=1000,
                    requested_discount_cents=300,
                    discount_cents=0,
                    merchant_fee_cents=0,
                    status=1,
                    attempts=1,
                    created_at=sa.func.now() - sa.text("interval '1 minute'"),
                )
                .returning(*R.c)
            )
        ).one()
    await merchants.ledger.PostTransfer(redemption_request(redemption_transfer(row)), metadata=as_service("merchants"))
    assert await redemption_debits(merchants, driver) == [300]

    async def settled() -> int:
        async with merchants_engine.connect() as conn:
            status: int = (await conn.execute(sa.select(R.c.status).where(R.c.id == row.id))).scalar_one()
        assert status != pb.REDEMPTION_STATUS_PENDING, "the settling worker has not reached the redemption yet"
        return status

    assert await eventually(settled) == pb.REDEMPTION_STATUS_COMPLETED
    assert await redemption_debits(merchants, driver) == [300]


async def test_a_square_order_keys_its_redemption_when_the_app_sends_no_key(
    merchants: Merchants,
    shop: Store,
    driver: Person,
    square_fake: FakeSquare,
    merchants_engine: AsyncEngine,
    rest: httpx.AsyncClient,
) -> None:
    location = await _connect_square(square_fake, merchants_engine, shop)
    order = square_fake.add_order(location, 400, state="OPEN")
    await merchants.give_nova(driver, 1000)
    body = {"qr_token": shop.qr_token, "order_total_cents": 1, "square_order_id": order.id}
    first = await rest.post("/v1/checkout/redeem", json=body, headers=driver.headers)
    assert first.status_code == 200, first.text
    assert (first.json()["order_total_cents"], first.json()["discount_cents"]) == (400, 300)
    # The double tap, or a retry after a lost answer, with another total typed: the same redemption, replayed.
    retried = await rest.post("/v1/checkout/redeem", json={**body, "order_total_cents": 999}, headers=driver.headers)
    assert retried.status_code == 200, retried.text
    assert retried.json()["redemption_id"] == first.json()["redemption_id"] and retried.json()["replayed"] is True
    assert await redemption_debits(merchants, driver) == [300]

    neither = await rest.post(
        "/v1/checkout/redeem", json={"qr_token": shop.qr_token, "order_total_cents": 500}, headers=driver.headers
    )
    assert neither.status_code == 400, neither.text
    violations = [v for d in neither.json()["details"] for v in d.get("field_violations", [])]
    assert [v["reason"] for v in violations] == ["IDEMPOTENCY_KEY_REQUIRED"]
    assert await redemption_debits(merchants, driver) == [300]


async def test_the_checkout_page_lists_the_stores_recent_orders_to_a_signed_in_driver(
    merchants: Merchants,
    shop: Store,
    driver: Person,
    square_fake: FakeSquare,
    merchants_engine: AsyncEngine,
    rest: httpx.AsyncClient,
) -> None:
    unconnected = await rest.get("/v1/checkout/orders", params={"token": shop.qr_token}, headers=driver.headers)
    assert unconnected.status_code == 200, unconnected.text
    assert unconnected.json()["orders"] == [] and unconnected.json()["merchant_id"] == shop.id

    location = await _connect_square(square_fake, merchants_engine, shop)
    now = datetime.datetime.now(datetime.UTC)
    older = square_fake.add_order(location, 700, state="OPEN", created_at=now - datetime.timedelta(minutes=25))
    paid = square_fake.add_order(location, 300, created_at=now - datetime.timedelta(minutes=4))
    open_order = square_fake.add_order(location, 450, state="OPEN", created_at=now - datetime.timedelta(minutes=1))
    square_fake.add_order(location, 999, state="CANCELED")
    await merchants.give_nova(driver, 1000)
    await merchants.stub.RedeemAtCheckout(redeem(shop, square_order_id=paid.id), metadata=driver.auth)

    listed = await rest.get("/v1/checkout/orders", params={"token": shop.qr_token}, headers=driver.headers)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert (body["merchant_name"], body["perk"]["perk_cents"]) == ("Test Coffee", 300)
    assert [(o["id"], o["total_cents"], o["state"], o["redeemed"]) for o in body["orders"]] == [
        (open_order.id, 450, "OPEN", False),
        (paid.id, 300, "COMPLETED", True),
    ]
    wider = await rest.get(
        "/v1/checkout/orders", params={"token": shop.qr_token, "minutes": 30}, headers=driver.headers
    )
    assert older.id in [o["id"] for o in wider.json()["orders"]]

    anonymous = await rest.get("/v1/checkout/orders", params={"token": shop.qr_token})
    assert anonymous.status_code == 401  # other customers' orders are not public
    unknown = await rest.get("/v1/checkout/orders", params={"token": "x" * 43}, headers=driver.headers)
    assert unknown.status_code == 404
    too_far = await rest.get(
        "/v1/checkout/orders", params={"token": shop.qr_token, "minutes": 61}, headers=driver.headers
    )
    assert too_far.status_code == 400

    square_fake.fail_next(2, 503)  # the service's attempt and its one retry
    down = await rest.get("/v1/checkout/orders", params={"token": shop.qr_token}, headers=driver.headers)
    assert down.status_code == 503, down.text
