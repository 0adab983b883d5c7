"""Alembic, one schema and one version table per service.

Each service keeps its migrations in ``services/<service>/migrations/versions``; its ``env.py`` calls
:func:`run_env`. Migrations take a PostgreSQL advisory lock per schema so that replicas or Jobs that
start together apply them once.

CLI: ``python -m services.common.migrations upgrade all`` (or a service name; ``downgrade <svc> <rev>``).
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import zlib

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

from services.common.config import SERVICE_NAMES, Env
from services.common.db import asyncpg_url

SERVICES_DIR = pathlib.Path(__file__).resolve().parent.parent


def alembic_config(service: str, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    # Passed as an attribute, not a main option: ini interpolation would choke on '%' in socket paths.
    config.attributes["database_url"] = database_url
    config.attributes["schema"] = service
    return config


def upgrade(service: str, database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, database_url), revision)


def downgrade(service: str, database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(service, database_url), revision)


def run_env(target_metadata: sa.MetaData | None = None) -> None:
    """Body of every service's migrations/env.py (online mode only: migrations need a database)."""
    config = context.config
    schema: str = config.attributes["schema"]
    url = asyncpg_url(config.attributes["database_url"])

    def migrate(connection: sa.Connection) -> None:
        lock_id = zlib.crc32(f"nerava-migrations-{schema}".encode())
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
        connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        connection.execute(sa.text(f'SET search_path TO "{schema}"'))
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=schema,
            # Alembic's own version table is not part of the service's metadata.
            include_name=lambda name, type_, parent: not (type_ == "table" and name == "alembic_version"),
            transaction_per_migration=False,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(url)
        async with engine.begin() as connection:
            await connection.run_sync(migrate)
        await engine.dispose()

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description="Apply or revert the migrations of the services' schemas.")
    parser.add_argument("action", choices=["upgrade", "downgrade"])
    parser.add_argument("service", choices=[*SERVICE_NAMES, "all"])
    parser.add_argument("revision", nargs="?", default="head")
    args = parser.parse_args()
    database_url = Env().str("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/nerava")
    services = SERVICE_NAMES if args.service == "all" else (args.service,)
    for service in services:
        if args.action == "upgrade":
            upgrade(service, database_url, args.revision)
        else:
            downgrade(service, database_url, args.revision)


if __name__ == "__main__":
    main()
