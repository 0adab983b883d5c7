"""Feature flag values per environment (accounts owns them; services/common/flags.py reads them everywhere).

A flag is known by its definition in services/common/flags.py (name, default, description); this table only
holds the values an admin set. A toggle writes the value and its audit entry in one transaction, then
announces the change so every process refetches.
"""

from __future__ import annotations

import dataclasses
import datetime

import redis.asyncio as redis
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.accounts.reasons import Reason
from services.accounts.store import feature_flags
from services.common import audit
from services.common.db import single_statement_reads
from services.common.errors import NotFound
from services.common.flags import DEFINITIONS, FlagDefinition, announce_change


@dataclasses.dataclass(frozen=True)
class FlagValue:
    definition: FlagDefinition
    environment: str
    enabled: bool
    updated_at: datetime.datetime | None
    updated_by: str


def _definition(name: str) -> FlagDefinition:
    definition = DEFINITIONS.get(name)
    if definition is None:
        raise NotFound(Reason.FLAG_NOT_FOUND, f"no feature flag {name}", {"name": name})
    return definition


async def _stored(conn: AsyncConnection, environment: str) -> dict[str, sa.Row[tuple[object, ...]]]:
    rows = (await conn.execute(sa.select(feature_flags).where(feature_flags.c.environment == environment))).all()
    return {row.name: row for row in rows}


def _value(definition: FlagDefinition, environment: str, row: sa.Row[tuple[object, ...]] | None) -> FlagValue:
    if row is None:
        return FlagValue(definition, environment, definition.default, None, "")
    return FlagValue(definition, environment, bool(row.enabled), row.updated_at, str(row.updated_by))  # type: ignore[arg-type]


async def list_values(engine: AsyncEngine, environment: str) -> list[FlagValue]:
    """Every known flag with its value in ``environment``, sorted by name. Stored rows of flags the code no
    longer defines are left out."""
    async with engine.connect() as conn:
        stored = await _stored(conn, environment)
    return [_value(DEFINITIONS[name], environment, stored.get(name)) for name in sorted(DEFINITIONS)]


class Flags:
    """The flags of the environment this deployment runs in, for the servicer."""

    def __init__(self, engine: AsyncEngine, client: redis.Redis, environment: str) -> None:
        self._engine = engine
        # Listing and reading flags is one SELECT: no transaction around it.
        self._reads = single_statement_reads(engine)
        self._client = client
        self._environment = environment

    async def values(self) -> list[FlagValue]:
        return await list_values(self._reads, self._environment)

    async def value(self, name: str) -> FlagValue:
        definition = _definition(name)
        async with self._reads.connect() as conn:
            stored = await _stored(conn, self._environment)
        return _value(definition, self._environment, stored.get(name))

    async def toggle(self, name: str, *, enabled: bool | None, reason: str, actor: str) -> FlagValue:
        """Sets the flag (flips it when ``enabled`` is None) with its audit entry, then announces the change;
        ``actor`` (the admin's id) is kept as who changed it last."""
        definition = _definition(name)
        environment = self._environment
        async with self._engine.begin() as conn:
            # The row lock serializes two admins flipping the same flag: each flip sees the other's result.
            current = (
                await conn.execute(
                    sa.select(feature_flags.c.enabled)
                    .where(feature_flags.c.environment == environment, feature_flags.c.name == name)
                    .with_for_update()
                )
            ).scalar_one_or_none()
            before = definition.default if current is None else bool(current)
            after = (not before) if enabled is None else enabled
            row = (
                await conn.execute(
                    pg_insert(feature_flags)
                    .values(environment=environment, name=name, enabled=after, updated_by=actor)
                    .on_conflict_do_update(
                        index_elements=[feature_flags.c.environment, feature_flags.c.name],
                        set_={"enabled": after, "updated_by": actor, "updated_at": sa.func.now()},
                    )
                    .returning(*feature_flags.c)
                )
            ).one()
            await audit.record(
                conn, "flag.toggle", f"flag:{name}", reason, environment=environment, before=before, after=after
            )
        await announce_change(self._client, name)
        return _value(definition, environment, row)
