"""Drivers' vehicle connections: their tokens, encrypted at rest, as the adapters' Credentials."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.sessions import store
from services.sessions.adapters.smartcar import SmartcarClient
from services.sessions.adapters.tesla import TeslaFleetClient
from services.sessions.adapters.vehicles import NoConnection, OAuthTokens, VehicleReader
from services.sessions.tokens import TokenCipher, TokenDecryptionError

V = store.vehicle_connections
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
    query = sa.select(V.c.id, V.c.driver_id, V.c.provider, V.c.vehicle_id, V.c.vin, V.c.telemetry_enabled).where(
        V.c.driver_id == driver_id, V.c.active
    )
    if provider is not None:
        query = query.where(V.c.provider == provider)
    query = query.order_by(V.c.vehicle_id.is_(None), V.c.created_at.desc()).limit(1)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return None if row is None else Connection(*row)


class VehicleReaders:
    """The one way the poll, the watcher and EV codes read a car: the reader of whichever provider the driver's
    connection is on (Tesla Fleet API or Smartcar), with that connection's stored tokens."""

    def __init__(
        self,
        engine: AsyncEngine,
        cipher: TokenCipher,
        *,
        tesla: TeslaFleetClient,
        smartcar: SmartcarClient | None = None,
    ) -> None:
        self._engine = engine
        self._cipher = cipher
        self._tesla = tesla
        self._smartcar = smartcar

    def credentials(self, connection: Connection) -> StoredCredentials:
        return StoredCredentials(self._engine, self._cipher, connection.id)

    def reader(self, connection: Connection, credentials: StoredCredentials | None = None) -> VehicleReader:
        credentials = credentials or self.credentials(connection)
        if connection.provider == SMARTCAR:
            if self._smartcar is None:
                raise NoConnection("Smartcar is not configured")
            return self._smartcar.reader(credentials)
        return self._tesla.reader(credentials)


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
            sa.update(V).where(V.c.driver_id == driver_id, V.c.provider == provider, V.c.active).values(active=False)
        )
        await conn.execute(
            sa.insert(V).values(
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
                    sa.select(V.c.access_token, V.c.refresh_token, V.c.access_expires_at, V.c.account_id).where(
                        V.c.id == self._id, V.c.active
                    )
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
                sa.update(V)
                .where(V.c.id == self._id)
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
            await conn.execute(sa.update(V).where(V.c.id == self._id).values(active=False, updated_at=sa.func.now()))
