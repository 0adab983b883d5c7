"""The demo world of `make run`: the four demo identities (dev login code 000000) and the demo chargers."""

from __future__ import annotations

import asyncio
import datetime
import uuid

import sqlalchemy as sa
from nerava.sessions.v1 import sessions_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

from services.accounts.seed import ensure_phone_user
from services.common.config import Env
from services.common.db import create_engine
from services.sessions import chargers, store
from services.sessions.config import SessionsSettings
from services.sessions.tokens import TokenCipher

DEMO_USERS = (
    ("+15125550100", ["driver"], "Demo Driver"),
    ("+15125550101", ["sponsor"], "Demo Sponsor"),
    ("+15125550102", ["merchant"], "Demo Merchant Owner"),
    ("+15125550103", ["admin"], "Demo Admin"),
)

# The demo chargers: tools/demo_world.py's campaigns pay at these ids and places. Manual records keep their
# external id as the charger id.
DEMO_CHARGERS = (
    sessions_pb2.ChargerRecord(
        external_id="demo-austin-congress",
        name="Tesla Supercharger - South Congress",
        lat=30.2649,
        lng=-97.7447,
        network_name="Tesla",
        power_kw=250.0,
        num_evse=12,
        connector_types=["NACS"],
        pricing_per_kwh_cents=45,
        address="1201 S Congress Ave",
        city="Austin",
        state="TX",
        zone_id="austin-downtown",
    ),
    sessions_pb2.ChargerRecord(
        external_id="demo-austin-domain",
        name="Tesla Supercharger - The Domain",
        lat=30.4021,
        lng=-97.7253,
        network_name="Tesla",
        power_kw=250.0,
        num_evse=16,
        connector_types=["NACS"],
        pricing_per_kwh_cents=43,
        address="11410 Century Oaks Terrace",
        city="Austin",
        state="TX",
        zone_id="austin-north",
    ),
    sessions_pb2.ChargerRecord(
        external_id="demo-austin-airport",
        name="EVgo - Austin-Bergstrom Airport",
        lat=30.2022,
        lng=-97.6664,
        network_name="EVgo",
        power_kw=350.0,
        num_evse=6,
        connector_types=["CCS1", "CHADEMO"],
        pricing_per_kwh_cents=56,
        address="3600 Presidential Blvd",
        city="Austin",
        state="TX",
        zone_id="austin-airport",
    ),
)


# The demo driver's car, shared with Nerava through Smartcar: `make run`'s fake fleet simulates it and pushes its
# signed webhooks, so the demo driver's sessions open and close on their own.
DEMO_SMARTCAR_VEHICLE = "demo-smartcar-car"
DEMO_DRIVER_EMAIL = "demo-driver@nerava.dev"


async def seed(database_url: str) -> None:
    engine = create_engine(database_url, "accounts")
    try:
        users = [await ensure_phone_user(engine, phone, roles, name=name) for phone, roles, name in DEMO_USERS]
    finally:
        await engine.dispose()
    sessions = create_engine(database_url, "sessions")
    try:
        await chargers.import_chargers(sessions, "manual", DEMO_CHARGERS)
        await _link_demo_car(sessions, str(users[0].public_id))
    finally:
        await sessions.dispose()


async def _link_demo_car(sessions: AsyncEngine, driver_id: str) -> None:
    """The demo driver's Smartcar connection (once). Webhooks need no token; placeholders are stored encrypted."""
    v = store.vehicle_connections
    async with sessions.begin() as conn:
        linked = (
            await conn.execute(
                sa.select(v.c.id).where(v.c.driver_id == driver_id, v.c.provider == "smartcar", v.c.active)
            )
        ).first()
        if linked is not None:
            return
        connection_id = uuid.uuid4()
        cipher = TokenCipher.from_config(SessionsSettings.from_env(Env({})).vehicle_token_keys.value)
        await conn.execute(
            sa.insert(v).values(
                id=connection_id,
                driver_id=driver_id,
                provider="smartcar",
                vehicle_id=DEMO_SMARTCAR_VEHICLE,
                vehicles=[{"id": DEMO_SMARTCAR_VEHICLE}],
                access_token=cipher.encrypt("demo", str(connection_id)),
                refresh_token=cipher.encrypt("demo", str(connection_id)),
                access_expires_at=datetime.datetime.now(datetime.UTC),
            )
        )


if __name__ == "__main__":
    import os

    asyncio.run(seed(os.environ["DATABASE_URL"]))
