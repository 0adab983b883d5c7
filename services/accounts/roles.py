"""Role changes by an admin: the new roles and their audit entry commit together; the user's tokens carrying the
old roles are revoked after the commit.

Transport-free: the servicer hands in the admin's and the user's ids and the role names; this owns its
transaction and raises domain errors.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncEngine

from services.accounts import domain, store
from services.accounts.reasons import Reason
from services.common import audit
from services.common.errors import FailedPrecondition, NotFound
from services.common.revocation import TokenRevocations


class Roles:
    def __init__(self, engine: AsyncEngine, revocations: TokenRevocations) -> None:
        self._engine = engine
        self._revocations = revocations

    async def set(self, admin_id: str, user_id: str, roles: Iterable[str], reason: str) -> store.UserRow:
        """Replaces the user's roles with ``roles``; returns the user with them."""
        new_roles = sorted(roles)
        async with self._engine.begin() as conn:
            user = await store.user_by_public_id(conn, user_id)
            if user is None:
                raise NotFound(Reason.USER_NOT_FOUND, f"no user {user_id}")
            if str(user.public_id) == admin_id and domain.ADMIN not in new_roles:
                # Otherwise the last admin can lock everyone out of role management.
                raise FailedPrecondition(Reason.CANNOT_REMOVE_OWN_ADMIN, "an admin cannot remove their own admin role")
            await store.set_roles(conn, user.id, new_roles)
            await audit.record(
                conn,
                "user.roles.set",
                f"user:{user.public_id}",
                reason,
                old_roles=",".join(sorted(user.roles)),
                new_roles=",".join(new_roles),
            )
            updated = await store.user_by_id(conn, user.id)
        assert updated is not None
        if sorted(user.roles) != new_roles:
            # After the commit (see Tokens.issue): tokens carrying the old roles stop working within seconds;
            # the user's next refresh gets the new ones.
            await self._revocations.revoke_all(str(user.public_id))
        return updated
