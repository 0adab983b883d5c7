"""EV verification codes: the vehicle API confirms the driver is charging, and the driver gets `EV-XXXX` for a
merchant, valid 2 h, one active code per driver and merchant (a repeat returns the code still valid)."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import sqlalchemy as sa
from google.protobuf import timestamp_pb2
from nerava.merchants.v1 import merchants_pb2, merchants_pb2_grpc
from nerava.sessions.v1 import sessions_pb2 as pb
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import FailedPrecondition, ResourceExhausted, Unavailable
from services.common.geo import great_circle_m
from services.common.http_body import json_array
from services.sessions import domain, store
from services.sessions.adapters.tesla import TeslaFleetClient
from services.sessions.adapters.vehicles import (
    NoConnection,
    RateLimited,
    TokenExpired,
    VehicleApiError,
    VehicleAsleep,
    VehicleReader,
    VehicleReading,
)
from services.sessions.connections import StoredCredentials, active_connection
from services.sessions.polling import read_vehicle
from services.sessions.tokens import TokenCipher

E = store.ev_codes
RECENT = datetime.timedelta(hours=24)  # ListEvCodes shows redeemed/expired codes of the last day
NEAR_MERCHANT_M = 500.0  # a code for a merchant is asked for at the merchant, not from home

# Where a merchant is, by Google place id (the merchants service); None when it does not know the merchant.
MerchantPosition = Callable[[str], Awaitable[tuple[float, float] | None]]


async def _unknown_merchant(place_id: str) -> tuple[float, float] | None:
    return None


def merchant_directory(merchants: merchants_pb2_grpc.MerchantsServiceAsyncStub) -> MerchantPosition:
    """Merchant positions from the merchants service (GetMerchant accepts a place id); an unknown merchant, or
    a merchants service that does not answer, is not checked rather than blocking the code."""

    async def position(place_id: str) -> tuple[float, float] | None:
        try:
            reply = await merchants.GetMerchant(merchants_pb2.GetMerchantRequest(merchant_id=place_id), timeout=2.0)
        except grpc.aio.AioRpcError:
            return None
        return reply.merchant.lat, reply.merchant.lng

    return position


def _stamp(value: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


class EvCodes:
    def __init__(
        self,
        engine: AsyncEngine,
        tesla: TeslaFleetClient,
        cipher: TokenCipher,
        *,
        merchant_position: MerchantPosition = _unknown_merchant,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._engine = engine
        self._merchant_position = merchant_position
        self._tesla = tesla
        self._cipher = cipher
        self._clock = clock

    async def verify(self, driver_id: str, request: pb.VerifyChargingRequest) -> pb.VerifyChargingResponse:
        if request.merchant_place_id and request.HasField("lat"):
            await self._check_near_merchant(request)
        connection = await active_connection(self._engine, driver_id)
        if connection is None:
            raise FailedPrecondition("NO_VEHICLE_CONNECTION", "no Tesla account is linked; connect first")
        async with self._engine.connect() as conn:
            listed = (
                await conn.execute(
                    sa.select(store.vehicle_connections.c.vehicles).where(
                        store.vehicle_connections.c.id == connection.id
                    )
                )
            ).scalar_one()
        vehicle_ids = [str(v["id"]) for v in listed] or ([connection.vehicle_id] if connection.vehicle_id else [])
        reader = self._tesla.reader(StoredCredentials(self._engine, self._cipher, connection.id))
        charging: VehicleReading | None = None
        first: VehicleReading | None = None
        for vehicle_id in vehicle_ids:
            reading = await self._read(reader, vehicle_id)
            first = first or reading
            if reading is not None and reading.charging:
                charging = reading
                break
        if charging is None:
            reply = pb.VerifyChargingResponse(is_charging=False, message="None of your vehicles is charging right now.")
            if first is not None and first.battery_pct is not None:
                reply.battery_level = first.battery_pct
            return reply
        row = await self._issue(driver_id, request, charging)
        reply = pb.VerifyChargingResponse(
            is_charging=True,
            ev_code=row.code,
            expires_at=_stamp(row.expires_at),
            message="Show this code at the merchant.",
        )
        if charging.battery_pct is not None:
            reply.battery_level = charging.battery_pct
        if charging.power_kw is not None:
            reply.charge_rate_kw = charging.power_kw
        return reply

    async def _check_near_merchant(self, request: pb.VerifyChargingRequest) -> None:
        """With a merchant the merchants service knows and the device's position: within 500 m of it, checked
        before the car is woken. A merchant it does not know is not checked (the first implementation's rule)."""
        position = await self._merchant_position(request.merchant_place_id)
        if position is None:
            return
        distance = great_circle_m(request.lat, request.lng, *position)
        if distance > NEAR_MERCHANT_M:
            raise FailedPrecondition(
                "NOT_NEAR_MERCHANT",
                "an EV code for a merchant is issued at the merchant",
                {"distance_m": f"{distance:.1f}", "radius_m": f"{NEAR_MERCHANT_M:.0f}"},
            )

    async def _read(self, reader: VehicleReader, vehicle_id: str) -> VehicleReading | None:
        try:
            # Asking for a code is the driver's explicit request: waking the car is justified.
            return await read_vehicle(reader, vehicle_id, may_wake=True)
        except VehicleAsleep:
            return None
        except TokenExpired as exc:
            raise FailedPrecondition("VEHICLE_TOKEN_EXPIRED", "Tesla refused the connection; connect again") from exc
        except NoConnection as exc:
            raise FailedPrecondition("NO_VEHICLE_CONNECTION", "no Tesla account is linked; connect first") from exc
        except RateLimited as exc:
            raise ResourceExhausted(
                "VEHICLE_API_RATE_LIMITED", "the vehicle API asks to wait", {"retry_after_s": str(exc.retry_after_s)}
            ) from exc
        except VehicleApiError as exc:
            raise Unavailable("VEHICLE_UNAVAILABLE", "the vehicle did not answer; try again") from exc

    async def _issue(
        self, driver_id: str, request: pb.VerifyChargingRequest, reading: VehicleReading
    ) -> sa.Row[Any, Any]:
        now = self._clock()
        place = request.merchant_place_id
        for _ in range(5):
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(
                        sa.update(E)
                        .where(
                            E.c.driver_id == driver_id,
                            E.c.merchant_place_id == place,
                            E.c.status == "active",
                            E.c.expires_at <= now,
                        )
                        .values(status="expired")
                    )
                    existing = (
                        await conn.execute(
                            sa.select(E.c.code, E.c.expires_at).where(
                                E.c.driver_id == driver_id, E.c.merchant_place_id == place, E.c.status == "active"
                            )
                        )
                    ).first()
                    if existing is not None:
                        return existing
                    return (
                        await conn.execute(
                            sa.insert(E)
                            .values(
                                id=uuid.uuid4(),
                                code=domain.new_ev_code(),
                                driver_id=driver_id,
                                merchant_place_id=place,
                                merchant_name=request.merchant_name,
                                status="active",
                                vehicle_id=reading.vehicle_id,
                                battery_level=reading.battery_pct,
                                charge_rate_kw=reading.power_kw,
                                expires_at=now + domain.EV_CODE_VALIDITY,
                            )
                            .returning(E.c.code, E.c.expires_at)
                        )
                    ).one()
            except IntegrityError:
                continue  # a code collision, or a concurrent request issued the code first: look again
        raise Unavailable("EV_CODE_UNAVAILABLE", "no code could be issued; try again")

    async def list(self, driver_id: str) -> pb.ListEvCodesResponse:
        now = self._clock()
        async with self._engine.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(E)
                        .where(
                            E.c.driver_id == driver_id, sa.or_(E.c.status == "active", E.c.created_at >= now - RECENT)
                        )
                        .order_by(E.c.created_at.desc())
                    )
                )
                .mappings()
                .all()
            )
        codes = []
        for row in rows:
            status = "expired" if row["status"] == "active" and row["expires_at"] <= now else row["status"]
            codes.append(
                pb.EvCode(
                    code=row["code"],
                    merchant_name=row["merchant_name"],
                    merchant_place_id=row["merchant_place_id"],
                    expires_at=_stamp(row["expires_at"]),
                    status=status,
                    created_at=_stamp(row["created_at"]),
                )
            )
        # Active first, newest first within each group.
        codes.sort(key=lambda c: c.status != "active")
        return pb.ListEvCodesResponse(codes=codes, json_array=json_array(codes))
