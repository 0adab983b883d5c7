"""PollChargingState, the hot path: at most one vehicle read per driver per window (Redis, shared by every replica),
the wake policy, vehicle-side problems answered in-band, and the reading applied through the state machine.

The window: the first poll takes `poll:read:<driver>` (one Lua script: the time until which it is taken) and
reads the car; every other poll inside the window answers the last stored answer (`poll:answer:<driver>`, marked
cached) or, when the first read is still in flight, the session as the database has it. So 20 concurrent polls
of one driver, on any replicas, cost one vehicle-API call. The session watcher (watching.py) reads through
`watch`, inside the same window: an app poll and a watcher read never both reach the vehicle API within it.
The provider's 429 stretches the window to its Retry-After, for both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
from collections.abc import Awaitable, Callable

import redis.asyncio as redis
from nerava.incentives.v1 import incentives_pb2, incentives_pb2_grpc
from nerava.sessions.v1 import sessions_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from services.sessions import chargers, domain
from services.sessions.adapters.vehicles import (
    NoConnection,
    RateLimited,
    TokenExpired,
    VehicleApiError,
    VehicleAsleep,
    VehicleReader,
    VehicleReading,
)
from services.sessions.connections import SMARTCAR, VehicleReaders
from services.sessions.tracking import Applied, SessionTracker

WAKE_ATTEMPTS = 3  # reads when waking is justified (the first, then two after a wake call)
WAKE_PAUSE_S = 1.0
GRANT_WAIT_S = 1.0  # after an end: how long the answer waits for incentives' grant (it may land a moment later)

# The per-driver window, in one round trip. KEYS: the read key, the answer key. ARGV: now (ms, the service's
# clock), the window (ms), 1 when a stored answer is wanted. The read key holds the time (ms) until which the
# window is taken; it is compared with the caller's clock (so an injected clock drives it in tests), its Redis
# TTL only cleans it up. Returns the stored answer (taken, answer wanted and present), 0 (taken, no answer:
# someone is reading the car now), or 1 (the caller took the window and reads the car).
_TAKE_WINDOW = """
local held = tonumber(redis.call('GET', KEYS[1]))
local now = tonumber(ARGV[1])
if held and now < held then
  if ARGV[3] == '1' then
    local answer = redis.call('GET', KEYS[2])
    if answer then return answer end
  end
  return 0
end
local window = tonumber(ARGV[2])
redis.call('SET', KEYS[1], now + window, 'PX', window)
redis.call('DEL', KEYS[2])
return 1
"""


def _read_key(driver_id: str) -> str:
    return f"poll:read:{driver_id}"


def _answer_key(driver_id: str) -> str:
    return f"poll:answer:{driver_id}"


def _ms(moment: datetime.datetime) -> int:
    return int(moment.timestamp() * 1000)


class ReadOutcome(enum.Enum):
    """What a server-side read (the watcher's) came to, so the watcher knows when to come back."""

    READ = "read"  # the car answered and the reading went through the state machine
    WINDOW_TAKEN = "window_taken"  # the app (or another replica) read the car within the window
    TELEMETRY = "telemetry"  # the driver is in Fleet Telemetry mode: pushes follow the session, no reads
    ASLEEP = "asleep"  # not woken (the watcher never wakes a car): the stale rule ends the session if it stays so
    RATE_LIMITED = "rate_limited"  # the provider's 429: not before its Retry-After
    FAILED = "failed"  # no connection, expired tokens, an unavailable API: try again next interval


@dataclasses.dataclass(frozen=True)
class WatchRead:
    outcome: ReadOutcome
    retry_after_s: float = 0.0


_FAILED = WatchRead(ReadOutcome.FAILED)


class Poller:
    def __init__(
        self,
        cache: redis.Redis,
        *,
        tracker: SessionTracker,
        readers: VehicleReaders,
        incentives: incentives_pb2_grpc.IncentivesServiceAsyncStub | None,
        window_s: float = domain.POLL_WINDOW.total_seconds(),
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._cache = cache
        self._tracker = tracker
        self._readers = readers
        self._incentives = incentives
        self._window_ms = max(1, int(window_s * 1000))
        self._clock = clock
        self._take = cache.register_script(_TAKE_WINDOW)

    async def _take_window(self, driver_id: str, *, want_answer: bool) -> int | bytes:
        taken: int | bytes = await self._take(
            keys=[_read_key(driver_id), _answer_key(driver_id)],
            args=[_ms(self._clock()), self._window_ms, 1 if want_answer else 0],
        )
        return taken

    async def _keep_answer(self, driver_id: str, answer: pb.PollChargingStateResponse) -> None:
        """The answer of this window's read, for the other polls of the window (same TTL as the window)."""
        await self._cache.set(_answer_key(driver_id), answer.SerializeToString(), px=self._window_ms)

    async def _back_off(self, driver_id: str, retry_after_s: float) -> None:
        """The provider's 429: the window stretches to its Retry-After, for the poll and the watcher alike."""
        hold_ms = max(self._window_ms, int(retry_after_s * 1000))
        await self._cache.set(_read_key(driver_id), _ms(self._clock()) + hold_ms, px=hold_ms)

    async def poll(
        self, driver_id: str, lat: float | None, lng: float | None, *, may_wake: bool | None = None
    ) -> pb.PollChargingStateResponse:
        """The app's poll (and VerifyCharging's read, which may always wake the car): one read per window."""
        taken = await self._take_window(driver_id, want_answer=True)
        if isinstance(taken, bytes):
            answer = pb.PollChargingStateResponse.FromString(taken)
            answer.cached = True
            return answer
        if taken != 1:
            # Another poll (or the watcher) of this driver read the car within the window: the database knows it.
            answer = await self._from_database(driver_id)
            answer.cached = True
            return answer
        if lat is not None and lng is not None:
            # The phone's position joins the trail once per window, not on every poll: a cached poll touches
            # nothing but Redis.
            await self._tracker.record_device_location(driver_id, lat, lng)
        answer, _ = await self._read_and_apply(driver_id, has_position=lat is not None, may_wake=may_wake)
        if answer.error != pb.POLL_ERROR_RATE_LIMITED:
            await self._keep_answer(driver_id, answer)
        return answer

    async def watch(self, driver_id: str) -> WatchRead:
        """The watcher's read of the driver's car: inside the same window as the app's polls, never waking it."""
        taken = await self._take_window(driver_id, want_answer=False)
        if taken != 1:
            return WatchRead(ReadOutcome.WINDOW_TAKEN)
        answer, outcome = await self._read_and_apply(driver_id, has_position=False, may_wake=False)
        if outcome.outcome is not ReadOutcome.RATE_LIMITED:
            await self._keep_answer(driver_id, answer)
        return outcome

    async def _read_and_apply(
        self,
        driver_id: str,
        *,
        has_position: bool,
        may_wake: bool | None = None,
    ) -> tuple[pb.PollChargingStateResponse, WatchRead]:
        """One read of the driver's car through the state machine: the poll's answer, and what it came to."""
        connection = await self._readers.connection(driver_id)
        if connection is None:
            return _problem(pb.POLL_ERROR_NO_VEHICLE_CONNECTION), _FAILED
        if connection.vehicle_id is None:
            return _problem(pb.POLL_ERROR_NO_VEHICLE_SELECTED), _FAILED
        if connection.telemetry_enabled:
            # Fleet Telemetry pushes follow this car: no read (no polling cost), the database has the session.
            answer = await self._from_database(driver_id)
            answer.telemetry_mode = True
            return answer, WatchRead(ReadOutcome.TELEMETRY)
        credentials = self._readers.credentials(connection)
        reader = self._readers.reader(connection, credentials)

        async def charging_or_nearby() -> bool:
            # Waking costs the fleet API money: only for a driver who is charging or just sent the phone's position.
            return has_position or await self._tracker.active_session(driver_id) is not None

        try:
            reading = await read_vehicle(
                reader, connection.vehicle_id, may_wake=charging_or_nearby if may_wake is None else may_wake
            )
        except VehicleAsleep:
            answer = await self._from_database(driver_id)
            answer.vehicle_asleep = True
            return answer, WatchRead(ReadOutcome.ASLEEP)
        except TokenExpired:
            self._readers.forget(connection)
            await credentials.deactivate()
            return _problem(pb.POLL_ERROR_TOKEN_EXPIRED), _FAILED
        except NoConnection:
            self._readers.forget(connection)
            return _problem(pb.POLL_ERROR_NO_VEHICLE_CONNECTION), _FAILED
        except RateLimited as limited:
            await self._back_off(driver_id, limited.retry_after_s)
            answer = await self._from_database(driver_id)
            answer.error = pb.POLL_ERROR_RATE_LIMITED
            return answer, WatchRead(ReadOutcome.RATE_LIMITED, limited.retry_after_s)
        except VehicleApiError as failure:
            answer = await self._from_database(driver_id)
            answer.error = pb.POLL_ERROR_VEHICLE_UNAVAILABLE if failure.retryable else pb.POLL_ERROR_POLL_FAILED
            return answer, _FAILED
        source = pb.SESSION_SOURCE_SMARTCAR if connection.provider == SMARTCAR else pb.SESSION_SOURCE_TESLA_API
        applied = await self._tracker.apply(driver_id, connection.vehicle_id, source, reading.telemetry())
        return await self._answer(applied, reading), WatchRead(ReadOutcome.READ)

    async def _from_database(self, driver_id: str) -> pb.PollChargingStateResponse:
        active = await self._tracker.active_session(driver_id)
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


async def read_vehicle(
    reader: VehicleReader,
    vehicle_id: str,
    *,
    may_wake: bool | Callable[[], Awaitable[bool]],
    pause_s: float = WAKE_PAUSE_S,
) -> VehicleReading:
    """One read; when the car sleeps and waking is justified, wake it and read again (WAKE_ATTEMPTS in all).

    `may_wake` may be a question (a database read): it is asked only once the car turns out to sleep, so the usual
    read of an awake car costs no query for a decision it does not need."""
    try:
        return await reader.read(vehicle_id)
    except VehicleAsleep:
        if not (may_wake if isinstance(may_wake, bool) else await may_wake()):
            raise
    for attempt in range(2, WAKE_ATTEMPTS + 1):
        await reader.wake(vehicle_id)
        await asyncio.sleep(pause_s)
        try:
            return await reader.read(vehicle_id)
        except VehicleAsleep:
            if attempt == WAKE_ATTEMPTS:
                raise
    raise VehicleAsleep("the vehicle did not wake")


def _problem(error: int) -> pb.PollChargingStateResponse:
    return pb.PollChargingStateResponse(
        error=error,  # type: ignore[arg-type]
        recommended_interval_s=domain.recommended_interval_s(charging=None, minutes_to_full=None),
    )


# --- the native shell's geofence -------------------------------------------------------------------------------

GEOFENCE_MATCH_M = 300  # the geofence matches a charger this close


@dataclasses.dataclass(frozen=True)
class GeofencePing:
    """What a geofence ping did: a point for the active session's trail, or a poll because a charger is near."""

    matched: bool
    session_active: bool = False
    session_id: str | None = None
    already_active: bool = False  # the point went to the trail of a session active before the ping
    charger: chargers.ChargerRow | None = None  # the charger the geofence matched
    poll_error: pb.PollError | None = None  # why the car was not read


class GeofencePings:
    """BackgroundPing: the driver's phone entered a charger's geofence (or moved while a session is active)."""

    def __init__(self, reads: AsyncEngine, tracker: SessionTracker, poller: Poller) -> None:
        self._reads = reads
        self._tracker = tracker
        self._poller = poller

    async def ping(self, driver_id: str, lat: float, lng: float) -> GeofencePing:
        active = await self._tracker.active_session_id(driver_id)
        if active is not None:
            await self._tracker.record_device_location(driver_id, lat, lng)
            return GeofencePing(matched=True, session_active=True, session_id=active, already_active=True)
        nearest = await chargers.nearest_charger(self._reads, lat, lng, within_m=GEOFENCE_MATCH_M)
        if nearest is None:
            return GeofencePing(matched=False)
        answer = await self._poller.poll(driver_id, lat, lng)
        return GeofencePing(
            matched=True,
            session_active=answer.session_active,
            session_id=answer.session_id or None,
            charger=nearest,
            poll_error=answer.error if answer.HasField("error") else None,
        )
