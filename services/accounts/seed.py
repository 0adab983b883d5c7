"""Users with given roles, created idempotently — for the demo world of `make run` and for tests."""

from __future__ import annotations

from collections.abc import Sequence

from nerava.accounts.v1 import accounts_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

from services.accounts import store


async def ensure_phone_user(engine: AsyncEngine, phone: str, roles: Sequence[str], name: str = "") -> store.UserRow:
    """The user with this phone, holding exactly ``roles`` (created if missing)."""
    async with engine.begin() as conn:
        user, _ = await store.get_or_create_user(
            conn, phone=phone, email=None, auth_provider=accounts_pb2.AUTH_PROVIDER_PHONE, initial_roles=roles
        )
        await store.set_roles(conn, user.id, sorted(set(roles)))
        if name:
            await conn.execute(store.users.update().where(store.users.c.id == user.id).values(name=name))
        refreshed = await store.find_user(conn, store.users.c.id == user.id)
    assert refreshed is not None
    return refreshed
