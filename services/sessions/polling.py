"""PollChargingState, the hot path: at most one vehicle read per driver per window (Redis, shared by every replica),
the wake policy, vehicle-side problems answered in-band, and the reading applied through the state machine.

The window: the first poll takes `poll:read:<driver>` (SET NX with the window's TTL) and reads the car; every
other poll inside the window answers the last stored answer (`poll:answer:<driver>`, marked cached) or, when the
first read is still in flight, the session as the database has it. So 20 concurrent polls of one driver, on any
replicas, cost one vehicle-API call.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable

import redis.asyncio as redis
import sqlalchemy as sa
from nerava.incentives.v1 import incentives_pb2, incentives_pb2_grpc
from nerava.sessions.v1 import sessions_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

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
from services.sessions.tokens import TokenCipher
from services.sessions.tracking import Applied, SessionTracker

S = store.charging_sessions
WAKE_ATTEMPTS = 3  # reads when waking is justified (the first, then two after a wake call)
WAKE_PAUSE_S = 1.0
GRANT_WAIT_S = 1.0  # after an end: how long the answer waits for incentives' grant (it may land a moment later)


def _read_key(driver_id: str) -> str:
    return f"poll:read:{driver_id}"


def _answer_key(driver_id: str) -> str:
    return f"poll:answer:{driver_id}"


class Poller:
    def __init__(
        self,
        engine: AsyncEngine,
        cache: redis.Redis,
        *,
        tracker: SessionTracker,
        tesla: TeslaFleetClient,
        cipher: TokenCipher,
        incentives: incentives_pb2_grpc.IncentivesServiceAsyncStub | None,
        window_s: float = domain.POLL_WINDOW.total_seconds(),
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._engine = engine
        self._cache = cache
        self._tracker = tracker
        self._tesla = tesla
        self._cipher = cipher
        self._incentives = incentives
        self._window_ms = max(1, int(window_s * 1000))
        self._clock = clock

    async def poll(self, driver_id: str, lat: float | None, lng: float | None) -> pb.PollChargingStateResponse:
        stored = await self._cache.get(_answer_key(driver_id))
        if stored is not None:
            answer = pb.PollChargingStateResponse.FromString(bytes(stored))  # type: ignore[arg-type]
            answer.cached = True
            return answer
        if not await self._cache.set(_read_key(driver_id), b"1", px=self._window_ms, nx=True):
            # Another poll of this driver is reading the car right now: answer what the database knows.
            answer = await self._from_database(driver_id)
            answer.cached = True
            return answer
        if lat is not None and lng is not None:
            # The phone's position joins the trail once per window, not on every poll: a cached poll touches
            # nothing but Redis.
            await self._tracker.record_device_location(driver_id, lat, lng)
        answer = await self._read_and_apply(driver_id, has_position=lat is not None)
        ttl = await self._cache.pttl(_read_key(driver_id))
        await self._cache.set(_answer_key(driver_id), answer.SerializeToString(), px=max(1, ttl if ttl > 0 else 1))
        return answer

    async def _read_and_apply(self, driver_id: str, *, has_position: bool) -> pb.PollChargingStateResponse:
        connection = await active_connection(self._engine, driver_id)
        if connection is None:
            return _problem(pb.POLL_ERROR_NO_VEHICLE_CONNECTION)
        if connection.vehicle_id is None:
            return _problem(pb.POLL_ERROR_NO_VEHICLE_SELECTED)
        credentials = StoredCredentials(self._engine, self._cipher, connection.id)
        reader = self._tesla.reader(credentials)
        active = await self._active(driver_id)
        # Waking costs the fleet API money: only for a driver who is charging or just sent the phone's position.
        may_wake = active is not None or has_position
        try:
            reading = await read_vehicle(reader, connection.vehicle_id, may_wake=may_wake)
        except VehicleAsleep:
            answer = await self._from_database(driver_id)
            answer.vehicle_asleep = True
            return answer
        except TokenExpired:
            await credentials.deactivate()
            return _problem(pb.POLL_ERROR_TOKEN_EXPIRED)
        except NoConnection:
            return _problem(pb.POLL_ERROR_NO_VEHICLE_CONNECTION)
        except RateLimited as limited:
            # The window stretches to the provider's Retry-After: no read before it.
            await self._cache.pexpire(_read_key(driver_id), max(self._window_ms, int(limited.retry_after_s * 1000)))
            answer = await self._from_database(driver_id)
            answer.error = pb.POLL_ERROR_RATE_LIMITED
            return answer
        except VehicleApiError as failure:
            answer = await self._from_database(driver_id)
            answer.error = pb.POLL_ERROR_VEHICLE_UNAVAILABLE if failure.retryable else pb.POLL_ERROR_POLL_FAILED
            return answer
        applied = await self._tracker.apply(
            driver_id, connection.vehicle_id, pb.SESSION_SOURCE_TESLA_API, reading.telemetry()
        )
        return await self._answer(applied, reading)

    async def _active(self, driver_id: str) -> sa.RowMapping | None:
        async with self._engine.connect() as conn:
            row: sa.RowMapping | None = (
                (await conn.execute(sa.select(S).where(S.c.driver_id == driver_id, S.c.session_end.is_(None)).limit(1)))
                .mappings()
                .first()
            )
        return row

    async def _from_database(self, driver_id: str) -> pb.PollChargingStateResponse:
        active = await self._active(driver_id)
        if active is None:
            return pb.PollChargingStateResponse(
                recommended_interval_s=domain.recommended_interval_s(charging=None, minutes_to_full=None)
            )
        answer = pb.PollChargingStateResponse(
            session_active=True,
            session_id=str(active["id"]),
            duration_minutes=domain.duration_minutes(active["session_start"], self._clock()),
            recommended_interval_s=domain.recommended_interval_s(charging=True, minutes_to_full=None),
        )
        if active["kwh_delivered"] is not None:
            answer.kwh_delivered = active["kwh_delivered"]
        return answer

    async def _answer(self, applied: Applied, reading: VehicleReading) -> pb.PollChargingStateResponse:
        answer = pb.PollChargingStateResponse(
            recommended_interval_s=domain.recommended_interval_s(
                charging=reading.charging, minutes_to_full=reading.minutes_to_full
            )
        )
        if reading.battery_pct is not None:
            answer.battery_level = reading.battery_pct
        if reading.charging and reading.minutes_to_full is not None:
            answer.minutes_to_full = reading.minutes_to_full
        if reading.charging and reading.power_kw is not None:
            answer.charger_power_kw = reading.power_kw
        session = applied.session
        if session is None:
            return answer
        answer.session_id = str(session["id"])
        if session["kwh_delivered"] is not None:
            answer.kwh_delivered = session["kwh_delivered"]
        if applied.action is domain.Action.END:
            answer.session_ended = True
            answer.duration_minutes = session["duration_minutes"]
            await self._attach_grant(answer, str(session["id"]))
        else:
            answer.session_active = True
            answer.session_reopened = applied.action is domain.Action.REOPEN
            answer.duration_minutes = domain.duration_minutes(session["session_start"], reading.read_at)
        return answer

    async def _attach_grant(self, answer: pb.PollChargingStateResponse, session_id: str) -> None:
        """The reward of a session that just ended, if incentives granted it within GRANT_WAIT_S (the evaluation
        runs through the outbox; a later grant shows on the session)."""
        if self._incentives is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GRANT_WAIT_S
        while loop.time() < deadline:
            try:
                reply = await self._incentives.BatchGetSessionGrants(
                    incentives_pb2.BatchGetSessionGrantsRequest(session_ids=[session_id]), timeout=GRANT_WAIT_S
                )
            except Exception:
                return
            for grant in reply.grants:
                if grant.status != incentives_pb2.GRANT_STATUS_CLAWED_BACK:
                    answer.incentive_granted = True
                    answer.incentive_amount_cents = grant.amount_cents
                    answer.incentive_reward_kind = grant.reward_kind
                    return
            await asyncio.sleep(0.1)


async def read_vehicle(reader: VehicleReader, vehicle_id: str, *, may_wake: bool) -> VehicleReading:
    """One read; when the car sleeps and waking is justified, wake it and read again (WAKE_ATTEMPTS in all)."""
    attempts = WAKE_ATTEMPTS if may_wake else 1
    for attempt in range(1, attempts + 1):
        try:
            return await reader.read(vehicle_id)
        except VehicleAsleep:
            if attempt == attempts:
                raise
            await reader.wake(vehicle_id)
            await asyncio.sleep(WAKE_PAUSE_S)
    raise VehicleAsleep("the vehicle did not wake")


def _problem(error: int) -> pb.PollChargingStateResponse:
    return pb.PollChargingStateResponse(
        error=error,  # type: ignore[arg-type]
        recommended_interval_s=domain.recommended_interval_s(charging=None, minutes_to_full=None),
    )
