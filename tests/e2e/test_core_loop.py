"""The core loop of the product, end to end through Envoy, as a driver's app and a merchant's portal drive it:
sign in → the car charges and the poll opens a session → unplugged, the session ends → the Nova campaign grants →
the wallet and its timeline show the Nova → the driver spends it at a merchant by QR → the wallet, the merchant's
summary and the ledger invariants agree."""

from __future__ import annotations

import uuid

import httpx
import redis.asyncio as redis
import sqlalchemy as sa
from nerava.incentives.v1 import incentives_pb2 as incentives_pb
from nerava.incentives.v1 import incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2_grpc
from nerava.merchants.v1 import merchants_pb2_grpc

from fakes.fleet import FakeFleet
from fakes.twilio_verify import FakeTwilioVerify
from services.common.db import create_engine
from services.ledger.invariants import violations
from services.sessions import store as sessions_store
from tests.incentives.helpers import Incentives
from tests.merchants.helpers import Merchants, new_charger
from tests.sessions.helpers import driver_with_tesla, next_window, north_of
from tests.support.eventually import eventually
from tests.support.mesh import Mesh
from tests.support.people import NewPerson

NOVA_REWARD = 400


async def test_charge_earn_nova_and_spend_it_at_a_merchant(
    mesh: Mesh,
    twilio: FakeTwilioVerify,
    fleet: FakeFleet,
    person: NewPerson,
    rest: httpx.AsyncClient,
    redis_url: str,
    database_url: str,
) -> None:
    sessions_engine = create_engine(database_url, "sessions")
    cache = redis.Redis.from_url(redis_url)
    try:
        # The world: a charger, a sponsor's funded Nova campaign there, a merchant beside it.
        charger = await new_charger(sessions_engine)
        charger_id, lat, lng = charger
        sponsor, admin, owner = await person("sponsor"), await person("admin"), await person("merchant")
        incentives = Incentives(
            incentives_pb2_grpc.IncentivesServiceStub(mesh.channels["incentives"]),
            ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"]),
        )
        incentives.charger = charger_id
        await incentives.active(sponsor, reward_kind=incentives_pb.REWARD_KIND_NOVA, cost_per_session_cents=NOVA_REWARD)
        merchants = Merchants(
            merchants_pb2_grpc.MerchantsServiceStub(mesh.channels["merchants"]),
            ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"]),
            sessions_engine,
        )
        shop = await merchants.create_store(admin, owner, charger=charger)

        # 1. The driver signs in (their Tesla is linked) and the car charges at the charger: the poll opens it.
        driver, car = await driver_with_tesla(mesh, twilio, fleet, sessions_engine)
        auth = driver.headers
        car.move(*north_of(lat, lng, 30))
        car.plug_in(*north_of(lat, lng, 30), power_kw=11.0)
        await next_window(cache, driver)
        opened = (await rest.post("/v1/charging-sessions/poll", json={}, headers=auth)).json()
        assert opened["session_active"] is True, opened
        active = (await rest.get("/v1/charging-sessions/active", headers=auth)).json()
        assert active["session"]["charger_id"] == charger_id, active
        # Twenty minutes of charging (the test moves the session's start back instead of waiting).
        fleet.advance(minutes=20)
        s = sessions_store.charging_sessions
        async with sessions_engine.begin() as conn:
            await conn.execute(
                sa.update(s)
                .where(s.c.id == uuid.UUID(opened["session_id"]))
                .values(session_start=s.c.session_start - sa.text("interval '20 minutes'"))
            )

        # 2. Unplugged: the session ends and the Nova campaign grants.
        car.unplug()
        await next_window(cache, driver)
        ended = (await rest.post("/v1/charging-sessions/poll", json={}, headers=auth)).json()
        assert ended["session_ended"] is True, ended

        async def rewarded() -> None:
            balance = (await rest.get("/v1/wallet/balance", headers=auth)).json()
            assert int(balance.get("nova_balance", 0)) == NOVA_REWARD, balance

        await eventually(rewarded)
        timeline = (await rest.get("/v1/wallet/timeline", headers=auth)).json()
        assert [item["type"] for item in timeline] == ["EARNED"], timeline

        # 3. At the merchant: scan the QR, redeem on a $12.00 order — the default 300 ¢ perk applies.
        scanned = (await rest.get(f"/v1/checkout/qr/{shop.qr_token}", headers=auth)).json()
        assert scanned["driver"] == {"nova_balance": NOVA_REWARD, "max_discount_cents": 300}
        redeemed = await rest.post(
            "/v1/checkout/redeem",
            json={"qr_token": shop.qr_token, "order_total_cents": 1200, "idempotency_key": str(uuid.uuid4())},
            headers=auth,
        )
        assert redeemed.status_code == 200, redeemed.text
        assert (redeemed.json()["discount_cents"], redeemed.json()["remaining_nova_cents"]) == (300, 100)

        # 4. Everyone agrees: the wallet, its timeline, the merchant's summary, the ledger.
        balance = (await rest.get("/v1/wallet/balance", headers=auth)).json()
        assert int(balance["nova_balance"]) == NOVA_REWARD - 300
        timeline = (await rest.get("/v1/wallet/timeline", headers=auth)).json()
        assert [item["type"] for item in timeline] == ["SPENT", "EARNED"], timeline
        summary = await rest.get(f"/v1/merchants/{shop.id}/summary", headers=owner.headers)
        assert summary.status_code == 200, summary.text
        assert (summary.json()["total_redemptions"], summary.json()["total_discount_cents"]) == (1, 300)
        billing = (await rest.get(f"/v1/merchants/{shop.id}/billing/summary", headers=owner.headers)).json()
        assert (billing["nova_redeemed_cents"], billing["fee_cents"]) == (300, 45)
        ledger_engine = create_engine(database_url, "ledger")
        try:
            assert await violations(ledger_engine) == []
        finally:
            await ledger_engine.dispose()
    finally:
        await cache.aclose()
        await sessions_engine.dispose()
