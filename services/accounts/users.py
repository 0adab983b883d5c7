"""The accounts themselves: the signed-in user's own, one by id for the other services, the admins' listing, and
the devices a user registers for push notifications.

Transport-free: the servicer hands in the signed-in user's id (or the asked-for one) and plain filters; these
functions query store.py and raise domain errors.
"""

from __future__ import annotations

import dataclasses

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from services.accounts import store
from services.accounts.reasons import Reason
from services.common.errors import NotFound, PermissionDenied


@dataclasses.dataclass(frozen=True)
class UserPage:
    users: list[store.UserRow]
    more: bool  # another page follows the last of ``users``


class Users:
    def __init__(self, engine: AsyncEngine, hot: asyncpg.Pool) -> None:
        self._engine = engine
        # GetMe and GetUser are one SELECT each, on every app start and every service's look-up: asyncpg's own
        # pool (the measurement is beside the statement in store.py).
        self._hot = hot

    async def me(self, user_id: str) -> store.UserRow:
        """The signed-in user's account: one read, no transaction (GetMe is on every app start)."""
        user = await store.hot_user_by_public_id(self._hot, user_id)
        if user is None:
            raise NotFound(Reason.USER_NOT_FOUND, "the signed-in user does not exist")
        if not user.active:
            raise PermissionDenied(Reason.USER_INACTIVE, "this account is deactivated")
        return user

    async def get(self, user_id: str) -> store.UserRow:
        user = await store.hot_user_by_public_id(self._hot, user_id)
        if user is None:
            raise NotFound(Reason.USER_NOT_FOUND, "no user with that id", {"user_id": user_id})
        return user

    async def page(self, *, role: str | None, before_id: int | None, size: int) -> UserPage:
        """Newest first, ``size`` users older than ``before_id`` (with ``role`` if given)."""
        async with self._engine.connect() as conn:
            rows = await store.list_users(conn, before_id=before_id, limit=size + 1, role=role)
        return UserPage(rows[:size], len(rows) > size)

    async def register_device(self, user_id: str, *, token: str, platform: int) -> bool:
        """Registers the push token for the user (it moves to them if another user had it); True when new."""
        async with self._engine.begin() as conn:
            user = await store.user_by_public_id(conn, user_id)
            if user is None:
                raise NotFound(Reason.USER_NOT_FOUND, "the signed-in user does not exist")
            return await store.upsert_device(conn, token=token, user_id=user.id, platform=platform)
