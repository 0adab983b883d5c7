"""The tokens of a signed-in user: a short-lived access token (a JWT signed by the key ring) and a refresh token
that rotates on every use, one of a family started by each sign-in.

A rotated refresh token that comes back means someone holds a copy: its whole family is revoked and the
refresh refused. Logging out revokes the family of the device's refresh token, or every family of the user
and, through the token version (services/common/revocation.py), the access tokens already handed out.

Transport-free: the servicer hands in the refresh token and the signed-in user's id; these functions own their
transactions, query store.py and raise domain errors.
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.accounts import domain, store
from services.accounts.keys import KeyRing
from services.accounts.reasons import Reason
from services.common.errors import NotFound, PermissionDenied, Unauthenticated
from services.common.revocation import TokenRevocations


@dataclasses.dataclass(frozen=True)
class TokenPair:
    """What every sign-in and refresh answers, field for field as the contract names them."""

    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


@dataclasses.dataclass(frozen=True)
class SignedIn:
    """A user who just signed in, as they are after it (with any role the sign-in granted), and their tokens."""

    user: store.UserRow
    tokens: TokenPair
    created: bool = False  # the sign-in created the account


class Tokens:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        keys: KeyRing,
        revocations: TokenRevocations,
        policy: domain.TokenPolicy,
        issuer: str,
        audience: str,
        clock: Callable[[], float],
    ) -> None:
        self._engine = engine
        self._keys = keys
        self._revocations = revocations
        self._policy = policy
        self._issuer = issuer
        self._audience = audience
        self._clock = clock

    async def issue(self, conn: AsyncConnection, user: store.UserRow, family_id: uuid.UUID) -> TokenPair:
        """Signs an access token and stores the next refresh token of the family, in ``conn``'s transaction."""
        now = int(self._clock())
        # The token version first, the roles after it: a role change commits before it bumps the version, so
        # either these roles are the new ones or the version read here is already a revoked one.
        version = await self._revocations.current_version(str(user.public_id))
        fresh = await store.user_by_id(conn, user.id)
        access = self._keys.sign(
            domain.access_claims(
                str(user.public_id),
                list((fresh or user).roles),
                issuer=self._issuer,
                audience=self._audience,
                now=now,
                ttl_s=self._policy.access_ttl_s,
                token_version=version,
            )
        )
        refresh = domain.new_refresh_token()
        await store.insert_refresh_token(
            conn,
            family_id=family_id,
            user_id=user.id,
            token_hash=domain.refresh_token_hash(refresh),
            expires_at=datetime.datetime.fromtimestamp(now + self._policy.refresh_ttl_s, datetime.UTC),
        )
        return TokenPair(
            access_token=access, refresh_token=refresh, token_type="bearer", expires_in=self._policy.access_ttl_s
        )

    async def sign_in(self, user: store.UserRow) -> SignedIn:
        """A new token family for a user signed in some other way; the user as it is now (with new roles)."""
        async with self._engine.begin() as conn:
            tokens = await self.issue(conn, user, family_id=uuid.uuid4())
            fresh = await store.user_by_id(conn, user.id)
        assert fresh is not None
        return SignedIn(fresh, tokens)

    async def rotate(self, refresh_token: str) -> TokenPair:
        """The next tokens of the refresh token's family; the presented token is used up."""
        token_hash = domain.refresh_token_hash(refresh_token)
        reused = False
        async with self._engine.begin() as conn:
            row = await store.lock_refresh_token(conn, token_hash)
            if row is None or row.revoked_at is not None:
                raise Unauthenticated(Reason.REFRESH_TOKEN_INVALID, "unknown or revoked refresh token")
            if row.rotated_at is not None:
                # A rotated token came back: someone holds a copy. Revoke the whole family, commit that,
                # and only then refuse (raising inside the block would roll the revocation back).
                await store.revoke_family(conn, row.family_id)
                reused = True
            elif row.expires_at.timestamp() <= self._clock():
                raise Unauthenticated(Reason.REFRESH_TOKEN_INVALID, "refresh token expired")
            else:
                user = await store.user_by_id(conn, row.user_id)
                if user is None or not user.active:
                    raise PermissionDenied(Reason.USER_INACTIVE, "this account is deactivated")
                await store.mark_rotated(conn, row.id)
                tokens = await self.issue(conn, user, family_id=row.family_id)
        if reused:
            raise Unauthenticated(Reason.REFRESH_TOKEN_REUSED, "refresh token reuse detected; sign in again")
        return tokens

    async def log_out(self, user_id: str, *, refresh_token: str, all_devices: bool) -> int:
        """Revokes the family of ``refresh_token`` if it is the user's, or every family of the user with
        ``all_devices``; returns how many families were revoked."""
        async with self._engine.begin() as conn:
            user = await store.user_by_public_id(conn, user_id)
            if user is None:
                raise NotFound(Reason.USER_NOT_FOUND, "the signed-in user does not exist")
            if all_devices:
                revoked = await store.revoke_users_families(conn, user.id)
            elif refresh_token:
                revoked = await store.revoke_family_of_token(conn, domain.refresh_token_hash(refresh_token), user.id)
            else:
                revoked = 0
        if all_devices:
            # After the commit: "everywhere" includes the access tokens already handed out (within seconds).
            await self._revocations.revoke_all(str(user.public_id))
        return revoked
