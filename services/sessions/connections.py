"""Drivers' vehicle connections: their tokens, encrypted at rest, as the adapters' Credentials."""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.sessions import store
from services.sessions.adapters.smartcar import SmartcarClient
from services.sessions.adapters.tesla import TeslaFleetClient
from services.sessions.adapters.vehicles import NoConnection, OAuthTokens, VehicleReader
from services.sessions.tokens import TokenCipher, TokenDecryptionError

TESLA = "tesla"
SMARTCAR = "smartcar"


@dataclasses.dataclass(frozen=True)
class Connection:
    id: uuid.UUID
    driver_id: str
    provider: str
    vehicle_id: str | None
    vin: str | None
    telemetry_enabled: bool


async def active_connection(engine: AsyncEngine, driver_id: str, provider: str | None = TESLA) -> Connection | None:
    """The driver's active connection to `provider`; with provider None, the one whose vehicle the sessions
    service follows (a connection with a selected vehicle first, then the newest)."""
    query = sa.select(
        store.vehicle_connections.c.id,
        store.vehicle_connections.c.driver_id,
        store.vehicle_connections.c.provider,
        store.vehicle_connections.c.vehicle_id,
        store.vehicle_connections.c.vin,
        store.vehicle_connections.c.telemetry_enabled,
    ).where(store.vehicle_connections.c.driver_id == driver_id, store.vehicle_connections.c.active)
    if provider is not None:
        query = query.where(store.vehicle_connections.c.provider == provider)
    query = query.order_by(
        store.vehicle_connections.c.vehicle_id.is_(None), store.vehicle_connections.c.created_at.desc()
    ).limit(1)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return None if row is None else Connection(*row)


# The connection the sessions service follows for a driver (active_connection with any provider) and its stored
# tokens, in one statement; $1 driver.
_FOLLOWED_CONNECTION = """
SELECT id, driver_id, provider, vehicle_id, vin, telemetry_enabled,
    access_token, refresh_token, access_expires_at, account_id
FROM vehicle_connections WHERE driver_id = $1 AND active
ORDER BY vehicle_id IS NULL, created_at DESC LIMIT 1
"""


class VehicleReaders:
    """The one way the poll, the watcher and EV codes read a car: the reader of whichever provider the driver's
    connection is on (Tesla Fleet API or Smartcar), with that connection's stored tokens.

    The read path is hot (every poll outside the window, every watcher read), so this process keeps the driver's
    connection for CONNECTION_TTL_S and the connection's decrypted tokens until they near their expiry, instead
    of a query and two AES-GCM decryptions per read. Rotations stay correct across replicas: only a reader's
    first token load is served from memory; the reloads of a refresh (after a 401, or near expiry) read the
    database (StoredCredentials), and every store updates the memory. A link removed on another replica is
    noticed within CONNECTION_TTL_S.

    When the connection is not in memory (once per CONNECTION_TTL_S per driver and replica: with the app polling
    every minute over a few replicas, a good share of reads), the connection and its tokens come in one statement
    on asyncpg's pool (`pool`) — raw asyncpg on the read path, measured by bench-poll: through SQLAlchemy it was two
    queries, each wrapped in BEGIN … ROLLBACK, about a tenth of a fresh poll's CPU.
    """

    CONNECTION_TTL_S = 300.0
    MAX_CACHED = 200_000

    def __init__(
        self,
        engine: AsyncEngine,
        cipher: TokenCipher,
        *,
        tesla: TeslaFleetClient,
        smartcar: SmartcarClient | None = None,
        pool: asyncpg.Pool | None = None,
    ) -> None:
        self._engine = engine
        self._pool = pool
        self._cipher = cipher
        self._tesla = tesla
        self._smartcar = smartcar
        self._connections: dict[str, tuple[float, Connection]] = {}
        self._tokens: dict[uuid.UUID, OAuthTokens] = {}

    async def connection(self, driver_id: str) -> Connection | None:
        """The driver's followed connection (active_connection with any provider), remembered a few seconds."""
        now = time.monotonic()
        known = self._connections.get(driver_id)
        if known is not None and now - known[0] < self.CONNECTION_TTL_S:
            return known[1]
        found = await (
            self._followed(driver_id) if self._pool is not None else active_connection(self._engine, driver_id, None)
        )
        if found is not None:  # a driver without a link may link any moment: asked again next time
            if len(self._connections) >= self.MAX_CACHED:
                self._connections.clear()
            self._connections[driver_id] = (now, found)
        return found

    async def _followed(self, driver_id: str) -> Connection | None:
        """The followed connection from the database, its tokens remembered on the way."""
        assert self._pool is not None
        async with self._pool.acquire() as db:
            row = await db.fetchrow(_FOLLOWED_CONNECTION, driver_id)
        if row is None:
            return None
        connection_id = uuid.UUID(bytes=row["id"].bytes)
        found = Connection(
            connection_id, row["driver_id"], row["provider"], row["vehicle_id"], row["vin"], row["telemetry_enabled"]
        )
        try:
            tokens = OAuthTokens(
                self._cipher.decrypt(row["access_token"], str(connection_id)),
                self._cipher.decrypt(row["refresh_token"], str(connection_id)),
                row["access_expires_at"],
                account_id=row["account_id"],
            )
        except TokenDecryptionError:
            return found  # not remembered: the reader's load reads them again and reports the connection unusable
        _remember_tokens(self._tokens, connection_id, tokens)
        return found

    def forget(self, connection: Connection) -> None:
        """The connection stopped working (its tokens refused, or gone): the next read asks the database."""
        self._connections.pop(connection.driver_id, None)
        self._tokens.pop(connection.id, None)

    def credentials(self, connection: Connection) -> StoredCredentials:
        return _RememberedCredentials(self._engine, self._cipher, connection.id, self._tokens)

    def reader(self, connection: Connection, credentials: StoredCredentials | None = None) -> VehicleReader:
        credentials = credentials or self.credentials(connection)
        if connection.provider == SMARTCAR:
            if self._smartcar is None:
                raise NoConnection("Smartcar is not configured")
            return self._smartcar.reader(credentials)
        return self._tesla.reader(credentials)


async def connected_driver(engine: AsyncEngine, provider: str, account_id: str) -> str | None:
    """The driver whose live connection is to this provider account (the most recently linked), if any."""
    async with engine.connect() as conn:
        return (
            await conn.execute(
                sa.select(store.vehicle_connections.c.driver_id)
                .where(
                    store.vehicle_connections.c.provider == provider,
                    store.vehicle_connections.c.account_id == account_id,
                    store.vehicle_connections.c.active,
                )
                .order_by(store.vehicle_connections.c.updated_at.desc())
                .limit(1)
            )
        ).scalar()


async def smartcar_driver(engine: AsyncEngine, vehicle_id: str) -> str | None:
    """The driver whose live Smartcar connection is to this vehicle, if any (a webhook names only the vehicle)."""
    async with engine.connect() as conn:
        connection = (
            await conn.execute(
                sa.select(store.vehicle_connections.c.driver_id).where(
                    store.vehicle_connections.c.provider == SMARTCAR,
                    store.vehicle_connections.c.active,
                    store.vehicle_connections.c.vehicle_id == vehicle_id,
                )
            )
        ).first()
    return None if connection is None else str(connection.driver_id)


async def connected_by_vin(engine: AsyncEngine, vin: str) -> tuple[str, str | None] | None:
    """(driver, selected vehicle) of the live connection to the car with this VIN, if any (a Fleet Telemetry push
    names only the VIN)."""
    async with engine.connect() as conn:
        connection = (
            await conn.execute(
                sa.select(store.vehicle_connections.c.driver_id, store.vehicle_connections.c.vehicle_id)
                .where(store.vehicle_connections.c.vin == vin, store.vehicle_connections.c.active)
                .limit(1)
            )
        ).first()
    return None if connection is None else (connection.driver_id, connection.vehicle_id)


async def save_connection(
    engine: AsyncEngine,
    cipher: TokenCipher,
    *,
    driver_id: str,
    tokens: OAuthTokens,
    vehicles: list[dict[str, Any]],
    provider: str = TESLA,
    select_first: bool = False,
) -> Connection:
    """Links (or re-links) the driver's account; the vehicle is selected when the account has exactly one (or,
    with `select_first`, the first one)."""
    connection_id = uuid.uuid4()
    only = vehicles[0] if len(vehicles) == 1 or (select_first and vehicles) else None
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(store.vehicle_connections)
            .where(
                store.vehicle_connections.c.driver_id == driver_id,
                store.vehicle_connections.c.provider == provider,
                store.vehicle_connections.c.active,
            )
            .values(active=False)
        )
        await conn.execute(
            sa.insert(store.vehicle_connections).values(
                id=connection_id,
                driver_id=driver_id,
                provider=provider,
                account_id=tokens.account_id,
                vehicle_id=None if only is None else str(only["id"]),
                vin=None if only is None else only.get("vin"),
                vehicles=vehicles,
                access_token=cipher.encrypt(tokens.access_token, str(connection_id)),
                refresh_token=cipher.encrypt(tokens.refresh_token, str(connection_id)),
                access_expires_at=tokens.expires_at,
            )
        )
    return Connection(
        connection_id,
        driver_id,
        provider,
        None if only is None else str(only["id"]),
        None if only is None else only.get("vin"),
        False,
    )


class StoredCredentials:
    """One connection's tokens in the database, decrypted on load and encrypted on store (adapters' Credentials)."""

    def __init__(self, engine: AsyncEngine, cipher: TokenCipher, connection_id: uuid.UUID) -> None:
        self._engine = engine
        self._cipher = cipher
        self._id = connection_id

    async def load(self) -> OAuthTokens:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(
                        store.vehicle_connections.c.access_token,
                        store.vehicle_connections.c.refresh_token,
                        store.vehicle_connections.c.access_expires_at,
                        store.vehicle_connections.c.account_id,
                    ).where(store.vehicle_connections.c.id == self._id, store.vehicle_connections.c.active)
                )
            ).first()
        if row is None:
            raise NoConnection("the vehicle connection is gone")
        try:
            access = self._cipher.decrypt(row.access_token, str(self._id))
            refresh = self._cipher.decrypt(row.refresh_token, str(self._id))
        except TokenDecryptionError as exc:
            raise NoConnection("the stored tokens cannot be read") from exc
        return OAuthTokens(access, refresh, row.access_expires_at, account_id=row.account_id)

    async def store(self, tokens: OAuthTokens) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(store.vehicle_connections)
                .where(store.vehicle_connections.c.id == self._id)
                .values(
                    access_token=self._cipher.encrypt(tokens.access_token, str(self._id)),
                    refresh_token=self._cipher.encrypt(tokens.refresh_token, str(self._id)),
                    access_expires_at=tokens.expires_at,
                    updated_at=sa.func.now(),
                )
            )

    async def deactivate(self) -> None:
        """Tesla refused the refresh token: the driver must connect again."""
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(store.vehicle_connections)
                .where(store.vehicle_connections.c.id == self._id)
                .values(active=False, updated_at=sa.func.now())
            )


class _RememberedCredentials(StoredCredentials):
    """StoredCredentials whose first load may come from the process's memory (see VehicleReaders)."""

    def __init__(
        self,
        engine: AsyncEngine,
        cipher: TokenCipher,
        connection_id: uuid.UUID,
        remembered: dict[uuid.UUID, OAuthTokens],
    ) -> None:
        super().__init__(engine, cipher, connection_id)
        self._remembered = remembered
        self._loaded = False

    async def load(self) -> OAuthTokens:
        if not self._loaded:
            self._loaded = True
            tokens = self._remembered.get(self._id)
            if tokens is not None:
                return tokens
        tokens = await super().load()
        self._keep(tokens)
        return tokens

    async def store(self, tokens: OAuthTokens) -> None:
        await super().store(tokens)
        self._keep(tokens)

    async def deactivate(self) -> None:
        self._remembered.pop(self._id, None)
        await super().deactivate()

    def _keep(self, tokens: OAuthTokens) -> None:
        _remember_tokens(self._remembered, self._id, tokens)


def _remember_tokens(remembered: dict[uuid.UUID, OAuthTokens], connection_id: uuid.UUID, tokens: OAuthTokens) -> None:
    if len(remembered) >= VehicleReaders.MAX_CACHED:
        remembered.clear()
    remembered[connection_id] = tokens
