"""Tesla Fleet Telemetry pushes drive the same state machine as the poll — signed over the exact body bytes,
refused when unsigned, badly signed or malformed, with nothing written."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import random
import uuid
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa
from google.api import httpbody_pb2
from nerava.sessions.v1 import sessions_pb2 as pb
from nerava.sessions.v1 import sessions_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.sessions import store
from tests.conftest import TELEMETRY_SECRET
from tests.support.rpc import error_reason


@pytest.fixture
async def car(engine: AsyncEngine) -> dict[str, Any]:
    """A driver's linked Tesla (VIN, vehicle) and a charger of the test's own."""
    lat, lng = random.uniform(-60, -40), random.uniform(100, 140)
    car = {
        "driver_id": str(uuid.uuid4()),
        "vin": f"5YJ3E1EA{uuid.uuid4().hex[:9].upper()}",
        "vehicle_id": str(random.randrange(10**15)),
        "charger_id": f"test-{uuid.uuid4().hex[:10]}",
        "lat": lat,
        "lng": lng,
    }
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(store.chargers).values(
                id=car["charger_id"],
                source="manual",
                external_id=car["charger_id"],
                name="Push charger",
                lat=lat,
                lng=lng,
            )
        )
        await conn.execute(
            sa.insert(store.vehicle_connections).values(
                id=uuid.uuid4(),
                driver_id=car["driver_id"],
                provider="tesla",
                vehicle_id=car["vehicle_id"],
                vin=car["vin"],
                access_token=b"sealed",
                refresh_token=b"sealed",
                access_expires_at=datetime.datetime.now(datetime.UTC),
                telemetry_enabled=True,
            )
        )
    return car


def record(vin: str, at: datetime.datetime, **values: Any) -> bytes:
    return json.dumps(
        {"vin": vin, "created_at": at.isoformat(), "data": [{"key": k, "value": v} for k, v in values.items()]}
    ).encode()


def signed(body: bytes, secret: str = TELEMETRY_SECRET) -> tuple[tuple[str, str], ...]:
    return (("x-telemetry-signature", hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()),)


async def push(
    sessions: sessions_pb2_grpc.SessionsServiceAsyncStub, body: bytes, metadata: tuple[tuple[str, str], ...]
) -> pb.IngestTelemetryResponse:
    request = pb.IngestTelemetryRequest(http_body=httpbody_pb2.HttpBody(content_type="application/json", data=body))
    return await sessions.IngestTelemetry(request, metadata=metadata)


async def sessions_of(engine: AsyncEngine, driver_id: str) -> list[sa.RowMapping]:
    s = store.charging_sessions
    async with engine.connect() as conn:
        return list((await conn.execute(sa.select(s).where(s.c.driver_id == driver_id))).mappings().all())


async def test_a_pushed_session_opens_updates_and_ends(
    sessions: sessions_pb2_grpc.SessionsServiceAsyncStub, engine: AsyncEngine, car: dict[str, Any]
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    location = {"locationValue": {"latitude": car["lat"], "longitude": car["lng"]}}
    body = record(
        car["vin"], now, DetailedChargeState={"stringValue": "DetailedChargeStateCharging"}, Location=location
    )
    opened = await push(sessions, body, signed(body))
    assert opened.action == pb.INGEST_ACTION_CREATED
    # The session began 26 minutes ago (pushes are only accepted fresh, so its start moves instead).
    s = store.charging_sessions
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(s)
            .where(s.c.id == uuid.UUID(opened.session_id))
            .values(session_start=s.c.session_start - datetime.timedelta(minutes=26))
        )
    body = record(car["vin"], now, BatteryLevel={"doubleValue": 61.5}, DCChargingPower=140)
    updated = await push(sessions, body, signed(body))
    assert (updated.action, updated.session_id) == (pb.INGEST_ACTION_UPDATED, opened.session_id)
    body = record(car["vin"], now, DetailedChargeState="DetailedChargeStateDisconnected")
    ended = await push(sessions, body, signed(body))
    assert (ended.action, ended.session_id) == (pb.INGEST_ACTION_ENDED, opened.session_id)
    [row] = await sessions_of(engine, car["driver_id"])
    assert (row["charger_id"], row["battery_end_pct"], row["max_power_kw"]) == (car["charger_id"], 62, 140.0)
    assert (row["duration_minutes"], row["ended_reason"], row["source"]) == (
        26,
        pb.END_REASON_TELEMETRY_DISCONNECTED,
        pb.SESSION_SOURCE_TESLA_TELEMETRY,
    )


async def test_replayed_and_stale_pushes_are_refused_and_write_nothing(
    sessions: sessions_pb2_grpc.SessionsServiceAsyncStub, engine: AsyncEngine, car: dict[str, Any]
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    old = record(car["vin"], now - datetime.timedelta(minutes=6), DetailedChargeState="Charging")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await push(sessions, old, signed(old))
    assert (refused.value.code(), error_reason(refused.value)) == (grpc.StatusCode.FAILED_PRECONDITION, "PUSH_TOO_OLD")
    undated = json.dumps({"vin": car["vin"], "data": [{"key": "DetailedChargeState", "value": "Charging"}]}).encode()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await push(sessions, undated, signed(undated))
    assert error_reason(refused.value) == "PUSH_TOO_OLD"
    assert await sessions_of(engine, car["driver_id"]) == []

    fresh = record(car["vin"], now, DetailedChargeState="Charging")
    assert (await push(sessions, fresh, signed(fresh))).action == pb.INGEST_ACTION_CREATED
    ending = record(car["vin"], now, DetailedChargeState="Disconnected")
    assert (await push(sessions, ending, signed(ending))).action == pb.INGEST_ACTION_ENDED
    # The same signed "charging" body played again would reopen the session: it is refused as a replay.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await push(sessions, fresh, signed(fresh))
    assert (refused.value.code(), error_reason(refused.value)) == (grpc.StatusCode.ALREADY_EXISTS, "PUSH_REPLAYED")
    # So is another body carrying a message id seen before.
    message_id = str(uuid.uuid4())
    first = json.dumps(json.loads(fresh) | {"msg_id": message_id}).encode()
    assert (await push(sessions, first, signed(first))).action == pb.INGEST_ACTION_CREATED
    other = json.dumps(json.loads(ending) | {"msg_id": message_id}).encode()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await push(sessions, other, signed(other))
    assert error_reason(refused.value) == "PUSH_REPLAYED"
    rows = await sessions_of(engine, car["driver_id"])
    assert sorted(row["session_end"] is None for row in rows) == [False, True]  # the replays changed nothing


async def test_unknown_vehicles_are_ignored(sessions: sessions_pb2_grpc.SessionsServiceAsyncStub) -> None:
    body = record("5YJ3E1EA0UNKNOWN0", datetime.datetime.now(datetime.UTC), DetailedChargeState="Charging")
    assert (await push(sessions, body, signed(body))).action == pb.INGEST_ACTION_IGNORED


@pytest.mark.parametrize(
    "signature",
    [(), (("x-telemetry-signature", "0" * 64),), "wrong secret", "tampered"],
    ids=["unsigned", "bad signature", "wrong secret", "body changed after signing"],
)
async def test_unsigned_or_badly_signed_pushes_are_refused_and_write_nothing(
    sessions: sessions_pb2_grpc.SessionsServiceAsyncStub,
    engine: AsyncEngine,
    car: dict[str, Any],
    signature: object,
) -> None:
    body = record(car["vin"], datetime.datetime.now(datetime.UTC), DetailedChargeState="Charging")
    metadata: tuple[tuple[str, str], ...]
    if signature == "wrong secret":
        metadata = signed(body, "another-secret")
    elif signature == "tampered":
        metadata, body = signed(body), body.replace(b"Charging", b"Starting")
    else:
        metadata = signature  # type: ignore[assignment]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await push(sessions, body, metadata)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(refused.value) == "SIGNATURE_INVALID"
    assert await sessions_of(engine, car["driver_id"]) == []


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"vin": ""}',
        b'{"vin": "X", "data": "nope"}',
        b'{"vin": "X", "data": [], "created_at": "yesterday"}',
    ],
)
async def test_malformed_pushes_are_invalid_argument(
    sessions: sessions_pb2_grpc.SessionsServiceAsyncStub, body: bytes
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await push(sessions, body, signed(body))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(refused.value) == "WEBHOOK_PAYLOAD_INVALID"


async def test_the_webhook_path_through_envoy(
    rest: httpx.AsyncClient, engine: AsyncEngine, car: dict[str, Any]
) -> None:
    body = record(car["vin"], datetime.datetime.now(datetime.UTC), DetailedChargeState="Charging")
    headers = {"Content-Type": "application/json", "X-Telemetry-Signature": signed(body)[0][1]}
    ok = await rest.post("/v1/webhooks/tesla/telemetry", content=body, headers=headers)
    assert ok.status_code == 200, ok.text
    assert ok.json()["action"] == "INGEST_ACTION_CREATED"
    unsigned = await rest.post(
        "/v1/webhooks/tesla/telemetry", content=body, headers={"Content-Type": "application/json"}
    )
    assert unsigned.status_code == 401
    assert len(await sessions_of(engine, car["driver_id"])) == 1
