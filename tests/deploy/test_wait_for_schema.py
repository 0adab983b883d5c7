"""deploy/wait_for_schema.py, the service pods' init container: the verdict, and the command against the real
test PostgreSQL (a migrated database is ready at once; an empty one is not, and the wait gives up)."""

from __future__ import annotations

import subprocess
import sys
import uuid

import asyncpg
from sqlalchemy.engine import make_url

from deploy import wait_for_schema
from deploy.wait_for_schema import SchemaState, judge
from services.common.config import SERVICE_NAMES
from tools import k8s_check

HEADS = frozenset({"0003"})
KNOWN = frozenset({"0001", "0002", "0003"})


def test_a_schema_at_the_head_is_ready() -> None:
    assert judge(frozenset({"0003"}), HEADS, KNOWN) is SchemaState.READY


def test_a_schema_at_an_older_revision_is_behind() -> None:
    assert judge(frozenset({"0002"}), HEADS, KNOWN) is SchemaState.BEHIND


def test_a_schema_never_migrated_is_absent() -> None:
    assert judge(frozenset(), HEADS, KNOWN) is SchemaState.ABSENT


def test_a_schema_newer_than_the_image_is_ready() -> None:
    # A rollback of the code onto a schema a newer release migrated (expand-then-contract).
    assert judge(frozenset({"0004"}), HEADS, KNOWN) is SchemaState.READY


def test_every_service_has_a_head_in_the_image() -> None:
    for service in SERVICE_NAMES:
        heads, known = wait_for_schema.image_revisions(service)
        assert heads and heads <= known


def _run(service: str, database_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.wait_for_schema", service, *extra],
        cwd=k8s_check.ROOT,
        env={"DATABASE_URL": database_url, "PYTHONPATH": f"{k8s_check.ROOT}:{k8s_check.ROOT / 'gen'}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_wait_returns_at_once_on_a_migrated_database(database_url: str) -> None:
    for service in SERVICE_NAMES:
        result = _run(service, database_url, "--timeout", "10")
        assert result.returncode == 0, result.stderr
        assert f"schema {service} is ready" in result.stderr


async def test_the_wait_gives_up_on_a_database_nobody_migrated(database_server_url: str) -> None:
    server = make_url(database_server_url.replace("postgres://", "postgresql://", 1))
    admin = await asyncpg.connect(
        server.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    )
    name = f"nerava_unmigrated_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = server.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
        result = _run("ledger", url, "--timeout", "0.5", "--interval", "0.1")
        assert result.returncode == 1
        assert "schema ledger still absent" in result.stderr
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
