"""The demo world of `make run`: the four demo identities (dev login code 000000), the demo chargers, and the
demo merchants beside them (owned by the demo merchant owner, with the QR tokens the README lists)."""

from __future__ import annotations

import asyncio
import datetime
import uuid

import sqlalchemy as sa
from nerava.merchants.v1 import merchants_pb2
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from services.accounts.seed import ensure_phone_user
from services.common.config import Env
from services.common.db import create_engine
from services.merchants import domain as merchants_domain
from services.merchants import store as merchants_store
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
    chargers.ChargerRecord(
        external_id="demo-austin-congress",
        name="Tesla Supercharger - South Congress",
        lat=30.2649,
        lng=-97.7447,
        network_name="Tesla",
        power_kw=250.0,
        num_evse=12,
        connector_types=("NACS",),
        pricing_per_kwh_cents=45,
        address="1201 S Congress Ave",
        city="Austin",
        state="TX",
        zone_id="austin-downtown",
    ),
    chargers.ChargerRecord(
        external_id="demo-austin-domain",
        name="Tesla Supercharger - The Domain",
        lat=30.4021,
        lng=-97.7253,
        network_name="Tesla",
        power_kw=250.0,
        num_evse=16,
        connector_types=("NACS",),
        pricing_per_kwh_cents=43,
        address="11410 Century Oaks Terrace",
        city="Austin",
        state="TX",
        zone_id="austin-north",
    ),
    chargers.ChargerRecord(
        external_id="demo-austin-airport",
        name="EVgo - Austin-Bergstrom Airport",
        lat=30.2022,
        lng=-97.6664,
        network_name="EVgo",
        power_kw=350.0,
        num_evse=6,
        connector_types=("CCS1", "CHADEMO"),
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

# The demo merchants: (id, name, category, lat, lng, charger id, QR token, custom perk ¢, exclusive offer title).
# The tokens are fixed so the README can list them — a demo convenience only; real stores get 32 random bytes.
DEMO_MERCHANTS = (
    (
        "m_democoffee01",
        "South Congress Coffee (demo)",
        "coffee",
        30.2655,
        -97.7452,
        "demo-austin-congress",
        "demo-qr-south-congress-coffee-0000000000000001",
        0,
        "Free pastry with any coffee while you charge",
    ),
    (
        "m_demotacos001",
        "SoCo Tacos (demo)",
        "restaurant",
        30.2641,
        -97.7439,
        "demo-austin-congress",
        "demo-qr-soco-tacos-00000000000000000000000002",
        250,
        "Free chips and salsa while you charge",
    ),
    (
        "m_demobooks001",
        "Domain Books (demo)",
        "books",
        30.4026,
        -97.7262,
        "demo-austin-domain",
        "demo-qr-domain-books-000000000000000000000003",
        0,
        "",
    ),
)
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
    merchants = create_engine(database_url, "merchants")
    try:
        await _demo_merchants(merchants, str(users[2].public_id))
    finally:
        await merchants.dispose()


async def _demo_merchants(merchants: AsyncEngine, owner_id: str) -> None:
    """The demo stores, their charger links (walks estimated from the distance) and offers; idempotent."""
    chargers_by_id = {c.external_id: c for c in DEMO_CHARGERS}
    m, links, offers = merchants_store.merchants, merchants_store.charger_links, merchants_store.exclusive_offers
    async with merchants.begin() as conn:
        for index, (merchant_id, name, category, lat, lng, charger_id, token, perk, offer) in enumerate(
            DEMO_MERCHANTS, start=1
        ):
            await conn.execute(
                pg_insert(m)
                .values(
                    id=merchant_id,
                    name=name,
                    category=category,
                    lat=lat,
                    lng=lng,
                    address="Austin, TX",
                    phone="",
                    website="",
                    time_zone="America/Chicago",
                    opening_periods=[],
                    custom_perk_cents=perk,
                    recommended_perk_cents=0,
                    perk_label="",
                    status=merchants_pb2.MERCHANT_STATUS_ACTIVE,
                    owner_user_id=owner_id,
                    zone_slug="austin-downtown",
                    logo_url="",
                    photo_urls=[],
                    short_code=f"DEMO{index:02d}",
                    qr_token=token,
                )
                .on_conflict_do_nothing()
            )
            charger = chargers_by_id[charger_id]
            walk_m, walk_s = merchants_domain.walk_estimate((charger.lat, charger.lng), (lat, lng))
            await conn.execute(
                pg_insert(links)
                .values(
                    merchant_id=merchant_id,
                    charger_id=charger_id,
                    charger_name=charger.name,
                    charger_address=charger.address,
                    charger_network=charger.network_name,
                    charger_lat=charger.lat,
                    charger_lng=charger.lng,
                    walk_distance_m=walk_m,
                    walk_time_s=walk_s,
                    is_primary=index != 2,  # one primary per demo charger
                )
                .on_conflict_do_nothing()
            )
            if offer:
                await conn.execute(
                    pg_insert(offers)
                    .values(
                        id=f"ex_{merchant_id}",
                        merchant_id=merchant_id,
                        title=offer,
                        description="",
                        daily_cap=0,
                        session_cap=0,
                        eligibility="charging_only",
                        is_active=True,
                    )
                    .on_conflict_do_nothing()
                )


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
        cipher = TokenCipher.from_config(SessionsSettings.from_env(Env.development()).vehicle_token_keys.value)
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
