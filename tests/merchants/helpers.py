"""Building blocks for merchants tests: a store owned by a merchant user, linked to a charger of its own, and
Nova for drivers."""

from __future__ import annotations

import dataclasses
import math
import os
import random
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from nerava.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from nerava.merchants.v1 import merchants_pb2 as pb
from nerava.merchants.v1 import merchants_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.sessions import store as sessions_store
from tests.support.people import Person
from tests.support.rpc import as_service


@dataclasses.dataclass
class Store:
    """A merchant store as a test sees it."""

    merchant: pb.Merchant
    owner: Person
    qr_token: str
    charger_id: str
    charger_lat: float
    charger_lng: float

    @property
    def id(self) -> str:
        return self.merchant.id


def offset(lat: float, lng: float, north_m: float = 0.0, east_m: float = 0.0) -> tuple[float, float]:
    """A point `north_m` north and `east_m` east of (lat, lng) on the sphere the services use."""
    radius = 6_371_000.0
    new_lat = lat + math.degrees(north_m / radius)
    new_lng = lng + math.degrees(east_m / (radius * math.cos(math.radians(lat))))
    return new_lat, new_lng


async def new_charger(sessions_engine: AsyncEngine) -> tuple[str, float, float]:
    """(id, lat, lng) of a charger somewhere no other test puts one."""
    lat, lng = random.uniform(-50, -30), random.uniform(-170, -120)
    charger_id = f"mtest-{uuid.uuid4().hex[:10]}"
    async with sessions_engine.begin() as conn:
        await conn.execute(
            sa.insert(sessions_store.chargers).values(
                id=charger_id,
                source="manual",
                external_id=charger_id,
                name="Merchant test charger",
                lat=lat,
                lng=lng,
                network_name="EVgo",
                zone_id="test-zone",
            )
        )
    return charger_id, lat, lng


class Merchants:
    """The MerchantsService and the ledger as the tests drive them."""

    def __init__(
        self,
        stub: merchants_pb2_grpc.MerchantsServiceAsyncStub,
        ledger: ledger_pb2_grpc.LedgerServiceAsyncStub,
        sessions_engine: AsyncEngine,
    ) -> None:
        self.stub = stub
        self.ledger = ledger
        self.sessions_engine = sessions_engine

    async def create_store(
        self, admin: Person, owner: Person, charger: tuple[str, float, float] | None = None, **overrides: Any
    ) -> Store:
        """An ACTIVE store owned by `owner`, 80 m east of a charger it is linked to (primary): the given one, else
        a new one."""
        charger_id, lat, lng = charger or await new_charger(self.sessions_engine)
        m_lat, m_lng = offset(lat, lng, east_m=80)
        fields: dict[str, Any] = {
            "name": "Test Coffee",
            "category": "coffee",
            "lat": m_lat,
            "lng": m_lng,
            "address": "1 Test Street",
            "owner_user_id": owner.user_id,
            "zone_slug": "austin-downtown",
        }
        fields.update(overrides)
        created = await self.stub.CreateMerchant(
            pb.CreateMerchantRequest(request_id=str(uuid.uuid4()), merchant=pb.Merchant(**fields)),
            metadata=admin.auth,
        )
        await self.stub.LinkCharger(
            pb.LinkChargerRequest(merchant_id=created.merchant.id, charger_id=charger_id, is_primary=True),
            metadata=admin.auth,
        )
        return Store(created.merchant, owner, created.qr_token, charger_id, lat, lng)

    async def give_nova(self, driver: Person, amount: int) -> None:
        """Nova for a driver, as an admin grant from the platform's issuance account."""
        await self.ledger.PostTransfer(
            ledger_pb2.PostTransferRequest(
                idempotency_key=uuid.uuid4().hex,
                kind=ledger_pb2.TRANSFER_KIND_ADMIN_GRANT,
                currency=ledger_pb2.CURRENCY_NOVA_POINTS,
                amount=amount,
                from_account=ledger_pb2.AccountRef(
                    type=ledger_pb2.ACCOUNT_TYPE_EXTERNAL_FUNDING,
                    owner_id="nova-issuance",
                    currency=ledger_pb2.CURRENCY_NOVA_POINTS,
                ),
                to_account=driver_nova(driver.user_id),
            ),
            metadata=as_service("incentives"),
        )

    async def nova(self, driver: Person) -> int:
        reply = await self.ledger.GetAccount(
            ledger_pb2.GetAccountRequest(account=driver_nova(driver.user_id)), metadata=as_service("merchants")
        )
        return reply.account.balance


def driver_nova(driver_id: str) -> ledger_pb2.AccountRef:
    return ledger_pb2.AccountRef(
        type=ledger_pb2.ACCOUNT_TYPE_DRIVER_NOVA, owner_id=driver_id, currency=ledger_pb2.CURRENCY_NOVA_POINTS
    )


def scan_sign(pdf: bytes) -> str:
    """What a phone reads from the printed sign: the PDF rasterized by poppler, its QR code read by zbar
    (Debian's poppler-utils and zbar-tools; `.ci/run` installs them, elsewhere the test is skipped)."""
    if shutil.which("pdftoppm") is None or shutil.which("zbarimg") is None:
        if os.environ.get("CI"):
            pytest.fail("pdftoppm and zbarimg are missing: .ci/run installs poppler-utils and zbar-tools")
        pytest.skip("pdftoppm (poppler-utils) and zbarimg (zbar-tools) are not both installed")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory, "sign.pdf")
        path.write_bytes(pdf)
        subprocess.run(["pdftoppm", "-r", "100", "-gray", "-png", str(path), str(Path(directory, "page"))], check=True)
        (png,) = Path(directory).glob("page*.png")
        scanned = subprocess.run(["zbarimg", "--quiet", "--raw", str(png)], capture_output=True, text=True, check=True)
    return scanned.stdout.strip()
