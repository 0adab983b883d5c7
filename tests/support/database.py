"""Fresh databases on the test PostgreSQL server, migrated to head for every service."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
from sqlalchemy.engine import make_url

from services.common import migrations
from services.common.config import SERVICE_NAMES


@contextlib.asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """A database of its own, migrated to head for every service, dropped afterwards."""
    name = f"nerava_test_{uuid.uuid4().hex[:12]}"
    server = make_url(server_url.replace("postgres://", "postgresql://", 1))
    admin_dsn = server.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = server.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    try:
        for service in SERVICE_NAMES:
            await asyncio.to_thread(migrations.upgrade, service, url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
