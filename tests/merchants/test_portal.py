"""The merchant portal over gRPC and through the gateway: the owner's merchant with its Nova, redemption totals,
the visit log, the month's fee, shareable lines, the share card PNG and the QR sign PDF; signed preview links;
who may read what.

Redemptions and visits are seeded as rows (COMPLETED redemptions; exclusive sessions with verified visits) so
the reports are tested on their own; the Nova side of GetMyMerchant and billing goes through the real ledger."""

from __future__ import annotations

import datetime
import hashlib
import io
import itertools
import urllib.parse
import uuid
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa
from nerava.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from nerava.merchants.v1 import merchants_pb2 as pb
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.config import Env
from services.common.context import Caller
from services.common.errors import Unavailable
from services.merchants import domain, store
from services.merchants.artwork import ShareCardFigures, render_share_card
from services.merchants.config import MerchantsSettings
from services.merchants.peers import MerchantNova
from services.merchants.portal import Portal
from tests.merchants.helpers import Merchants, Store, driver_nova, scan_sign
from tests.support.mesh import Mesh
from tests.support.people import NewPerson, Person
from tests.support.rpc import as_service, bad_fields, error_reason
from tools.embedded import free_port

JsonObject = dict[str, Any]
HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)
_visit_numbers = itertools.count(1)


def _ago(delta: datetime.timedelta) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) - delta


# --- seeding ------------------------------------------------------------------------------------------------


async def seed_redemption(
    engine: AsyncEngine,
    merchant_id: str,
    driver_id: str,
    discount_cents: int,
    *,
    age: datetime.timedelta = HOUR,
    status: int = pb.REDEMPTION_STATUS_COMPLETED,
) -> None:
    completed = status == pb.REDEMPTION_STATUS_COMPLETED
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(store.redemptions).values(
                id=uuid.uuid4(),
                merchant_id=merchant_id,
                merchant_name="Test Coffee",
                driver_id=driver_id,
                idempotency_key=uuid.uuid4(),
                request_hash=b"seeded",
                order_total_cents=2000,
                requested_discount_cents=max(discount_cents, 1),
                discount_cents=discount_cents if completed else 0,
                merchant_fee_cents=0,
                transfer_id=uuid.uuid4() if completed else None,
                status=status,
                attempts=1,
                created_at=_ago(age),
            )
        )


async def seed_offer(engine: AsyncEngine, merchant_id: str, title: str) -> str:
    offer_id = f"ex_{uuid.uuid4().hex[:12]}"
    async with engine.begin() as conn:
        await conn.execute(sa.insert(store.exclusive_offers).values(id=offer_id, merchant_id=merchant_id, title=title))
    return offer_id


async def _session(
    conn: Any, shop: Store, driver_id: str, activated: datetime.datetime, status: int, offer_id: str | None
) -> uuid.UUID:
    session_id = uuid.uuid4()
    await conn.execute(
        sa.insert(store.exclusive_sessions).values(
            id=session_id,
            driver_id=driver_id,
            merchant_id=shop.id,
            charger_id=shop.charger_id,
            offer_id=offer_id,
            status=status,
            lat=shop.charger_lat,
            lng=shop.charger_lng,
            distance_m=10.0,
            activated_at=activated,
            expires_at=activated + domain.EXCLUSIVE_DURATION,
        )
    )
    return session_id


async def seed_visit(
    engine: AsyncEngine,
    shop: Store,
    driver_id: str,
    *,
    age: datetime.timedelta,
    minutes: int = 12,
    offer_id: str | None = None,
) -> str:
    """A completed exclusive session verified `age` ago, `minutes` after its activation; returns the visit id."""
    verified = _ago(age)
    visit_id = uuid.uuid4()
    async with engine.begin() as conn:
        session_id = await _session(
            conn,
            shop,
            driver_id,
            verified - datetime.timedelta(minutes=minutes),
            pb.EXCLUSIVE_STATUS_COMPLETED,
            offer_id,
        )
        number = next(_visit_numbers)
        await conn.execute(
            sa.insert(store.verified_visits).values(
                id=visit_id,
                exclusive_session_id=session_id,
                merchant_id=shop.id,
                driver_id=driver_id,
                visit_date=verified.date(),
                visit_number=number,
                verification_code=domain.verification_code("AUS", "TESTCO", number),
                lat=shop.charger_lat,
                lng=shop.charger_lng,
                verified_at=verified,
            )
        )
    return str(visit_id)


async def seed_active_session(engine: AsyncEngine, shop: Store, driver_id: str, *, age: datetime.timedelta) -> str:
    async with engine.begin() as conn:
        session_id = await _session(conn, shop, driver_id, _ago(age), pb.EXCLUSIVE_STATUS_ACTIVE, None)
    return str(session_id)


async def redeem_in_ledger(merchants: Merchants, driver: Person, merchant_id: str, amount: int) -> str:
    """A REDEMPTION transfer driver Nova → merchant Nova as the merchants service posts it; the transfer id."""
    reply = await merchants.ledger.PostTransfer(
        ledger_pb2.PostTransferRequest(
            idempotency_key=f"redemption:{uuid.uuid4()}",
            kind=ledger_pb2.TRANSFER_KIND_REDEMPTION,
            currency=ledger_pb2.CURRENCY_NOVA_POINTS,
            amount=amount,
            from_account=driver_nova(driver.user_id),
            to_account=ledger_pb2.AccountRef(
                type=ledger_pb2.ACCOUNT_TYPE_MERCHANT_NOVA,
                owner_id=merchant_id,
                currency=ledger_pb2.CURRENCY_NOVA_POINTS,
            ),
            metadata=ledger_pb2.TransferMetadata(merchant_id=merchant_id, redemption_id="r-seeded-1"),
        ),
        metadata=as_service("merchants"),
    )
    return reply.transfer.id


def _reason(body: JsonObject) -> str:
    infos = [d for d in body.get("details", []) if str(d.get("@type", "")).endswith("google.rpc.ErrorInfo")]
    return str(infos[0]["reason"]) if infos else ""


def _fields(body: JsonObject) -> list[str]:
    return [
        v["field"]
        for d in body.get("details", [])
        if str(d.get("@type", "")).endswith("google.rpc.BadRequest")
        for v in d["field_violations"]
    ]


def _preview_key(mesh: Mesh) -> bytes:
    return MerchantsSettings.from_env(Env(mesh.env)).preview_signing_key.value.encode()


# --- GetMyMerchant --------------------------------------------------------------------------------------------


async def test_my_merchant_is_the_first_active_store_with_its_nova_and_transactions(
    merchants: Merchants, admin: Person, owner: Person, driver: Person, rest: httpx.AsyncClient
) -> None:
    paused = await merchants.create_store(admin, owner, name="Old Paused Cafe", status=pb.MERCHANT_STATUS_PAUSED)
    active = await merchants.create_store(admin, owner, name="Live Cafe")
    await merchants.give_nova(driver, 500)
    transfer_id = await redeem_in_ledger(merchants, driver, active.id, 300)

    mine = await merchants.stub.GetMyMerchant(pb.GetMyMerchantRequest(), metadata=owner.auth)
    assert list(mine.merchant_ids) == [paused.id, active.id]  # every store, oldest first
    assert (mine.merchant.id, mine.merchant.name, mine.merchant.nova_balance) == (active.id, "Live Cafe", 300)
    assert mine.merchant.status == pb.MERCHANT_STATUS_ACTIVE and mine.merchant.zone_slug == "austin-downtown"
    assert mine.merchant.details.owner_user_id == owner.user_id  # the owner's view
    [transaction] = mine.transactions
    assert transaction.id == transfer_id
    assert (transaction.type, transaction.amount, transaction.driver_user_id) == ("redemption", 300, driver.user_id)
    assert transaction.metadata["redemption_id"] == "r-seeded-1"
    assert transaction.HasField("created_at")

    reply = await rest.get("/v1/merchants/me", headers=owner.headers)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["merchant"]["nova_balance"] == 300  # a JSON number
    assert body["transactions"][0]["type"] == "redemption" and body["transactions"][0]["amount"] == 300


async def test_my_merchant_without_nova_is_zero_and_paused_stores_still_answer(
    merchants: Merchants, admin: Person, owner: Person
) -> None:
    only = await merchants.create_store(admin, owner, status=pb.MERCHANT_STATUS_PAUSED)
    mine = await merchants.stub.GetMyMerchant(pb.GetMyMerchantRequest(), metadata=owner.auth)
    assert mine.merchant.id == only.id and mine.merchant.nova_balance == 0 and list(mine.transactions) == []


async def test_my_merchant_last_ten_transactions_newest_first(
    merchants: Merchants, shop: Store, driver: Person
) -> None:
    await merchants.give_nova(driver, 1000)
    for amount in range(1, 13):
        await redeem_in_ledger(merchants, driver, shop.id, amount)
    mine = await merchants.stub.GetMyMerchant(pb.GetMyMerchantRequest(), metadata=shop.owner.auth)
    assert [t.amount for t in mine.transactions] == list(range(12, 2, -1))
    assert mine.merchant.nova_balance == sum(range(1, 13))


async def test_my_merchant_refuses_people_without_a_store_and_drivers(
    merchants: Merchants, person: NewPerson, driver: Person, rest: httpx.AsyncClient
) -> None:
    storeless = await person("merchant")
    with pytest.raises(grpc.aio.AioRpcError) as none:
        await merchants.stub.GetMyMerchant(pb.GetMyMerchantRequest(), metadata=storeless.auth)
    assert none.value.code() == grpc.StatusCode.NOT_FOUND and error_reason(none.value) == "MERCHANT_NOT_FOUND"
    refused = await rest.get("/v1/merchants/me", headers=driver.headers)
    assert refused.status_code == 403, refused.text


async def test_my_merchant_with_the_ledger_down_is_ledger_unavailable(
    mesh: Mesh, merchants_engine: AsyncEngine, shop: Store
) -> None:
    """The portal core over a ledger address nothing listens on: the read fails as LEDGER_UNAVAILABLE."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{free_port()}")
    portal = Portal(
        reads=merchants_engine,
        ledger=MerchantNova(ledger_pb2_grpc.LedgerServiceStub(channel)),
        chargers=None,  # type: ignore[arg-type]  # not used by these reads
        settings=MerchantsSettings.from_env(Env(mesh.env)),
    )
    owner = Caller(user_id=shop.owner.user_id, roles=frozenset({"merchant"}))
    try:
        with pytest.raises(Unavailable) as down:
            await portal.my_store(owner.user_id)
        assert down.value.reason == "LEDGER_UNAVAILABLE"
        with pytest.raises(Unavailable) as billing:
            await portal.fee_period(shop.id, owner, "")
        assert billing.value.reason == "LEDGER_UNAVAILABLE"
    finally:
        await channel.close(None)


# --- summary --------------------------------------------------------------------------------------------------


async def test_summary_counts_completed_redemptions_in_rolling_windows(
    merchants: Merchants, shop: Store, merchants_engine: AsyncEngine, rest: httpx.AsyncClient
) -> None:
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    for driver_id, cents, age in (
        (a, 100, HOUR),
        (b, 200, 2 * DAY),
        (a, 250, 7 * DAY - HOUR),  # just inside the rolling 7-day window
        (c, 300, 7 * DAY + HOUR),  # just outside it, inside 30 days
        (b, 150, 30 * DAY - HOUR),
        (a, 400, 30 * DAY + HOUR),  # only lifetime
    ):
        await seed_redemption(merchants_engine, shop.id, driver_id, cents, age=age)
    # Neither a pending nor a failed redemption counts.
    await seed_redemption(merchants_engine, shop.id, c, 999, status=pb.REDEMPTION_STATUS_PENDING)
    await seed_redemption(merchants_engine, shop.id, str(uuid.uuid4()), 999, status=pb.REDEMPTION_STATUS_FAILED)

    summary = await merchants.stub.GetMerchantSummary(
        pb.GetMerchantSummaryRequest(merchant_id=shop.id), metadata=shop.owner.auth
    )
    assert summary == pb.GetMerchantSummaryResponse(
        total_redemptions=6,
        total_discount_cents=1400,
        unique_driver_count=3,
        last_7d_redemptions=3,
        last_30d_redemptions=5,
        avg_discount_cents=233,  # 1400 / 6 = 233.3
    )
    reply = await rest.get(f"/v1/merchants/{shop.id}/summary", headers=shop.owner.headers)
    assert reply.status_code == 200, reply.text
    assert reply.json()["total_redemptions"] == 6 and reply.json()["avg_discount_cents"] == 233


@pytest.mark.parametrize(("discounts", "average"), [((100, 101), 101), ((100, 100, 101), 100), ((1, 2), 2)])
async def test_the_average_discount_rounds_half_up(
    merchants: Merchants,
    admin: Person,
    owner: Person,
    merchants_engine: AsyncEngine,
    discounts: tuple[int, ...],
    average: int,
) -> None:
    shop = await merchants.create_store(admin, owner)
    for cents in discounts:
        await seed_redemption(merchants_engine, shop.id, str(uuid.uuid4()), cents)
    summary = await merchants.stub.GetMerchantSummary(
        pb.GetMerchantSummaryRequest(merchant_id=shop.id), metadata=owner.auth
    )
    assert summary.avg_discount_cents == average  # 100.5 → 101, never banker's 100


async def test_a_new_store_reports_zeros_everywhere(shop: Store, rest: httpx.AsyncClient) -> None:
    headers = shop.owner.headers
    summary = await rest.get(f"/v1/merchants/{shop.id}/summary", headers=headers)
    assert summary.status_code == 200, summary.text
    assert summary.json() == {
        "total_redemptions": 0,
        "total_discount_cents": 0,
        "unique_driver_count": 0,
        "last_7d_redemptions": 0,
        "last_30d_redemptions": 0,
        "avg_discount_cents": 0,
    }
    visits = (await rest.get(f"/v1/merchants/{shop.id}/visits", headers=headers)).json()
    assert (visits["visits"], visits["total"], visits["verified_count"], visits["period"]) == ([], 0, 0, "week")
    assert (visits["limit"], visits["offset"], visits["next_page_token"]) == (100, 0, "")
    billing = (await rest.get(f"/v1/merchants/{shop.id}/billing/summary", headers=headers)).json()
    assert (billing["nova_redeemed_cents"], billing["fee_cents"], billing["status"]) == (0, 0, "accruing")
    lines = (await rest.get(f"/v1/merchants/{shop.id}/shareables", headers=headers)).json()["lines"]
    assert len(lines) == 1 and "Nerava" in lines[0] and "Test Coffee" in lines[0]


# --- visits ---------------------------------------------------------------------------------------------------


async def test_visits_newest_first_with_periods_statuses_and_both_kinds_of_paging(
    merchants: Merchants, shop: Store, merchants_engine: AsyncEngine
) -> None:
    offer = await seed_offer(merchants_engine, shop.id, "Free cookie with any coffee")
    regular = str(uuid.uuid4())
    this_week = [
        await seed_visit(
            merchants_engine, shop, regular if i % 2 == 0 else str(uuid.uuid4()), age=(i + 1) * HOUR, offer_id=offer
        )
        for i in range(5)
    ]  # newest first
    ten_days = await seed_visit(merchants_engine, shop, regular, age=10 * DAY)
    forty_days = await seed_visit(merchants_engine, shop, regular, age=40 * DAY)
    running = await seed_active_session(
        merchants_engine, shop, str(uuid.uuid4()), age=30 * datetime.timedelta(minutes=1)
    )
    # An ACTIVE session past its window (not swept yet) is not running any more.
    await seed_active_session(merchants_engine, shop, str(uuid.uuid4()), age=2 * HOUR)

    async def visits(**fields: Any) -> pb.ListMerchantVisitsResponse:
        return await merchants.stub.ListMerchantVisits(
            pb.ListMerchantVisitsRequest(merchant_id=shop.id, **fields), metadata=shop.owner.auth
        )

    week = await visits()
    assert [v.id for v in week.visits] == [running, *this_week]
    assert (week.total, week.verified_count, week.period, week.limit, week.offset) == (6, 5, "week", 100, 0)
    assert [v.verification_status for v in week.visits] == ["ACTIVE"] + ["VERIFIED"] * 5
    first = week.visits[1]
    assert first.exclusive_id == offer and first.exclusive_title == "Free cookie with any coffee"
    assert first.duration_minutes == 12 and first.verification_code.startswith("AUS-TESTCO-")
    assert first.charger_id == shop.charger_id and first.location_name == "Merchant test charger"
    expected = hashlib.sha256(f"{shop.id}:{regular}".encode()).hexdigest()[:10]
    assert first.driver_id_anonymized == expected and regular not in first.driver_id_anonymized
    assert week.visits[3].driver_id_anonymized == expected  # stable for one driver
    assert week.visits[2].driver_id_anonymized != expected
    assert week.visits[0].verification_code == "" and week.visits[0].duration_minutes == 0

    month = await visits(period="month")
    assert [v.id for v in month.visits] == [running, *this_week, ten_days]
    everything = await visits(period="all", status="VERIFIED")
    assert [v.id for v in everything.visits] == [*this_week, ten_days, forty_days]
    assert (everything.total, everything.verified_count) == (7, 7)
    active = await visits(status="ACTIVE")
    assert [v.id for v in active.visits] == [running] and (active.total, active.verified_count) == (1, 0)
    partial = await visits(status="PARTIAL")
    assert (list(partial.visits), partial.total) == ([], 0)

    # Legacy paging: limit/offset.
    legacy = await visits(period="all", limit=3, offset=2)
    assert [v.id for v in legacy.visits] == this_week[1:4] and (legacy.limit, legacy.offset) == (3, 2)
    # Token paging: every visit exactly once, in order.
    seen: list[str] = []
    page_token = ""
    while True:
        page = await visits(period="all", page_size=3, page_token=page_token)
        assert page.total == 8
        seen.extend(v.id for v in page.visits)
        page_token = page.next_page_token
        if not page_token:
            break
    assert seen == [running, *this_week, ten_days, forty_days]
    # A token belongs to the listing that issued it.
    second = await visits(period="all", page_size=3)
    with pytest.raises(grpc.aio.AioRpcError) as other_listing:
        await visits(period="week", page_size=3, page_token=second.next_page_token)
    assert other_listing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(other_listing.value) == ["page_token"]


@pytest.mark.parametrize(
    ("query", "field"),
    [({"limit": "501"}, "limit"), ({"period": "year"}, "period"), ({"status": "LOST"}, "status")],
)
async def test_bad_visit_queries_name_the_field(
    shop: Store, rest: httpx.AsyncClient, query: dict[str, str], field: str
) -> None:
    reply = await rest.get(f"/v1/merchants/{shop.id}/visits", params=query, headers=shop.owner.headers)
    assert reply.status_code == 400, reply.text
    assert field in _fields(reply.json())


# --- billing --------------------------------------------------------------------------------------------------


async def test_billing_shows_the_month_fee_of_a_ledger_redemption(
    merchants: Merchants, shop: Store, driver: Person, rest: httpx.AsyncClient
) -> None:
    await merchants.give_nova(driver, 300)
    await redeem_in_ledger(merchants, driver, shop.id, 300)
    reply = await rest.get(f"/v1/merchants/{shop.id}/billing/summary", headers=shop.owner.headers)
    assert reply.status_code == 200, reply.text
    today = datetime.datetime.now(datetime.UTC).date()
    body = reply.json()
    assert body["period_start"] == today.replace(day=1).isoformat()
    assert body["period_end"].startswith(today.strftime("%Y-%m-"))
    assert (body["nova_redeemed_cents"], body["fee_cents"], body["status"]) == (300, 45, "accruing")

    earlier = await merchants.stub.GetBillingSummary(
        pb.GetBillingSummaryRequest(merchant_id=shop.id, month="2024-02"), metadata=shop.owner.auth
    )
    assert (earlier.period_start, earlier.period_end) == ("2024-02-01", "2024-02-29")
    assert (earlier.nova_redeemed_cents, earlier.fee_cents, earlier.status) == (0, 0, "accruing")


async def test_a_bad_month_is_refused_naming_it(shop: Store, rest: httpx.AsyncClient) -> None:
    reply = await rest.get(
        f"/v1/merchants/{shop.id}/billing/summary", params={"month": "2024-13"}, headers=shop.owner.headers
    )
    assert reply.status_code == 400, reply.text
    assert "month" in _fields(reply.json())


# --- shareables, share card, sign ------------------------------------------------------------------------------


async def test_shareable_lines_follow_the_redemptions(
    merchants: Merchants, shop: Store, merchants_engine: AsyncEngine
) -> None:
    async def lines() -> list[str]:
        reply = await merchants.stub.GetShareables(
            pb.GetShareablesRequest(merchant_id=shop.id), metadata=shop.owner.auth
        )
        return list(reply.lines)

    assert lines_welcome(await lines())
    await seed_redemption(merchants_engine, shop.id, str(uuid.uuid4()), 60, age=10 * DAY)
    assert await lines() == ["EV drivers are earning and spending Nova at Test Coffee."]  # under $1 in 30 days
    for _ in range(9):
        await seed_redemption(merchants_engine, shop.id, str(uuid.uuid4()), 250, age=HOUR)
    assert await lines() == [
        "This week we supported 9 EV-driver rewards with Nerava.",
        "EV drivers saved $23 at Test Coffee in the last 30 days.",  # 2310 ¢, whole dollars
        "10 Nerava rewards redeemed at Test Coffee so far — $23 in all.",
    ]


def lines_welcome(lines: list[str]) -> bool:
    return len(lines) == 1 and "Nerava" in lines[0] and "Test Coffee" in lines[0]


@pytest.mark.parametrize("seeded", [0, 3])
async def test_the_share_card_is_a_1200_by_630_png(
    shop: Store, merchants_engine: AsyncEngine, rest: httpx.AsyncClient, seeded: int
) -> None:
    for _ in range(seeded):
        await seed_redemption(merchants_engine, shop.id, str(uuid.uuid4()), 300, age=2 * DAY)
    for params in ({}, {"range": "30d"}):
        reply = await rest.get(f"/v1/merchants/{shop.id}/share-card.png", params=params, headers=shop.owner.headers)
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(reply.content))
        assert (image.format, image.size) == ("PNG", (1200, 630))


async def test_the_share_card_counts_only_its_window(
    merchants: Merchants, shop: Store, merchants_engine: AsyncEngine
) -> None:
    """Same figures, same bytes (the artwork is deterministic): a 1-day card ignores a 2-day-old redemption."""
    await seed_redemption(merchants_engine, shop.id, str(uuid.uuid4()), 300, age=2 * DAY)

    async def card(window: str) -> bytes:
        reply = await merchants.stub.GetShareCard(
            pb.GetShareCardRequest(merchant_id=shop.id, range=window), metadata=shop.owner.auth
        )
        assert reply.http_body.content_type == "image/png"
        return bytes(reply.http_body.data)

    # The card's QR code opens the same page as the printed sign: the driver app's checkout page, not the API.
    qr = await merchants.stub.GetCheckoutQr(pb.GetCheckoutQrRequest(merchant_id=shop.id), metadata=shop.owner.auth)
    assert "/v1/" not in qr.qr_url
    assert await card("1d") == render_share_card(ShareCardFigures("Test Coffee", 1, 0, 0, 0, qr.qr_url))
    assert await card("7d") == render_share_card(ShareCardFigures("Test Coffee", 7, 1, 300, 1, qr.qr_url))


async def test_a_bad_range_is_refused_naming_it(shop: Store, rest: httpx.AsyncClient) -> None:
    for value in ("0d", "366d", "7"):
        reply = await rest.get(
            f"/v1/merchants/{shop.id}/share-card.png", params={"range": value}, headers=shop.owner.headers
        )
        assert reply.status_code == 400, reply.text
        assert "range" in _fields(reply.json())


async def test_the_qr_sign_is_a_pdf_whose_code_opens_the_checkout_page(shop: Store, rest: httpx.AsyncClient) -> None:
    reply = await rest.get(f"/v1/merchants/{shop.id}/sign.pdf", headers=shop.owner.headers)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/pdf"
    assert reply.content.startswith(b"%PDF-")
    qr = await rest.get(f"/v1/merchants/{shop.id}/qr", headers=shop.owner.headers)
    token = qr.json()["qr_token"]
    # A phone's camera opens the driver app's checkout page (make run and the tests: the default), not JSON.
    assert scan_sign(reply.content) == qr.json()["qr_url"] == f"http://localhost:5173/checkout?token={token}"


# --- who may read the portal ------------------------------------------------------------------------------------

PORTAL_PATHS = ("summary", "visits", "billing/summary", "shareables", "share-card.png", "sign.pdf")


async def test_only_the_owner_and_admins_read_a_store_through_the_gateway(
    shop: Store, person: NewPerson, driver: Person, admin: Person, rest: httpx.AsyncClient
) -> None:
    stranger = await person("merchant")
    readonly = await person("admin_readonly")
    for path in PORTAL_PATHS:
        url = f"/v1/merchants/{shop.id}/{path}"
        hidden = await rest.get(url, headers=stranger.headers)
        assert hidden.status_code == 404, f"{path}: {hidden.text}"
        assert _reason(hidden.json()) == "MERCHANT_NOT_FOUND"
        refused = await rest.get(url, headers=driver.headers)
        assert refused.status_code == 403, f"{path}: {refused.text}"
        anonymous = await rest.get(url)
        assert anonymous.status_code == 401, f"{path}: {anonymous.text}"
        for reader in (admin, readonly, shop.owner):
            allowed = await rest.get(url, headers=reader.headers)
            assert allowed.status_code == 200, f"{path}: {allowed.text}"
    unknown = await rest.get("/v1/merchants/m_nosuchstore/summary", headers=admin.headers)
    assert unknown.status_code == 404 and _reason(unknown.json()) == "MERCHANT_NOT_FOUND"


# --- preview links ------------------------------------------------------------------------------------------------


async def test_a_preview_link_round_trip(
    merchants: Merchants, shop: Store, admin: Person, rest: httpx.AsyncClient, mesh: Mesh, merchants_engine: AsyncEngine
) -> None:
    await seed_visit(merchants_engine, shop, str(uuid.uuid4()), age=3 * DAY)
    await seed_visit(merchants_engine, shop, str(uuid.uuid4()), age=40 * DAY)
    before = int(datetime.datetime.now(datetime.UTC).timestamp())
    created = await rest.post(f"/v1/admin/merchants/{shop.id}/preview-links", json={}, headers=admin.headers)
    assert created.status_code == 200, created.text
    link = created.json()
    url = urllib.parse.urlsplit(link["preview_url"])
    query = dict(urllib.parse.parse_qsl(url.query))
    assert url.path == "/preview" and query["merchant_id"] == shop.id and query["sig"] == link["sig"]
    exp = int(query["exp"])
    assert before + 7 * 86400 <= exp <= before + 7 * 86400 + 5
    assert link["sig"] == domain.preview_signature(_preview_key(mesh), shop.id, exp)

    preview = await rest.get(
        "/v1/merchant/funnel/preview", params={"merchant_id": shop.id, "exp": exp, "sig": link["sig"]}
    )
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert (body["id"], body["name"], body["address"], body["category"]) == (
        shop.id,
        "Test Coffee",
        "1 Test Street",
        "coffee",
    )
    assert body["open_now"] is True
    # A store an admin created, not from Google: no listing to show, rather than a made-up one.
    assert (body["business_status"], body["rating"], body["user_rating_count"]) == ("", 0.0, 0)
    assert body["claimed"] is True
    assert body["verified_visit_count"] == 2
    charger = body["nearest_charger"]
    assert (charger["name"], charger["network"]) == ("Merchant test charger", "EVgo")
    assert charger["distance_m"] > 80 and charger["walk_minutes"] >= 1
    assert body["expires_at"] == datetime.datetime.fromtimestamp(exp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_tampered_or_expired_links_are_refused_before_the_merchant_is_looked_up(
    shop: Store, rest: httpx.AsyncClient, mesh: Mesh
) -> None:
    key = _preview_key(mesh)
    exp = int(datetime.datetime.now(datetime.UTC).timestamp()) + 3600
    good = domain.preview_signature(key, shop.id, exp)
    tampered = ("0" if good[0] != "0" else "1") + good[1:]
    past = exp - 7200
    unknown = "m_nosuchstore"
    cases: tuple[tuple[str, dict[str, str | int]], ...] = (
        (shop.id, {"exp": exp, "sig": tampered}),
        (shop.id, {"exp": exp + 1, "sig": good}),  # the signature covers the expiry
        (shop.id, {"exp": past, "sig": domain.preview_signature(key, shop.id, past)}),  # expired
        (unknown, {"exp": exp, "sig": tampered}),  # an unknown id is not confirmed without a valid link
        (shop.id, {"exp": exp, "sig": domain.preview_signature(b"another key", shop.id, exp)}),
    )
    for merchant_id, params in cases:
        reply = await rest.get("/v1/merchant/funnel/preview", params={"merchant_id": merchant_id, **params})
        assert reply.status_code == 403, reply.text
        assert _reason(reply.json()) == "PREVIEW_LINK_INVALID"
    missing = await rest.get(
        "/v1/merchant/funnel/preview",
        params={"merchant_id": unknown, "exp": exp, "sig": domain.preview_signature(key, unknown, exp)},
    )
    assert missing.status_code == 404 and _reason(missing.json()) == "MERCHANT_NOT_FOUND"


async def test_only_admins_create_preview_links(
    merchants: Merchants, shop: Store, admin: Person, rest: httpx.AsyncClient
) -> None:
    refused = await rest.post(f"/v1/admin/merchants/{shop.id}/preview-links", json={}, headers=shop.owner.headers)
    assert refused.status_code == 403, refused.text
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await merchants.stub.CreatePreviewLink(
            pb.CreatePreviewLinkRequest(merchant_id="m_nosuchstore"), metadata=admin.auth
        )
    assert error_reason(unknown.value) == "MERCHANT_NOT_FOUND"
