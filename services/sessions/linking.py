"""Linking a driver's Tesla account: the consent URL with PKCE and a single-use state (10 min), the callback that
exchanges the code and stores the tokens encrypted, the status, the choice of vehicle, Fleet Telemetry, and
unlinking; and the same for a car shared through Smartcar Connect (SmartcarLinking)."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import FailedPrecondition, NotFound, Unavailable
from services.sessions import store
from services.sessions.adapters.smartcar import SmartcarClient
from services.sessions.adapters.tesla import TeslaFleetClient, TeslaVehicle
from services.sessions.adapters.vehicles import TokenExpired, VehicleApiError, new_state
from services.sessions.connections import SMARTCAR, TESLA, StoredCredentials, active_connection, save_connection
from services.sessions.reasons import Reason
from services.sessions.tokens import TokenCipher, TokenDecryptionError
from services.sessions.tracking import SessionTracker

STATES = store.oauth_states
STATE_VALIDITY = datetime.timedelta(minutes=10)


@dataclasses.dataclass(frozen=True)
class Consent:
    """Where to send the driver to consent, and the single-use state that brings the browser back."""

    authorization_url: str
    state: str


@dataclasses.dataclass(frozen=True)
class Vehicle:
    """A car of a linked account, as the connection keeps it (None where the provider did not say)."""

    id: str
    vin: str | None = None
    display_name: str | None = None
    model: str | None = None
    color: str | None = None
    year: int | None = None

    @classmethod
    def stored(cls, stored: dict[str, Any]) -> Vehicle:
        return cls(
            id=str(stored["id"]),
            vin=stored.get("vin") or None,
            display_name=stored.get("display_name") or None,
            model=stored.get("model") or None,
            color=stored.get("color") or None,
            year=None if stored.get("year") is None else int(stored["year"]),
        )


@dataclasses.dataclass(frozen=True)
class TeslaStatus:
    """The driver's Tesla link: `needs_reconnect` when a link died (Tesla refused our refresh token)."""

    connected: bool
    needs_reconnect: bool = False
    vehicle_id: str | None = None
    vin: str | None = None
    vehicles: tuple[Vehicle, ...] = ()
    telemetry_enabled: bool = False
    selected: Vehicle | None = None  # the vehicle_id's among `vehicles`


@dataclasses.dataclass(frozen=True)
class TelemetryConfigured:
    telemetry_enabled: bool
    vin: str


@dataclasses.dataclass(frozen=True)
class SmartcarStatus:
    connected: bool
    needs_reconnect: bool = False
    vehicle_id: str = ""
    vehicle_ids: tuple[str, ...] = ()


def _back_to(url: str, success: bool, error: str) -> str:
    return f"{url}?{urlencode({'success': 'true'} if success else {'error': error})}"


class TeslaLinking:
    def __init__(
        self,
        engine: AsyncEngine,
        tesla: TeslaFleetClient,
        cipher: TokenCipher,
        tracker: SessionTracker,
        *,
        driver_app_url: str,
        telemetry_hostname: str = "telemetry.nerava.network",
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._engine = engine
        self._tesla = tesla
        self._telemetry_hostname = telemetry_hostname
        self._cipher = cipher
        self._tracker = tracker
        self._app = driver_app_url.rstrip("/")
        self._clock = clock

    async def connect(self, driver_id: str) -> Consent:
        start = self._tesla.start_authorization()
        await keep_state(
            self._engine,
            self._cipher,
            driver_id=driver_id,
            provider=TESLA,
            state=start.state,
            code_verifier=start.code_verifier,
            now=self._clock(),
        )
        return Consent(authorization_url=start.url, state=start.state)

    async def callback(self, state: str, code: str, error: str) -> str:
        """Where the browser goes back to: never an error page, always the app, with `?success=true` or
        `?error=…`."""
        claimed = await claim_state(self._engine, state, TESLA, self._clock())
        if claimed is None:
            return self._back(error="invalid_state")
        if error or not code:
            return self._back(error=error or "missing_code")
        try:
            verifier = self._cipher.decrypt(claimed.code_verifier, state)
            tokens = await self._tesla.exchange_code(code, verifier)
            vehicles = await self._tesla.list_vehicles(tokens.access_token)
        except (VehicleApiError, TokenDecryptionError):
            return self._back(error="token_exchange_failed")
        await save_connection(
            self._engine, self._cipher, driver_id=claimed.driver_id, tokens=tokens, vehicles=vehicle_records(vehicles)
        )
        return self._back(success=True)

    def _back(self, *, success: bool = False, error: str = "") -> str:
        return _back_to(f"{self._app}/tesla-connected", success, error)

    async def status(self, driver_id: str) -> TeslaStatus:
        async with self._engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(store.vehicle_connections).where(
                            store.vehicle_connections.c.driver_id == driver_id,
                            store.vehicle_connections.c.provider == TESLA,
                            store.vehicle_connections.c.active,
                        )
                    )
                )
                .mappings()
                .first()
            )
            ever = (
                row is not None
                or (
                    await conn.execute(
                        sa.select(sa.func.count()).where(
                            store.vehicle_connections.c.driver_id == driver_id,
                            store.vehicle_connections.c.provider == TESLA,
                        )
                    )
                ).scalar_one()
                > 0
            )
        if row is None:
            # A connection that died (Tesla refused our refresh token) asks the driver to connect again.
            return TeslaStatus(connected=False, needs_reconnect=ever)
        vehicles = tuple(Vehicle.stored(v) for v in row["vehicles"])
        return TeslaStatus(
            connected=True,
            vehicle_id=row["vehicle_id"] or None,
            vin=row["vin"] or None,
            vehicles=vehicles,
            telemetry_enabled=row["telemetry_enabled"],
            selected=next((v for v in vehicles if v.id == row["vehicle_id"]), None),
        )

    async def configure_telemetry(self, driver_id: str) -> TelemetryConfigured:
        """Asks Tesla to stream Fleet Telemetry for the selected car; the connection then is in telemetry mode (no
        polling, no watcher reads: the signed pushes drive its sessions). Idempotent."""
        connection = await active_connection(self._engine, driver_id)
        if connection is None:
            raise FailedPrecondition(Reason.NO_VEHICLE_CONNECTION, "no Tesla account is linked; connect first")
        if not connection.vin:
            raise FailedPrecondition(Reason.NO_VEHICLE_CONNECTION, "select a vehicle first")
        reader = self._tesla.reader(StoredCredentials(self._engine, self._cipher, connection.id))
        try:
            streaming = await reader.configure_telemetry(connection.vin, hostname=self._telemetry_hostname)
        except TokenExpired as exc:
            raise FailedPrecondition(
                Reason.VEHICLE_TOKEN_EXPIRED, "Tesla refused the connection; connect again"
            ) from exc
        except VehicleApiError as exc:
            raise Unavailable(Reason.VEHICLE_UNAVAILABLE, "Tesla did not accept the telemetry configuration") from exc
        if not streaming:
            raise Unavailable(Reason.VEHICLE_UNAVAILABLE, "Tesla did not configure the vehicle; try again")
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(store.vehicle_connections)
                .where(store.vehicle_connections.c.id == connection.id)
                .values(telemetry_enabled=True, updated_at=sa.func.now())
            )
        return TelemetryConfigured(telemetry_enabled=True, vin=connection.vin)

    async def select_vehicle(self, driver_id: str, vehicle_id: str) -> Vehicle:
        connection = await active_connection(self._engine, driver_id)
        if connection is None:
            raise FailedPrecondition(Reason.NO_VEHICLE_CONNECTION, "no Tesla account is linked; connect first")
        async with self._engine.begin() as conn:
            vehicles = (
                await conn.execute(
                    sa.select(store.vehicle_connections.c.vehicles).where(
                        store.vehicle_connections.c.id == connection.id
                    )
                )
            ).scalar_one()
            match = next((v for v in vehicles if str(v["id"]) == vehicle_id), None)
            if match is None:
                raise NotFound(
                    Reason.VEHICLE_NOT_FOUND, "the vehicle is not on the linked account", {"vehicle_id": vehicle_id}
                )
            await conn.execute(
                sa.update(store.vehicle_connections)
                .where(store.vehicle_connections.c.id == connection.id)
                .values(vehicle_id=vehicle_id, vin=match.get("vin"))
            )
        return Vehicle.stored(match)

    async def disconnect(self, driver_id: str) -> None:
        """Ends an active session (MANUAL) first, then deletes the tokens. Idempotent."""
        await _unlink(self._engine, self._tracker, driver_id, TESLA)


async def keep_state(
    engine: AsyncEngine,
    cipher: TokenCipher,
    *,
    driver_id: str,
    provider: str,
    state: str,
    code_verifier: str,
    now: datetime.datetime,
) -> None:
    """The single-use state of a consent just started (and its PKCE verifier, encrypted), valid 10 minutes."""
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(STATES).values(
                state=state,
                driver_id=driver_id,
                provider=provider,
                code_verifier=cipher.encrypt(code_verifier, state),
                expires_at=now + STATE_VALIDITY,
            )
        )


async def claim_state(engine: AsyncEngine, state: str, provider: str, now: datetime.datetime) -> sa.Row[Any] | None:
    """(driver_id, code_verifier) of a valid state of that kind of consent, marked used; None when unknown, of
    another kind (a sign-in's state at the connect callback), expired or used already."""
    async with engine.begin() as conn:
        # Single use: whoever marks the state used first owns it; a replayed callback finds it used.
        return (
            await conn.execute(
                sa.update(STATES)
                .where(
                    STATES.c.state == state,
                    STATES.c.provider == provider,
                    STATES.c.used_at.is_(None),
                    STATES.c.expires_at > now,
                )
                .values(used_at=now)
                .returning(STATES.c.driver_id, STATES.c.code_verifier)
            )
        ).first()


async def _unlink(engine: AsyncEngine, tracker: SessionTracker, driver_id: str, provider: str) -> None:
    """Ends the driver's active sessions (MANUAL), then deletes the provider's tokens."""
    sessions = store.charging_sessions
    async with engine.connect() as conn:
        open_ids = (
            (
                await conn.execute(
                    sa.select(sessions.c.id).where(sessions.c.driver_id == driver_id, sessions.c.session_end.is_(None))
                )
            )
            .scalars()
            .all()
        )
    for session_id in open_ids:
        await tracker.end_by_hand(session_id, driver_id)
    async with engine.begin() as conn:
        await conn.execute(
            sa.delete(store.vehicle_connections).where(
                store.vehicle_connections.c.driver_id == driver_id, store.vehicle_connections.c.provider == provider
            )
        )


class SmartcarLinking:
    """Linking a car through Smartcar Connect (OAuth 2 authorization code with a single-use state; Smartcar's
    Connect takes no PKCE), its status and unlinking."""

    def __init__(
        self,
        engine: AsyncEngine,
        smartcar: SmartcarClient,
        cipher: TokenCipher,
        tracker: SessionTracker,
        *,
        driver_app_url: str,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._engine = engine
        self._smartcar = smartcar
        self._cipher = cipher
        self._tracker = tracker
        self._app = driver_app_url.rstrip("/")
        self._clock = clock

    async def connect(self, driver_id: str) -> Consent:
        state = new_state()
        await keep_state(
            self._engine,
            self._cipher,
            driver_id=driver_id,
            provider=SMARTCAR,
            state=state,
            code_verifier="",
            now=self._clock(),
        )
        return Consent(authorization_url=self._smartcar.authorization_url(state=state), state=state)

    async def callback(self, state: str, code: str, error: str) -> str:
        """Where the browser goes back to: never an error page, always the app, with `?success=true` or
        `?error=…`."""
        claimed = await claim_state(self._engine, state, SMARTCAR, self._clock())
        if claimed is None:
            return self._back(error="invalid_state")
        if error or not code:
            return self._back(error=error or "missing_code")
        try:
            tokens = await self._smartcar.exchange_code(code)
            account = await self._smartcar.user_id(tokens.access_token)
            vehicle_ids = await self._smartcar.list_vehicles(tokens.access_token)
        except VehicleApiError:
            return self._back(error="token_exchange_failed")
        if not vehicle_ids:
            return self._back(error="no_vehicle_shared")
        tokens = dataclasses.replace(tokens, account_id=account)
        # Smartcar lets the driver share several cars; the first is followed (the one Connect listed first).
        await save_connection(
            self._engine,
            self._cipher,
            driver_id=claimed.driver_id,
            tokens=tokens,
            vehicles=[{"id": vehicle_ids[0]}] + [{"id": v} for v in vehicle_ids[1:]],
            provider=SMARTCAR,
            select_first=True,
        )
        return self._back(success=True)

    def _back(self, *, success: bool = False, error: str = "") -> str:
        return _back_to(f"{self._app}/smartcar-connected", success, error)

    async def status(self, driver_id: str) -> SmartcarStatus:
        async with self._engine.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(
                            store.vehicle_connections.c.active,
                            store.vehicle_connections.c.vehicle_id,
                            store.vehicle_connections.c.vehicles,
                        )
                        .where(
                            store.vehicle_connections.c.driver_id == driver_id,
                            store.vehicle_connections.c.provider == SMARTCAR,
                        )
                        .order_by(
                            store.vehicle_connections.c.active.desc(), store.vehicle_connections.c.created_at.desc()
                        )
                    )
                )
                .mappings()
                .all()
            )
        if not rows or not rows[0]["active"]:
            return SmartcarStatus(connected=False, needs_reconnect=bool(rows))
        row = rows[0]
        return SmartcarStatus(
            connected=True,
            vehicle_id=row["vehicle_id"] or "",
            vehicle_ids=tuple(str(v["id"]) for v in row["vehicles"]),
        )

    async def disconnect(self, driver_id: str) -> None:
        """Ends an active session (MANUAL) first, then deletes the tokens. Idempotent."""
        await _unlink(self._engine, self._tracker, driver_id, SMARTCAR)


def vehicle_records(vehicles: Sequence[TeslaVehicle]) -> list[dict[str, Any]]:
    """The account's vehicles as the connection keeps them (vehicle_connections.vehicles)."""
    return [
        {"id": v.id, "vin": v.vin, "display_name": v.display_name, "model": v.model, "year": v.year, "color": v.color}
        for v in vehicles
    ]
