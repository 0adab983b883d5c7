"""PostgreSQL through SQLAlchemy 2 async + asyncpg, one schema per service.

Each service connects with ``search_path`` set to its own schema, so its tables are unqualified in SQL
and it cannot read another service's tables by accident.
"""

from __future__ import annotations

import asyncpg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def asyncpg_url(database_url: str) -> URL:
    """Accepts postgres://, postgresql:// or postgresql+asyncpg:// and returns the asyncpg form."""
    url = make_url(database_url.replace("postgres://", "postgresql://", 1))
    return url.set(drivername="postgresql+asyncpg")


def create_engine(database_url: str, schema: str, pool_size: int = 10, max_overflow: int = 10) -> AsyncEngine:
    return create_async_engine(
        asyncpg_url(database_url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=False,  # asyncpg reports a dead connection on use; pre-ping costs a round trip per checkout
        connect_args={"server_settings": {"search_path": schema, "application_name": f"nerava-{schema}"}},
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def single_statement_reads(engine: AsyncEngine) -> AsyncEngine:
    """The same pool without transactions: a lone SELECT then costs one round trip instead of three
    (SQLAlchemy otherwise wraps it in BEGIN … ROLLBACK). Only for reads that are one statement."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")


async def open_asyncpg_pool(database_url: str, schema: str, size: int = 4, purpose: str = "hot") -> asyncpg.Pool:
    """asyncpg's own pool, for a hot path that is one or two statements: checking a connection out and running
    a prepared statement costs far less than through SQLAlchemy."""
    url = asyncpg_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    pool = await asyncpg.create_pool(
        url,
        min_size=1,
        max_size=size,
        server_settings={"search_path": schema, "application_name": f"nerava-{schema}-{purpose}"},
        # By default each release runs a reset query (unlock advisory locks, CLOSE ALL, UNLISTEN, RESET ALL):
        # one more round trip per use. Nothing here leaves session state behind — advisory locks are
        # transaction-level, no LISTEN, no SET outside a transaction — so there is nothing to reset.
        reset=_keep_session,
    )
    assert pool is not None
    return pool


async def _keep_session(connection: asyncpg.Connection) -> None:
    return None
