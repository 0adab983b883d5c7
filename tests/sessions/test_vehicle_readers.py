"""VehicleReaders on asyncpg's pool: a driver's followed connection and its tokens in one statement, the tokens
served from memory on a reader's first load, and stored tokens that cannot be decrypted still refused."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.config import Env
from services.common.db import open_asyncpg_pool
from services.sessions import store
from services.sessions.adapters.tesla import TeslaFleetClient
from services.sessions.adapters.vehicles import NoConnection, OAuthTokens
from services.sessions.config import SessionsSettings
from services.sessions.connections import VehicleReaders, save_connection
from services.sessions.tokens import TokenCipher

V = store.vehicle_connections
EXPIRES = datetime.datetime(2026, 6, 10, 16, 0, tzinfo=datetime.UTC)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_asyncpg_pool(database_url, "sessions", size=2)
    yield pool
    await pool.close()


@pytest.fixture
async def readers(engine: AsyncEngine, pool: asyncpg.Pool) -> AsyncIterator[tuple[VehicleReaders, TokenCipher]]:
    cipher = TokenCipher.from_config(SessionsSettings.from_env(Env.development()).vehicle_token_keys.value)
    tesla = TeslaFleetClient(client_id="c", client_secret="s", redirect_uri="http://127.0.0.1/callback")
    yield VehicleReaders(engine, cipher, tesla=tesla, pool=pool), cipher
    await tesla.aclose()


async def _link(engine: AsyncEngine, cipher: TokenCipher, driver: str) -> uuid.UUID:
    tokens = OAuthTokens("access-1", "refresh-1", EXPIRES, account_id="acct-7")
    saved = await save_connection(
        engine, cipher, driver_id=driver, tokens=tokens, vehicles=[{"id": "v-1", "vin": "5YJ3E1EA0PF000001"}]
    )
    return saved.id


async def test_the_connection_and_its_tokens_come_in_one_statement_and_the_first_load_is_from_memory(
    engine: AsyncEngine, readers: tuple[VehicleReaders, TokenCipher]
) -> None:
    vehicle_readers, cipher = readers
    driver = str(uuid.uuid4())
    assert await vehicle_readers.connection(driver) is None
    connection_id = await _link(engine, cipher, driver)
    connection = await vehicle_readers.connection(driver)
    assert connection is not None
    assert (connection.id, connection.driver_id, connection.provider) == (connection_id, driver, "tesla")
    assert (connection.vehicle_id, connection.vin, connection.telemetry_enabled) == ("v-1", "5YJ3E1EA0PF000001", False)
    # Rotated in the database since (as by another replica): the reader's first load is the remembered pair, a
    # reload (what a refresh does) reads the database.
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(V)
            .where(V.c.id == connection_id)
            .values(
                access_token=cipher.encrypt("access-2", str(connection_id)),
                refresh_token=cipher.encrypt("refresh-2", str(connection_id)),
            )
        )
    credentials = vehicle_readers.credentials(connection)
    first = await credentials.load()
    assert (first.access_token, first.refresh_token, first.expires_at, first.account_id) == (
        "access-1",
        "refresh-1",
        EXPIRES,
        "acct-7",
    )
    assert (await credentials.load()).access_token == "access-2"


async def test_stored_tokens_that_cannot_be_decrypted_leave_the_connection_unusable(
    engine: AsyncEngine, readers: tuple[VehicleReaders, TokenCipher]
) -> None:
    vehicle_readers, cipher = readers
    driver = str(uuid.uuid4())
    connection_id = await _link(engine, cipher, driver)
    async with engine.begin() as conn:
        await conn.execute(sa.update(V).where(V.c.id == connection_id).values(access_token=b"not a sealed token"))
    connection = await vehicle_readers.connection(driver)
    assert connection is not None and connection.id == connection_id
    with pytest.raises(NoConnection):
        await vehicle_readers.credentials(connection).load()
