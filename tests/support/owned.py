"""Real resources that belong to someone, one maker per kind of owned resource the access tables declare
(services.common.interceptors.Owned.resource): a campaign of a sponsor, a store of a merchant, a driver's charging
session, exclusive session and redemption. Each is made through the services' own RPCs where they make it, and as
a row of its own table where only a provider's telemetry would (a charging session)."""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from nerava.incentives.v1 import incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2_grpc
from nerava.merchants.v1 import merchants_pb2 as merchants_pb
from nerava.merchants.v1 import merchants_pb2_grpc
from nerava.sessions.v1 import sessions_pb2 as sessions_pb
from sqlalchemy.ext.asyncio import AsyncEngine

from services.sessions import store as sessions_store
from tests.incentives.helpers import campaign_request
from tests.merchants.helpers import Merchants, Store, offset
from tests.support.mesh import Mesh
from tests.support.people import NewPerson, Person

DRIVER, SPONSOR, MERCHANT, ADMIN = "driver", "sponsor", "merchant", "admin"


@dataclasses.dataclass(frozen=True)
class Resource:
    """One owned resource: its id and its owners by role (a redemption has two: its driver and the store's)."""

    id: str
    owners: dict[str, Person]


class Owners:
    """Makes each kind of owned resource for a new owner (or owners) of its own."""

    def __init__(self, mesh: Mesh, person: NewPerson, sessions_engine: AsyncEngine) -> None:
        self._person = person
        self._sessions_engine = sessions_engine
        self._incentives = incentives_pb2_grpc.IncentivesServiceStub(mesh.channels["incentives"])
        self._merchants = Merchants(
            merchants_pb2_grpc.MerchantsServiceStub(mesh.channels["merchants"]),
            ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"]),
            sessions_engine,
        )
        self.makers: dict[str, Callable[[], Awaitable[Resource]]] = {
            "campaign": self.campaign,
            "store": self.store,
            "charging session": self.charging_session,
            "exclusive session": self.exclusive_session,
            "redemption": self.redemption,
        }

    async def campaign(self) -> Resource:
        sponsor = await self._person(SPONSOR)
        reply = await self._incentives.CreateCampaign(campaign_request(), metadata=sponsor.auth)
        return Resource(reply.campaign.id, {SPONSOR: sponsor})

    async def _store(self) -> Store:
        return await self._merchants.create_store(await self._person(ADMIN), await self._person(MERCHANT))

    async def store(self) -> Resource:
        shop = await self._store()
        return Resource(shop.id, {MERCHANT: shop.owner})

    async def charging_session(self) -> Resource:
        driver = await self._person(DRIVER)
        session_id = uuid.uuid4()
        started = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=20)
        async with self._sessions_engine.begin() as conn:
            await conn.execute(
                sa.insert(sessions_store.charging_sessions).values(
                    id=session_id,
                    driver_id=driver.user_id,
                    vehicle_id="owned-vehicle",
                    source=sessions_pb.SESSION_SOURCE_TESLA_API,
                    session_start=started,
                    last_telemetry_at=started,
                )
            )
        return Resource(str(session_id), {DRIVER: driver})

    async def exclusive_session(self) -> Resource:
        shop, driver = await self._store(), await self._person(DRIVER)
        lat, lng = offset(shop.charger_lat, shop.charger_lng, east_m=10)
        started = await self._merchants.stub.ActivateExclusive(
            merchants_pb.ActivateExclusiveRequest(merchant_id=shop.id, charger_id=shop.charger_id, lat=lat, lng=lng),
            metadata=driver.auth,
        )
        return Resource(started.exclusive_session.id, {DRIVER: driver})

    async def driver_with_nova(self) -> Person:
        """A driver whose wallet holds something (an admin grant of Nova)."""
        driver = await self._person(DRIVER)
        await self._merchants.give_nova(driver, 500)
        return driver

    async def redemption(self) -> Resource:
        shop, driver = await self._store(), await self._person(DRIVER)
        await self._merchants.give_nova(driver, 500)
        redeemed = await self._merchants.stub.RedeemAtCheckout(
            merchants_pb.RedeemAtCheckoutRequest(
                qr_token=shop.qr_token, order_total_cents=1000, idempotency_key=str(uuid.uuid4())
            ),
            metadata=driver.auth,
        )
        return Resource(redeemed.redemption_id, {DRIVER: driver, MERCHANT: shop.owner})
