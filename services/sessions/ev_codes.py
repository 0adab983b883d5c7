"""EV verification codes: the vehicle API confirms the driver is charging, and the driver gets `EV-XXXX` for a
merchant, valid 2 h, one active code per driver and merchant (a repeat returns the code still valid)."""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from nerava.sessions.v1 import sessions_pb2 as pb
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import FailedPrecondition, ResourceExhausted, Unavailable
from services.common.geo import great_circle_m
from services.sessions import domain, store
from services.sessions.connections import active_connection
from services.sessions.polling import Poller
from services.sessions.reasons import Reason

RECENT = datetime.timedelta(hours=24)  # ListEvCodes shows redeemed/expired codes of the last day
NEAR_MERCHANT_M = 500.0  # a code for a merchant is asked for at the merchant, not from home

# Where a merchant is, by Google place id (peers.MerchantDirectory.position: an unknown merchant, or a merchants
# service that does not answer, is not checked rather than blocking the code); None when it is not known.
MerchantPosition = Callable[[str], Awaitable[tuple[float, float] | None]]


async def _unknown_merchant(place_id: str) -> tuple[float, float] | None:
    return None


@dataclasses.dataclass(frozen=True)
class Verification:
    """Whether one of the driver's cars charges (its battery and power as read), and then the code issued."""

    is_charging: bool
    battery_level: int | None = None
    charge_rate_kw: float | None = None
    code: str = ""
    expires_at: datetime.datetime | None = None


@dataclasses.dataclass(frozen=True)
class EvCode:
    """A code as the driver's list shows it: an active code past its expiry reads "expired"."""

    code: str
    merchant_name: str | None
    merchant_place_id: str | None
    expires_at: datetime.datetime
    status: str
    created_at: datetime.datetime


class EvCodes:
    def __init__(
        self,
        engine: AsyncEngine,
        poller: Poller,
        *,
        merchant_position: MerchantPosition = _unknown_merchant,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._engine = engine
        self._merchant_position = merchant_position
        self._poller = poller
        self._clock = clock

    async def verify(
        self, driver_id: str, *, merchant_place_id: str, merchant_name: str, near: tuple[float, float] | None
    ) -> Verification:
        """A code for the merchant (`near`: the device's position, checked against the merchant's) while one of
        the driver's cars charges."""
        if merchant_place_id and near is not None:
            await self._check_near_merchant(merchant_place_id, near)
        connection = await active_connection(self._engine, driver_id, provider=None)
        if connection is None:
            raise FailedPrecondition(Reason.NO_VEHICLE_CONNECTION, "no vehicle account is linked; connect first")
        # The poll's window: three requests within 30 s read the car once (the others see that read's answer).
        # Asking for a code is the driver's explicit request: waking the car is justified.
        state = await self._poller.poll(driver_id, None, None, may_wake=True)
        _raise_for(state)
        battery = state.battery_level if state.HasField("battery_level") else None
        if not state.session_active:
            return Verification(is_charging=False, battery_level=battery)
        power_kw = state.charger_power_kw if state.HasField("charger_power_kw") else None
        row = await self._issue(
            driver_id,
            merchant_place_id,
            merchant_name,
            vehicle_id=connection.vehicle_id or "",
            battery=battery,
            power_kw=power_kw,
        )
        return Verification(
            is_charging=True, battery_level=battery, charge_rate_kw=power_kw, code=row.code, expires_at=row.expires_at
        )

    async def _check_near_merchant(self, place_id: str, near: tuple[float, float]) -> None:
        """With a merchant the merchants service knows and the device's position: within 500 m of it, checked
        before the car is woken. A merchant it does not know is not checked (the first implementation's rule)."""
        position = await self._merchant_position(place_id)
        if position is None:
            return
        distance = great_circle_m(near[0], near[1], *position)
        if distance > NEAR_MERCHANT_M:
            raise FailedPrecondition(
                Reason.NOT_NEAR_MERCHANT,
                "an EV code for a merchant is issued at the merchant",
                {"distance_m": f"{distance:.1f}", "radius_m": f"{NEAR_MERCHANT_M:.0f}"},
            )

    async def _issue(
        self,
        driver_id: str,
        place: str,
        merchant_name: str,
        *,
        vehicle_id: str,
        battery: int | None,
        power_kw: float | None,
    ) -> sa.Row[Any, Any]:
        now = self._clock()
        for _ in range(5):
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(
                        sa.update(store.ev_codes)
                        .where(
                            store.ev_codes.c.driver_id == driver_id,
                            store.ev_codes.c.merchant_place_id == place,
                            store.ev_codes.c.status == "active",
                            store.ev_codes.c.expires_at <= now,
                        )
                        .values(status="expired")
                    )
                    existing = (
                        await conn.execute(
                            sa.select(store.ev_codes.c.code, store.ev_codes.c.expires_at).where(
                                store.ev_codes.c.driver_id == driver_id,
                                store.ev_codes.c.merchant_place_id == place,
                                store.ev_codes.c.status == "active",
                            )
                        )
                    ).first()
                    if existing is not None:
                        return existing
                    return (
                        await conn.execute(
                            sa.insert(store.ev_codes)
                            .values(
                                id=uuid.uuid4(),
                                code=domain.new_ev_code(),
                                driver_id=driver_id,
                                merchant_place_id=place,
                                merchant_name=merchant_name,
                                status="active",
                                vehicle_id=vehicle_id,
                                battery_level=battery,
                                charge_rate_kw=power_kw,
                                expires_at=now + domain.EV_CODE_VALIDITY,
                            )
                            .returning(store.ev_codes.c.code, store.ev_codes.c.expires_at)
                        )
                    ).one()
            except IntegrityError:
                continue  # a code collision, or a concurrent request issued the code first: look again
        raise Unavailable(Reason.EV_CODE_UNAVAILABLE, "no code could be issued; try again")

    async def list(self, driver_id: str) -> list[EvCode]:
        now = self._clock()
        async with self._engine.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(store.ev_codes)
                        .where(
                            store.ev_codes.c.driver_id == driver_id,
                            sa.or_(store.ev_codes.c.status == "active", store.ev_codes.c.created_at >= now - RECENT),
                        )
                        .order_by(store.ev_codes.c.created_at.desc())
                    )
                )
                .mappings()
                .all()
            )
        codes = [
            EvCode(
                code=row["code"],
                merchant_name=row["merchant_name"] or None,
                merchant_place_id=row["merchant_place_id"] or None,
                expires_at=row["expires_at"],
                status="expired" if row["status"] == "active" and row["expires_at"] <= now else row["status"],
                created_at=row["created_at"],
            )
            for row in rows
        ]
        # Active first, newest first within each group.
        codes.sort(key=lambda c: c.status != "active")
        return codes


def _raise_for(state: pb.PollChargingStateResponse) -> None:
    """The vehicle-side problems of the read, as the refusals VerifyCharging has always answered."""
    if not state.HasField("error"):
        return
    if state.error == pb.POLL_ERROR_TOKEN_EXPIRED:
        raise FailedPrecondition(
            Reason.VEHICLE_TOKEN_EXPIRED, "the vehicle account refused the connection; connect again"
        )
    if state.error in (pb.POLL_ERROR_NO_VEHICLE_CONNECTION, pb.POLL_ERROR_NO_VEHICLE_SELECTED):
        raise FailedPrecondition(Reason.NO_VEHICLE_CONNECTION, "no vehicle account is linked; connect first")
    if state.error == pb.POLL_ERROR_RATE_LIMITED:
        raise ResourceExhausted(Reason.VEHICLE_API_RATE_LIMITED, "the vehicle API asks to wait", {})
    raise Unavailable(Reason.VEHICLE_UNAVAILABLE, "the vehicle did not answer; try again")
