"""Drivers' vehicle connections: their tokens, encrypted at rest, as the adapters' Credentials."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.sessions import store
from services.sessions.adapters.vehicles import NoConnection, OAuthTokens
from services.sessions.tokens import TokenCipher, TokenDecryptionError

V = store.vehicle_connections
TESLA = "tesla"


@dataclasses.dataclass(frozen=True)
class Connection:
    id: uuid.UUID
    driver_id: str
    provider: str
    vehicle_id: str | None
    vin: str | None
    telemetry_enabled: bool


async def active_connection(engine: AsyncEngine, driver_id: str, provider: str = TESLA) -> Connection | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(V.c.id, V.c.driver_id, V.c.provider, V.c.vehicle_id, V.c.vin, V.c.telemetry_enabled).where(
                    V.c.driver_id == driver_id, V.c.provider == provider, V.c.active
                )
            )
        ).first()
    return None if row is None else Connection(*row)


async def save_connection(
    engine: AsyncEngine,
    cipher: TokenCipher,
    *,
    driver_id: str,
    tokens: OAuthTokens,
    vehicles: list[dict[str, Any]],
    provider: str = TESLA,
) -> Connection:
    """Links (or re-links) the driver's account; the vehicle is selected when the account has exactly one."""
    connection_id = uuid.uuid4()
    only = vehicles[0] if len(vehicles) == 1 else None
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
