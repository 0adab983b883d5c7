"""Smartcar webhooks through Envoy: the verify challenge, signed VEHICLE_STATE events driving the same state
machine as the poll, and refusal of anything unsigned."""

from __future__ import annotations

import datetime
import json
import uuid

import httpx
import sqlalchemy as sa

from fakes.fleet import FakeFleet
from services.common.db import create_engine
from services.sessions import store
from tests.support.mesh import Mesh


async def test_verify_then_a_charging_car_opens_and_ends_a_session(
    mesh: Mesh, fleet: FakeFleet, rest: httpx.AsyncClient
) -> None:
    url = f"{rest.base_url}/v1/webhooks/smartcar"
    answer, expected = await fleet.send_smartcar_verify(url)
    assert answer.status_code == 200 and answer.json()["challenge"] == expected

    email = f"{uuid.uuid4().hex[:8]}@example.com"
    car = fleet.add_smartcar_vehicle(email)
    driver_id = str(uuid.uuid4())
    engine = create_engine(mesh.env["DATABASE_URL"], "sessions")
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(store.vehicle_connections).values(
                    id=uuid.uuid4(),
                    driver_id=driver_id,
                    provider="smartcar",
                    vehicle_id=car.id,
                    access_token=b"sealed",
                    refresh_token=b"sealed",
                    access_expires_at=datetime.datetime.now(datetime.UTC),
                )
            )
        car.plug_in(30.2649, -97.7447, power_kw=11.0)
        opened = await fleet.send_smartcar_event(url, car.id)
        assert opened.status_code == 200, opened.text
        assert opened.json()["action"] == "INGEST_ACTION_CREATED"
        car.unplug()
        ended = await fleet.send_smartcar_event(url, car.id)
        assert ended.json()["action"] == "INGEST_ACTION_ENDED"
        assert ended.json()["session_id"] == opened.json()["session_id"]
        s = store.charging_sessions
        async with engine.connect() as conn:
            row = (await conn.execute(sa.select(s).where(s.c.driver_id == driver_id))).mappings().one()
        assert (row["source"], row["ended_reason"]) == (3, 4)  # SMARTCAR, TELEMETRY_DISCONNECTED
    finally:
        await engine.dispose()


async def test_unsigned_or_forged_events_are_refused(fleet: FakeFleet, rest: httpx.AsyncClient) -> None:
    body = json.dumps(fleet.smartcar_verify_event()).encode()
    unsigned = await rest.post("/v1/webhooks/smartcar", content=body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    forged = await rest.post(
        "/v1/webhooks/smartcar", content=body, headers={"Content-Type": "application/json", "SC-Signature": "0" * 64}
    )
    assert forged.status_code == 401
    junk = b"not json"
    malformed = await rest.post(
        "/v1/webhooks/smartcar",
        content=junk,
        headers={"Content-Type": "application/json", "SC-Signature": fleet.sign_smartcar(junk)},
    )
    assert malformed.status_code == 400


async def test_a_replayed_or_stale_event_is_refused(fleet: FakeFleet, rest: httpx.AsyncClient) -> None:
    url = f"{rest.base_url}/v1/webhooks/smartcar"
    car = fleet.add_smartcar_vehicle(f"{uuid.uuid4().hex[:8]}@example.com")
    car.plug_in(30.2649, -97.7447, power_kw=11.0)
    event = fleet.smartcar_event(car.id)
    body = json.dumps(event).encode()
    first = await fleet.post_smartcar_webhook(url, body, signature=fleet.sign_smartcar(body))
    assert first.status_code == 200, first.text  # an unknown car: ignored, but accepted
    replayed = await fleet.post_smartcar_webhook(url, body, signature=fleet.sign_smartcar(body))
    assert replayed.status_code == 409 and replayed.json()["details"][0]["reason"] == "PUSH_REPLAYED"
    # Smartcar's retry of the same event (a new delivery id) is the same event.
    retry = json.dumps(event | {"meta": event["meta"] | {"deliveryId": str(uuid.uuid4())}}).encode()
    again = await fleet.post_smartcar_webhook(url, retry, signature=fleet.sign_smartcar(retry))
    assert again.status_code == 409
    sent = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=10)
    old_event = fleet.smartcar_event(car.id)
    old_event["meta"]["deliveredAt"] = sent.isoformat()
    old = json.dumps(old_event).encode()
    stale = await fleet.post_smartcar_webhook(url, old, signature=fleet.sign_smartcar(old))
    assert stale.status_code == 400 and stale.json()["details"][0]["reason"] == "PUSH_TOO_OLD"
