"""The merchant portal's and the sponsor console's calls replayed through Envoy, as the apps send them, asserting the
keys and JSON types the apps read (rows of ../shared/reference/original-api.md; docs/app-contract.md maps every
difference). Sign-in is not replayed here: the users are made by the test support, as for the driver app's replay.
"""

from __future__ import annotations

import datetime
import secrets
import urllib.parse
import uuid
from typing import Any

import httpx
import sqlalchemy as sa
from nerava.ledger.v1 import ledger_pb2_grpc
from nerava.merchants.v1 import merchants_pb2_grpc

from fakes.places import FakePlaces
from services.common.db import create_engine
from services.sessions import store as sessions_store
from tests.merchants.helpers import Merchants, new_charger
from tests.support.mesh import Mesh
from tests.support.people import NewPerson

JsonObject = dict[str, Any]
CONSOLE_HEADERS = {"Content-Type": "application/json"}  # the apps' fetch wrappers send it on every call


def _types(body: JsonObject, expected: dict[str, type | tuple[type, ...]]) -> None:
    """Each key the app reads is present with its JSON type (int is not a string, a float may print as an int)."""
    for key, kind in expected.items():
        assert key in body, (key, body)
        value = body[key]
        if kind is float:
            assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        elif kind is int:
            assert isinstance(value, int) and not isinstance(value, bool), (key, value)
        else:
            assert isinstance(value, kind), (key, value)


CAMPAIGN_KEYS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "sponsor_name": str,
    "name": str,
    "description": str,
    "campaign_type": str,
    "status": str,
    "priority": int,
    "budget_cents": int,
    "spent_cents": int,
    "cost_per_session_cents": int,
    "sessions_granted": int,
    "start_date": str,
    "rules": dict,
    "funding_status": str,
    "gross_funding_cents": int,
    "platform_fee_cents": int,
    "created_at": str,
    "updated_at": str,
}


async def _seed_sessions(engine: Any, charger_id: str, drivers: list[str], minutes: int, kwh: float = 20.0) -> None:
    """Ended charging sessions at the charger two days ago, one per driver entry (a driver may repeat)."""
    ended = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2)
    async with engine.begin() as conn:
        for driver_id in drivers:
            await conn.execute(
                sa.insert(sessions_store.charging_sessions).values(
                    id=uuid.uuid4(),
                    driver_id=driver_id,
                    vehicle_id=f"v-{driver_id}",
                    source=1,
                    session_start=ended - datetime.timedelta(minutes=minutes),
                    session_end=ended,
                    duration_minutes=minutes,
                    charger_id=charger_id,
                    ended_reason=1,
                    kwh_delivered=kwh,
                    last_telemetry_at=ended,
                )
            )


async def test_the_consoles_calls(mesh: Mesh, person: NewPerson, rest: httpx.AsyncClient, database_url: str) -> None:
    sessions_engine = create_engine(database_url, "sessions")
    try:
        sponsor, admin = await person("sponsor"), await person("admin")
        console = {**sponsor.headers, **CONSOLE_HEADERS}
        charger_id, _, _ = await new_charger(sessions_engine)
        quiet_charger, _, _ = await new_charger(sessions_engine)
        await _seed_sessions(sessions_engine, charger_id, ["d-1", "d-2", "d-1"], minutes=40)

        # C2: the create form as the console posts it (no reward kind, no time zone, days, nulls).
        start = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=2)).date().isoformat()
        body = {
            "sponsor_name": "Replay Sponsor",
            "sponsor_email": None,
            "name": "Replay campaign",
            "description": "Charge here",
            "campaign_type": "utilization_boost",
            "budget_cents": 10_000,
            "cost_per_session_cents": 150,
            "max_sessions": None,
            "start_date": start,
            "end_date": None,
            "rules": {"charger_ids": [charger_id], "min_duration_minutes": 15, "time_start": None},
            "caps": {"per_day": None},
        }
        created = await rest.post("/v1/campaigns/", json=body, headers=console)
        assert created.status_code == 200, created.text
        campaign = created.json()["campaign"]
        _types(campaign, CAMPAIGN_KEYS)
        _types(campaign["rules"], {"charger_ids": list, "min_duration_minutes": int})
        campaign_id = campaign["id"]
        base = f"/v1/campaigns/{campaign_id}"

        # C1 with the console's status word and trailing slash; C3.
        listed = (await rest.get("/v1/campaigns/?status=draft&limit=50&offset=0", headers=console)).json()
        _types(listed, {"campaigns": list, "count": int})
        assert [c["id"] for c in listed["campaigns"]] == [campaign_id]
        _types(listed["campaigns"][0], CAMPAIGN_KEYS)
        _types((await rest.get(base, headers=console)).json()["campaign"], CAMPAIGN_KEYS)

        # C4: an edit, then a clear with null.
        end = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=40)).date().isoformat()
        edited = (await rest.put(base, json={"end_date": end, "max_sessions": 20}, headers=console)).json()["campaign"]
        _types(edited, {**CAMPAIGN_KEYS, "end_date": str, "max_sessions": int})
        cleared = (await rest.put(base, json={"end_date": None}, headers=console)).json()["campaign"]
        assert "end_date" not in cleared and cleared["max_sessions"] == 20

        # C6: the Stripe checkout the console redirects to.
        checkout = await rest.post(f"{base}/checkout", headers=console)
        assert checkout.status_code == 200, checkout.text
        _types(checkout.json(), {"checkout_url": str, "session_id": str})

        # C10, C9 before any grant.
        budget = (await rest.get(f"{base}/budget", headers=console)).json()
        _types(
            budget,
            {
                "budget_cents": int,
                "spent_cents": int,
                "remaining_cents": int,
                "pct_used": float,
                "sessions_granted": int,
            },
        )
        grants = (await rest.get(f"{base}/grants?limit=50&offset=0", headers=console)).json()
        _types(grants, {"grants": list, "total": int, "count": int})

        # C5, C7, C8: a campaign funded by the platform (the pending Stripe checkout is the other one's).
        second = (await rest.post("/v1/campaigns/", json={**body, "name": "Second"}, headers=console)).json()
        second_id = second["campaign"]["id"]
        funded = await rest.post(
            f"/v1/admin/campaigns/{second_id}:fundFromPlatform",
            json={"reason": "replay", "request_id": str(uuid.uuid4())},
            headers=admin.headers,
        )
        assert funded.status_code == 200, funded.text
        for step, status in (("activate", "CAMPAIGN_STATUS_ACTIVE"), ("pause?reason=replay", "CAMPAIGN_STATUS_PAUSED")):
            reply = await rest.post(f"/v1/campaigns/{second_id}/{step}", headers=console)
            assert reply.status_code == 200, reply.text
            assert reply.json()["campaign"]["status"] == status
        resumed = await rest.post(f"/v1/campaigns/{second_id}/resume", headers=console)
        assert resumed.json()["campaign"]["status"] == "CAMPAIGN_STATUS_ACTIVE"

        # C11: the charger explorer, with 30-day sessions from the sessions service's data.
        browse = await rest.get(
            "/v1/campaigns/chargers/browse", params={"search": "Merchant test charger", "limit": 2000}, headers=console
        )
        assert browse.status_code == 200, browse.text
        page = browse.json()
        _types(page, {"chargers": list, "total": int})
        mine = next(c for c in page["chargers"] if c["id"] == charger_id)
        _types(
            mine,
            {
                "id": str,
                "name": str,
                "network_name": str,
                "lat": float,
                "lng": float,
                "address": str,
                "city": str,
                "state": str,
                "connector_types": list,
                "total_sessions": int,
                "unique_drivers": int,
            },
        )
        assert (mine["total_sessions"], mine["unique_drivers"]) == (3, 2)

        # C12: utilization of the chosen chargers, comma-separated.
        use = await rest.get(
            "/v1/campaigns/utilization/chargers",
            params={"charger_ids": f"{charger_id},{quiet_charger}", "since_days": 30},
            headers=console,
        )
        assert use.status_code == 200, use.text
        rows = use.json()["chargers"]
        for row in rows:
            _types(
                row, {"charger_id": str, "total_sessions": int, "unique_drivers": int, "avg_duration_minutes": float}
            )
        assert [(r["charger_id"], r["total_sessions"], r["unique_drivers"]) for r in rows] == [
            (charger_id, 3, 2),
            (quiet_charger, 0, 0),
        ]
        assert rows[0]["avg_duration_minutes"] == 40

        # A driver is refused the console's charger data.
        driver = await person("driver")
        assert (await rest.get("/v1/campaigns/chargers/browse", headers=driver.headers)).status_code == 403
    finally:
        await sessions_engine.dispose()


async def test_the_portals_calls(
    mesh: Mesh, person: NewPerson, rest: httpx.AsyncClient, database_url: str, places_fake: FakePlaces
) -> None:
    sessions_engine = create_engine(database_url, "sessions")
    try:
        admin, owner = await person("admin"), await person("merchant")
        merchants = Merchants(
            merchants_pb2_grpc.MerchantsServiceStub(mesh.channels["merchants"]),
            ledger_pb2_grpc.LedgerServiceStub(mesh.channels["ledger"]),
            sessions_engine,
        )
        shop = await merchants.create_store(admin, owner)
        portal = {**owner.headers, **CONSOLE_HEADERS}
        base = f"/v1/merchants/{shop.id}"

        # P1: the profile.
        me = (await rest.get("/v1/merchants/me", headers=portal)).json()
        _types(me, {"merchant": dict, "transactions": list})
        _types(me["merchant"], {"id": str, "name": str, "nova_balance": int, "zone_slug": str, "status": str})

        # P2: charging at the store's linked charger, from the sessions service.
        await _seed_sessions(sessions_engine, shop.charger_id, ["p-1", "p-2", "p-1"], minutes=30, kwh=12.5)
        insights = await rest.get("/v1/merchants/me/insights?period=7d", headers=portal)
        assert insights.status_code == 200, insights.text
        seen = insights.json()
        _types(
            seen,
            {
                "period": str,
                "ev_sessions_nearby": int,
                "unique_drivers": int,
                "avg_duration_minutes": float,
                "avg_kwh": float,
                "peak_hours": list,
            },
        )
        assert (seen["period"], seen["ev_sessions_nearby"], seen["unique_drivers"]) == ("7d", 3, 2)
        assert (seen["avg_duration_minutes"], seen["avg_kwh"]) == (30, 12.5)
        for hour in seen["peak_hours"]:
            _types(hour, {"hour": int, "sessions": int})
        assert sum(hour["sessions"] for hour in seen["peak_hours"]) == 3
        refused = await rest.get("/v1/merchants/me/insights?period=1y", headers=portal)
        assert refused.status_code == 400, refused.text

        # P4, P3 (a bare array), P5, P6.
        offer = await rest.post(
            f"{base}/exclusives", json={"title": "Free coffee", "description": "While you charge"}, headers=portal
        )
        assert offer.status_code == 200, offer.text
        exclusive = offer.json()
        _types(exclusive, {"id": str, "merchant_id": str, "title": str, "is_active": bool, "created_at": str})
        listed = (await rest.get(f"{base}/exclusives", headers=portal)).json()
        assert isinstance(listed, list) and [e["id"] for e in listed] == [exclusive["id"]]
        changed = await rest.put(f"{base}/exclusives/{exclusive['id']}", json={"title": "Free tea"}, headers=portal)
        assert changed.json()["title"] == "Free tea"
        toggled = await rest.post(f"{base}/exclusives/{exclusive['id']}/enable?enabled=false", headers=portal)
        _types(toggled.json(), {"ok": bool, "is_active": bool})
        assert toggled.json() == {"ok": True, "is_active": False}

        # P7, P8.
        analytics = (await rest.get(f"{base}/analytics", headers=portal)).json()
        _types(
            analytics,
            {"merchant_id": str, "activations": int, "completes": int, "unique_drivers": int, "completion_rate": float},
        )
        visits = (await rest.get(f"{base}/visits?period=week&limit=100&offset=0", headers=portal)).json()
        _types(
            visits,
            {"visits": list, "total": int, "verified_count": int, "period": str, "limit": int, "offset": int},
        )

        # P9: the staff screen of an unknown session; P10: an unknown arrival code.
        staff = await rest.get(f"/v1/exclusive/session/{uuid.uuid4()}")
        assert staff.status_code == 200, staff.text
        assert staff.json() == {
            "exclusive_session": None,
            "merchant_name": None,
            "exclusive_title": None,
            "staff_instructions": None,
        }
        checkin = await rest.post("/v1/checkin/redeem", json={"code": "ZZZZZZ"}, headers=CONSOLE_HEADERS)
        assert checkin.status_code == 404, checkin.text

        # Q2: the store's recent Square orders by its QR token (no Square connected: none).
        orders = (
            await rest.get("/v1/checkout/orders", params={"token": shop.qr_token, "minutes": 10}, headers=portal)
        ).json()
        _types(orders, {"merchant_id": str, "merchant_name": str, "perk": dict, "orders": list})

        # The QR sign's and the share card's target: the driver app's checkout page, not a JSON URL.
        qr = (await rest.get(f"{base}/qr", headers=portal)).json()
        assert "/v1/" not in qr["qr_url"] and shop.qr_token in urllib.parse.unquote(qr["qr_url"])
        card = await rest.get(f"{base}/share-card.png", headers=portal)
        assert (card.status_code, card.headers["content-type"]) == (200, "image/png")

        # The acquisition funnel: find, resolve, preview, claim.
        tag = secrets.token_hex(3)
        name = f"Replay Bakery {tag}"
        place = places_fake.add_place(
            name,
            30.27,
            -97.74,
            address="2 Congress Ave",
            rating=4.2,
            user_rating_count=8,
            business_status="OPERATIONAL",
            website=f"https://bakery-{tag}.example",
        )
        found = (await rest.get("/v1/merchant/funnel/search", params={"query": name})).json()["businesses"][0]
        _types(found, {"place_id": str, "name": str, "address": str, "lat": float, "lng": float, "claimed": bool})
        resolved = (await rest.post("/v1/merchant/funnel/resolve", json={"place_id": place.place_id})).json()
        _types(resolved, {"merchant_id": str, "preview_url": str, "sig": str, "expires_at": str})
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(resolved["preview_url"]).query))
        preview = (await rest.get("/v1/merchant/funnel/preview", params=query)).json()
        _types(
            preview,
            {
                "id": str,
                "name": str,
                "address": str,
                "lat": float,
                "lng": float,
                "rating": float,
                "user_rating_count": int,
                "photo_urls": list,
                "open_now": bool,
                "business_status": str,
                "category": str,
                "verified_visit_count": int,
            },
        )
        claimant = await person("driver")
        claim_body = {**query, "email": f"owner@bakery-{tag}.example"}
        claim = await rest.post("/v1/merchant/funnel/claim", json=claim_body, headers=claimant.headers)
        assert claim.status_code == 200, claim.text
        _types(claim.json()["claim"], {"id": str, "merchant_id": str, "status": str})
    finally:
        await sessions_engine.dispose()
