"""Waits until a service's schema is at the migration head this image carries: the init container of every service
pod in Kubernetes (deploy/k8s/base/<service>.yaml).

The migrations themselves run in the Job `<service>-migrations`, with the schema owner's credentials. A pod of a new
release waits here until that Job has brought the schema to the revision its code expects, so it never serves an
older schema; the previous ReplicaSet keeps serving meanwhile (maxUnavailable 0). That orders the rollout after the
migration whatever order `kubectl apply` creates the objects in, without Helm hooks or an operator.

A schema *newer* than this image (revisions the image does not know: the code was rolled back, or a newer release is
migrating) counts as ready: migrations are written expand-then-contract, so the previous code runs on the next
schema.

Usage: python -m deploy.wait_for_schema <service> [--timeout 600] [--interval 2]
Reads <SERVICE>_DATABASE_URL or DATABASE_URL, like the service. Exit 0 when ready, 1 on timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import logging
import sys
import time

import asyncpg
from alembic.script import ScriptDirectory

from services.common.config import SERVICE_NAMES, Env
from services.common.db import asyncpg_url
from services.common.migrations import alembic_config

log = logging.getLogger("wait_for_schema")


class SchemaState(enum.Enum):
    READY = "ready"  # at this image's head, or past it
    BEHIND = "behind"  # at a revision older than this image's head
    ABSENT = "absent"  # no version table yet: the Job has not migrated it once


def image_revisions(service: str) -> tuple[frozenset[str], frozenset[str]]:
    """(heads, every revision) of the service's migrations as this image carries them."""
    script = ScriptDirectory.from_config(alembic_config(service, ""))
    return frozenset(script.get_heads()), frozenset(rev.revision for rev in script.walk_revisions())


def judge(applied: frozenset[str], heads: frozenset[str], known: frozenset[str]) -> SchemaState:
    """Pure: the state of a schema whose version table holds `applied`, for an image with `heads` and `known`."""
    if not applied:
        return SchemaState.ABSENT
    if heads <= applied or applied - known:
        return SchemaState.READY
    return SchemaState.BEHIND


async def applied_revisions(database_url: str, service: str) -> frozenset[str]:
    """The revisions in the schema's version table; empty when the schema or the table does not exist yet."""
    dsn = asyncpg_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        rows = await connection.fetch(f'SELECT version_num FROM "{service}".alembic_version')
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return frozenset()
    finally:
        await connection.close()
    return frozenset(str(row["version_num"]) for row in rows)


async def wait(service: str, database_url: str, timeout_s: float, interval_s: float) -> SchemaState:
    """Polls until the schema is READY or `timeout_s` has passed; returns the last state seen."""
    heads, known = image_revisions(service)
    deadline = time.monotonic() + timeout_s
    state = SchemaState.ABSENT
    while True:
        try:
            state = judge(await applied_revisions(database_url, service), heads, known)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            # The database may not accept connections yet (a fresh development cluster): keep waiting.
            log.warning("database not reachable: %s", exc)
        if state is SchemaState.READY or time.monotonic() >= deadline:
            return state
        log.info("schema %s is %s, expecting %s", service, state.value, ", ".join(sorted(heads)))
        await asyncio.sleep(interval_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Wait until a service's schema is at this image's migration head.")
    parser.add_argument("service", choices=SERVICE_NAMES)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before giving up (exit 1)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between two checks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    env = Env()
    database_url = env.str(f"{args.service.upper()}_DATABASE_URL", env.str("DATABASE_URL"))
    state = asyncio.run(wait(args.service, database_url, args.timeout, args.interval))
    if state is not SchemaState.READY:
        log.error("schema %s still %s after %.0f s", args.service, state.value, args.timeout)
        return 1
    log.info("schema %s is ready", args.service)
    return 0


if __name__ == "__main__":
    sys.exit(main())
