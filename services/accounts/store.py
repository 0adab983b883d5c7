"""Tables and queries of the accounts schema (SQLAlchemy Core, async)."""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Sequence

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.sweeps import expired_batch

metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "public_id", pg.UUID(as_uuid=True), nullable=False, unique=True, server_default=sa.text("gen_random_uuid()")
    ),
    sa.Column("phone", sa.Text, unique=True),
    sa.Column("email", sa.Text, unique=True),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("auth_provider", sa.SmallInteger, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

user_roles = sa.Table(
    "user_roles",
    metadata,
    sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("role", sa.Text, primary_key=True),
)

# The value of each toggled feature flag per environment (services/accounts/flags.py).
feature_flags = sa.Table(
    "feature_flags",
    metadata,
    sa.Column("environment", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_by", sa.Text, nullable=False),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("family_id", pg.UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("token_hash", sa.LargeBinary, nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("rotated_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("kid", sa.Text, primary_key=True),
    sa.Column("private_key_pem", sa.Text, nullable=False),  # PKCS#8, encrypted with the key passphrase
    sa.Column("public_jwk", pg.JSONB, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("retired_at", sa.DateTime(timezone=True)),
)

device_tokens = sa.Table(
    "device_tokens",
    metadata,
    sa.Column("token", sa.Text, primary_key=True),
    sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("platform", sa.SmallInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

# The Google or Apple account (provider + its stable `sub`) a user signs in with; one user may have several.
external_identities = sa.Table(
    "external_identities",
    metadata,
    sa.Column("provider", sa.Text, primary_key=True),
    sa.Column("subject", sa.Text, primary_key=True),
    sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

# Emailed single-use links that claim a merchant store; only the SHA-256 of the link's token is kept.
merchant_claim_links = sa.Table(
    "merchant_claim_links",
    metadata,
    sa.Column("token_hash", sa.LargeBinary, primary_key=True),
    sa.Column("merchant_id", sa.Text, nullable=False),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True)),
)


@dataclasses.dataclass(frozen=True)
class UserRow:
    id: int
    public_id: uuid.UUID
    phone: str | None
    email: str | None
    name: str
    auth_provider: int
    active: bool
    created_at: datetime.datetime
    roles: tuple[str, ...]


_USER_COLUMNS = (
    users.c.id,
    users.c.public_id,
    users.c.phone,
    users.c.email,
    users.c.name,
    users.c.auth_provider,
    users.c.active,
    users.c.created_at,
)


def _roles_subquery() -> sa.ColumnElement[list[str]]:
    return (
        sa.select(sa.func.coalesce(sa.func.array_agg(sa.text("role ORDER BY role")), sa.text("'{}'::text[]")))
        .select_from(user_roles)
        .where(user_roles.c.user_id == users.c.id)
        .scalar_subquery()
    )


def _to_user(row: sa.Row[*tuple[object, ...]]) -> UserRow:
    return UserRow(
        id=row.id,
        public_id=row.public_id,
        phone=row.phone,
        email=row.email,
        name=row.name,
        auth_provider=row.auth_provider,
        active=row.active,
        created_at=row.created_at,
        roles=tuple(row.roles),
    )


_SELECT_USER = sa.select(*_USER_COLUMNS, _roles_subquery().label("roles"))
# Built once: GetMe runs it on every call, and a prebuilt statement skips SQLAlchemy's per-call
# construction and cache-key work.
_USER_BY_PUBLIC_ID = _SELECT_USER.where(users.c.public_id == sa.bindparam("public_id"))


async def find_user(conn: AsyncConnection, where: sa.ColumnElement[bool]) -> UserRow | None:
    row = (await conn.execute(_SELECT_USER.where(where))).first()
    return None if row is None else _to_user(row)


async def user_by_id(conn: AsyncConnection, user_id: int) -> UserRow | None:
    return await find_user(conn, users.c.id == user_id)


# GetMe (every app start) and GetUser (other services' look-ups) on asyncpg's own pool: the same read through
# SQLAlchemy costs 255 µs of CPU, as a prepared asyncpg statement 60 µs (8 concurrent readers, this machine);
# `make bench-runtime`'s bare_getme is the handler's whole cost.
_HOT_USER_BY_PUBLIC_ID = """
SELECT users.id, users.public_id, users.phone, users.email, users.name, users.auth_provider, users.active,
       users.created_at,
       coalesce((SELECT array_agg(user_roles.role ORDER BY user_roles.role) FROM user_roles
                 WHERE user_roles.user_id = users.id), '{}'::text[]) AS roles
FROM users WHERE users.public_id = $1
"""


async def hot_user_by_public_id(pool: asyncpg.Pool, public_id: str) -> UserRow | None:
    """user_by_public_id, on the hot path's pool."""
    try:
        parsed = uuid.UUID(public_id)
    except ValueError:
        return None
    row = await pool.fetchrow(_HOT_USER_BY_PUBLIC_ID, parsed)
    return None if row is None else UserRow(**{**dict(row.items()), "roles": tuple(row["roles"])})


async def user_by_public_id(conn: AsyncConnection, public_id: str) -> UserRow | None:
    try:
        parsed = uuid.UUID(public_id)
    except ValueError:
        return None
    row = (await conn.execute(_USER_BY_PUBLIC_ID, {"public_id": parsed})).first()
    return None if row is None else _to_user(row)


async def get_or_create_user(
    conn: AsyncConnection, *, phone: str | None, email: str | None, auth_provider: int, initial_roles: Sequence[str]
) -> tuple[UserRow, bool]:
    """The user with this phone (or email), created with ``initial_roles`` on first login.

    ``INSERT … ON CONFLICT DO NOTHING`` makes two simultaneous first logins of one phone create one user.
    """
    key_column = users.c.phone if phone is not None else users.c.email
    key_value = phone if phone is not None else email
    inserted = (
        await conn.execute(
            pg.insert(users)
            .values(phone=phone, email=email, auth_provider=auth_provider)
            .on_conflict_do_nothing(index_elements=[key_column])
            .returning(users.c.id)
        )
    ).scalar()
    if inserted is not None and initial_roles:
        await conn.execute(pg.insert(user_roles), [{"user_id": inserted, "role": role} for role in initial_roles])
    user = await find_user(conn, key_column == key_value)
    assert user is not None  # inserted above or already present
    return user, inserted is not None


async def create_user(conn: AsyncConnection, *, auth_provider: int, name: str, roles: Sequence[str]) -> UserRow:
    """A user known by no phone or email (an Apple account that hid its address)."""
    user_id = (
        await conn.execute(sa.insert(users).values(auth_provider=auth_provider, name=name).returning(users.c.id))
    ).scalar_one()
    if roles:
        await conn.execute(pg.insert(user_roles), [{"user_id": user_id, "role": role} for role in roles])
    user = await find_user(conn, users.c.id == user_id)
    assert user is not None
    return user


async def set_roles(conn: AsyncConnection, user_id: int, roles: Sequence[str]) -> None:
    await conn.execute(sa.delete(user_roles).where(user_roles.c.user_id == user_id))
    await conn.execute(pg.insert(user_roles), [{"user_id": user_id, "role": role} for role in roles])


async def list_users(conn: AsyncConnection, *, before_id: int | None, limit: int, role: str | None) -> list[UserRow]:
    query = sa.select(*_USER_COLUMNS, _roles_subquery().label("roles")).order_by(users.c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(users.c.id < before_id)
    if role is not None:
        query = query.where(sa.exists().where(user_roles.c.user_id == users.c.id, user_roles.c.role == role))
    return [_to_user(row) for row in (await conn.execute(query)).all()]


async def insert_refresh_token(
    conn: AsyncConnection, *, family_id: uuid.UUID, user_id: int, token_hash: bytes, expires_at: datetime.datetime
) -> None:
    await conn.execute(
        sa.insert(refresh_tokens).values(
            family_id=family_id, user_id=user_id, token_hash=token_hash, expires_at=expires_at
        )
    )


async def lock_refresh_token(conn: AsyncConnection, token_hash: bytes) -> sa.Row[*tuple[object, ...]] | None:
    """The token row, locked until the transaction ends so two refreshes of one token serialize."""
    query = (
        sa.select(
            refresh_tokens.c.id,
            refresh_tokens.c.family_id,
            refresh_tokens.c.user_id,
            refresh_tokens.c.expires_at,
            refresh_tokens.c.rotated_at,
            refresh_tokens.c.revoked_at,
        )
        .where(refresh_tokens.c.token_hash == token_hash)
        .with_for_update()
    )
    return (await conn.execute(query)).first()


async def mark_rotated(conn: AsyncConnection, token_id: int) -> None:
    await conn.execute(
        sa.update(refresh_tokens).where(refresh_tokens.c.id == token_id).values(rotated_at=sa.func.now())
    )


async def revoke_families(conn: AsyncConnection, where: sa.ColumnElement[bool]) -> int:
    """Revokes every live token matching ``where``; returns how many families were affected."""
    revoked = await conn.execute(
        sa.update(refresh_tokens)
        .where(where, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=sa.func.now())
        .returning(refresh_tokens.c.family_id)
    )
    return len({row.family_id for row in revoked})


async def revoke_family(conn: AsyncConnection, family_id: uuid.UUID) -> int:
    """A rotated refresh token came back: its whole family goes."""
    return await revoke_families(conn, refresh_tokens.c.family_id == family_id)


async def revoke_users_families(conn: AsyncConnection, user_id: int) -> int:
    """Signing out everywhere: every family of the user."""
    return await revoke_families(conn, refresh_tokens.c.user_id == user_id)


async def revoke_family_of_token(conn: AsyncConnection, token_hash: bytes, user_id: int) -> int:
    """Signing out one device: the family of the refresh token it presents, if the token is the user's."""
    family = (
        sa.select(refresh_tokens.c.family_id)
        .where(refresh_tokens.c.token_hash == token_hash, refresh_tokens.c.user_id == user_id)
        .scalar_subquery()
    )
    return await revoke_families(conn, refresh_tokens.c.family_id == family)


async def upsert_device(conn: AsyncConnection, *, token: str, user_id: int, platform: int) -> bool:
    """Registers the token for the user; returns True when it was new. A token moves to the latest user."""
    stmt = pg.insert(device_tokens).values(token=token, user_id=user_id, platform=platform)
    upsert = stmt.on_conflict_do_update(
        index_elements=[device_tokens.c.token],
        set_={"user_id": stmt.excluded.user_id, "platform": stmt.excluded.platform, "updated_at": sa.func.now()},
    ).returning(sa.literal_column("(xmax = 0)", sa.Boolean).label("created"))
    return bool((await conn.execute(upsert)).scalar())


async def user_of_identity(conn: AsyncConnection, provider: str, subject: str) -> UserRow | None:
    linked = sa.select(external_identities.c.user_id).where(
        external_identities.c.provider == provider, external_identities.c.subject == subject
    )
    return await find_user(conn, users.c.id == linked.scalar_subquery())


async def link_identity(conn: AsyncConnection, *, provider: str, subject: str, user_id: int) -> None:
    """Links the provider account to the user; a simultaneous first sign-in that linked it already wins."""
    await conn.execute(
        pg.insert(external_identities)
        .values(provider=provider, subject=subject, user_id=user_id)
        .on_conflict_do_nothing(index_elements=[external_identities.c.provider, external_identities.c.subject])
    )


async def add_role(conn: AsyncConnection, user_id: int, role: str) -> bool:
    """Grants one role, keeping the others; True when the user did not hold it yet."""
    added = await conn.execute(
        pg.insert(user_roles).values(user_id=user_id, role=role).on_conflict_do_nothing().returning(user_roles.c.role)
    )
    return added.first() is not None


async def insert_claim_link(
    conn: AsyncConnection, *, token_hash: bytes, merchant_id: str, email: str, expires_at: datetime.datetime
) -> None:
    await conn.execute(
        sa.insert(merchant_claim_links).values(
            token_hash=token_hash, merchant_id=merchant_id, email=email, expires_at=expires_at
        )
    )


def _usable_link(token_hash: bytes, now: datetime.datetime) -> sa.ColumnElement[bool]:
    links = merchant_claim_links.c
    return sa.and_(links.token_hash == token_hash, links.used_at.is_(None), links.expires_at > now)


async def claim_link(conn: AsyncConnection, token_hash: bytes, now: datetime.datetime) -> tuple[str, str] | None:
    """(merchant_id, email) of an unused, unexpired link; None for any other."""
    links = merchant_claim_links.c
    row = (await conn.execute(sa.select(links.merchant_id, links.email).where(_usable_link(token_hash, now)))).first()
    return None if row is None else (row.merchant_id, row.email)


async def use_claim_link(conn: AsyncConnection, token_hash: bytes, now: datetime.datetime) -> tuple[str, str] | None:
    """Marks an unused, unexpired link used and returns (merchant_id, email); None for any other link. One
    UPDATE: of two simultaneous uses of one link exactly one gets it."""
    links = merchant_claim_links.c
    row = (
        await conn.execute(
            sa.update(merchant_claim_links)
            .where(_usable_link(token_hash, now))
            .values(used_at=now)
            .returning(links.merchant_id, links.email)
        )
    ).first()
    return None if row is None else (row.merchant_id, row.email)


async def delete_expired_claim_links(engine: AsyncEngine, before: datetime.datetime, limit: int) -> int:
    """Deletes up to `limit` claim links that expired before `before`; answers how many (services/common/sweeps.py)."""
    batch = expired_batch(merchant_claim_links.c.token_hash, merchant_claim_links.c.expires_at, before, limit)
    async with engine.begin() as conn:
        return (await conn.execute(batch)).rowcount
