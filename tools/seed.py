"""The demo world of `make run`: the four demo identities (dev login code 000000) and the demo chargers."""

from __future__ import annotations

import asyncio

from nerava.sessions.v1 import sessions_pb2

from services.accounts.seed import ensure_phone_user
from services.common.db import create_engine
from services.sessions import chargers

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


async def seed(database_url: str) -> None:
    engine = create_engine(database_url, "accounts")
    try:
        for phone, roles, name in DEMO_USERS:
            await ensure_phone_user(engine, phone, roles, name=name)
    finally:
        await engine.dispose()
    sessions = create_engine(database_url, "sessions")
    try:
        await chargers.import_chargers(sessions, "manual", DEMO_CHARGERS)
    finally:
        await sessions.dispose()


if __name__ == "__main__":
    import os

    asyncio.run(seed(os.environ["DATABASE_URL"]))
