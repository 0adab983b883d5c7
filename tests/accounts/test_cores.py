"""The accounts cores called as the servicer calls them, without gRPC: refresh rotation and reuse, logout
(tokens.py), role changes with their audit entry (roles.py) and the signed-in user's read (users.py)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as redis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.accounts import domain
from services.accounts.config import AccountsSettings
from services.accounts.keys import KeyRing
from services.accounts.reasons import Reason
from services.accounts.roles import Roles
from services.accounts.seed import ensure_phone_user
from services.accounts.tokens import Tokens
from services.accounts.users import Users
from services.common import audit
from services.common.config import Env
from services.common.db import open_asyncpg_pool
from services.common.errors import FailedPrecondition, NotFound, Unauthenticated
from services.common.revocation import TokenRevocations
from tests.support.mesh import Mesh
from tests.support.rpc import random_phone


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def accounts_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_asyncpg_pool(database_url, "accounts", size=2)
    yield pool
    await pool.close()


@pytest.fixture
async def revocations(redis_url: str) -> AsyncIterator[TokenRevocations]:
    client = redis.Redis.from_url(redis_url)
    yield TokenRevocations(client, retention_s=60)
    await client.aclose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def tokens(mesh: Mesh, accounts_engine: AsyncEngine, revocations: TokenRevocations, clock: Clock) -> Tokens:
    settings = AccountsSettings.from_env(Env(mesh.env))
    keys = KeyRing(settings.signing_key_passphrase)
    await keys.load(accounts_engine)
    return Tokens(
        accounts_engine,
        keys=keys,
        revocations=revocations,
        policy=settings.tokens,
        issuer=settings.runtime.jwt_issuer,
        audience=settings.runtime.jwt_audience,
        clock=clock,
    )


async def test_a_rotated_refresh_token_presented_again_revokes_its_family(
    tokens: Tokens, accounts_engine: AsyncEngine
) -> None:
    user = await ensure_phone_user(accounts_engine, random_phone(), [domain.DRIVER])
    signed_in = await tokens.sign_in(user)
    other_device = await tokens.sign_in(user)
    rotated = await tokens.rotate(signed_in.tokens.refresh_token)
    assert rotated.refresh_token != signed_in.tokens.refresh_token

    with pytest.raises(Unauthenticated) as reused:
        await tokens.rotate(signed_in.tokens.refresh_token)
    assert reused.value.reason == Reason.REFRESH_TOKEN_REUSED
    # The refusal committed the revocation of the family: the copy's successor is dead too.
    with pytest.raises(Unauthenticated) as revoked:
        await tokens.rotate(rotated.refresh_token)
    assert revoked.value.reason == Reason.REFRESH_TOKEN_INVALID
    assert (await tokens.rotate(other_device.tokens.refresh_token)).token_type == "bearer"


async def test_an_expired_refresh_token_is_refused(tokens: Tokens, accounts_engine: AsyncEngine, clock: Clock) -> None:
    user = await ensure_phone_user(accounts_engine, random_phone(), [domain.DRIVER])
    signed_in = await tokens.sign_in(user)
    clock.now += domain.TokenPolicy().refresh_ttl_s + 1
    with pytest.raises(Unauthenticated) as expired:
        await tokens.rotate(signed_in.tokens.refresh_token)
    assert expired.value.reason == Reason.REFRESH_TOKEN_INVALID


async def test_logging_out_everywhere_revokes_every_family_and_the_access_tokens(
    tokens: Tokens, accounts_engine: AsyncEngine, revocations: TokenRevocations
) -> None:
    user = await ensure_phone_user(accounts_engine, random_phone(), [domain.DRIVER])
    first, second = await tokens.sign_in(user), await tokens.sign_in(user)
    version = await revocations.current_version(str(user.public_id))

    assert await tokens.log_out(str(user.public_id), refresh_token=first.tokens.refresh_token, all_devices=False) == 1
    assert await revocations.current_version(str(user.public_id)) == version
    assert await tokens.log_out(str(user.public_id), refresh_token="", all_devices=True) == 1
    assert await revocations.current_version(str(user.public_id)) > version
    with pytest.raises(Unauthenticated):
        await tokens.rotate(second.tokens.refresh_token)


async def _audit_entries(engine: AsyncEngine, target: str) -> list[str]:
    async with engine.connect() as conn:
        query = sa.select(audit.audit_log.c.reason).where(audit.audit_log.c.target == target)
        return list((await conn.scalars(query)).all())


async def test_a_role_change_commits_with_its_audit_entry_and_revokes_the_old_tokens(
    mesh: Mesh, accounts_engine: AsyncEngine, accounts_pool: asyncpg.Pool, revocations: TokenRevocations
) -> None:
    roles = Roles(accounts_engine, revocations)
    admin = await ensure_phone_user(accounts_engine, random_phone(), [domain.ADMIN])
    user = await ensure_phone_user(accounts_engine, random_phone(), [domain.DRIVER])
    version = await revocations.current_version(str(user.public_id))

    updated = await roles.set(str(admin.public_id), str(user.public_id), [domain.SPONSOR, domain.DRIVER], "pilot")
    assert updated.roles == (domain.DRIVER, domain.SPONSOR)
    assert await _audit_entries(accounts_engine, f"user:{user.public_id}") == ["pilot"]
    assert await revocations.current_version(str(user.public_id)) > version

    with pytest.raises(FailedPrecondition) as refused:
        await roles.set(str(admin.public_id), str(admin.public_id), [domain.DRIVER], "oops")
    assert refused.value.reason == Reason.CANNOT_REMOVE_OWN_ADMIN
    # Refused inside the transaction: neither the roles nor an entry were written.
    assert (await Users(accounts_engine, accounts_pool).get(str(admin.public_id))).roles == (domain.ADMIN,)
    assert await _audit_entries(accounts_engine, f"user:{admin.public_id}") == []


async def test_the_signed_in_user_is_read_or_not_found(
    mesh: Mesh, accounts_engine: AsyncEngine, accounts_pool: asyncpg.Pool
) -> None:
    users = Users(accounts_engine, accounts_pool)
    user = await ensure_phone_user(accounts_engine, random_phone(), [domain.DRIVER])
    assert (await users.me(str(user.public_id))).id == user.id
    for unknown in ("", "not-a-uuid", "00000000-0000-4000-8000-000000000000"):
        with pytest.raises(NotFound) as missing:
            await users.me(unknown)
        assert missing.value.reason == Reason.USER_NOT_FOUND
