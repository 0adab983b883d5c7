"""The shape every service follows (docs/architecture.md), checked on the source: the servicer (api.py, with its
messages.py) holds no SQL and opens no connection; the cores import no gRPC and never read the caller from the
request context (the handler hands it in); workers never reach for a servicer."""

from __future__ import annotations

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
SERVICES = ("accounts", "incentives", "ledger", "merchants", "sessions")
# The servicer's two files: the handlers and their message builders.
SERVICER_FILES = ("api.py", "messages.py")
# Where a service may speak gRPC: its servicer, its start-up wiring, its adapters of the other services (peers.py)
# and its background loops (an outbox relay hands events to a peer's stub).
TRANSPORT_FILES = (*SERVICER_FILES, "__main__.py", "peers.py", "workers.py")
_SQL_TEXT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)
_STATEMENT_CALLS = frozenset({"execute", "fetch", "fetchrow", "fetchval", "scalar", "scalars"})
# Opening a connection or a transaction: `engine.begin()`, `self._reads.connect()`, `pool.acquire()` (a core's own
# method may be called connect: ConnectSquare's).
_OPENING_CALLS = frozenset({"begin", "connect", "acquire"})
_DATABASE_HANDLES = re.compile(r"(engine|reads|pool)$")


def servicer_sql(source: str) -> list[str]:
    """`line: what` for each statement, query builder or database call in a servicer module."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _SQL_TEXT.match(node.value):
            found.append(f"{node.lineno}: SQL text")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in {"sa", "sqlalchemy"}
        ):
            found.append(f"{node.lineno}: {node.value.id}.{node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            opening = node.func.attr in _OPENING_CALLS and _DATABASE_HANDLES.search(ast.unparse(node.func.value))
            if node.func.attr in _STATEMENT_CALLS or opening:
                found.append(f"{node.lineno}: .{node.func.attr}()")
    return sorted(found, key=lambda hit: int(hit.split(":")[0]))


def core_transport(source: str) -> list[str]:
    """`line: what` for each gRPC import and each read of the caller from the context in a core module."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] == "grpc"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "grpc":
            found.append(f"{node.lineno}: from {node.module}")
        elif isinstance(node, ast.Name) and node.id == "current_caller":
            found.append(f"{node.lineno}: current_caller")
    return sorted(found, key=lambda hit: int(hit.split(":")[0]))


def _modules(service: str) -> list[pathlib.Path]:
    return sorted((ROOT / "services" / service).glob("*.py"))


def test_no_servicer_holds_sql() -> None:
    found = [
        f"services/{service}/{path.name}:{hit}"
        for service in SERVICES
        for path in _modules(service)
        if path.name in SERVICER_FILES
        for hit in servicer_sql(path.read_text())
    ]
    assert found == []


def test_the_cores_are_transport_free() -> None:
    found = [
        f"services/{service}/{path.name}:{hit}"
        for service in SERVICES
        for path in _modules(service)
        if path.name not in TRANSPORT_FILES
        for hit in core_transport(path.read_text())
    ]
    assert found == []


def test_workers_call_cores_not_a_servicer() -> None:
    for service in SERVICES:
        workers = ROOT / "services" / service / "workers.py"
        if workers.exists():
            imported = {
                node.module
                for node in ast.walk(ast.parse(workers.read_text()))
                if isinstance(node, ast.ImportFrom) and node.module
            }
            assert f"services.{service}.api" not in imported, service


def test_the_checks_find_what_they_look_for() -> None:
    servicer = (
        "import sqlalchemy as sa\n"
        "async def handler(self, request):\n"
        "    async with self.engine.begin() as conn:\n"
        "        await conn.execute(sa.select(1))\n"
        "    query = 'SELECT 1'\n"
        "    return messages.answer(await self.core.read(request.id))\n"
    )
    assert servicer_sql(servicer) == ["3: .begin()", "4: .execute()", "4: sa.select", "5: SQL text"]
    # A core's own method named like a database call is not one.
    assert servicer_sql("async def ConnectSquare(self, request):\n    await self.onboarding.connect(request)\n") == []
    core = (
        "import grpc\n"
        "from grpc import aio\n"
        "from services.common.context import current_caller\n"
        "async def read(engine, driver_id):\n"
        "    return current_caller().user_id\n"
    )
    assert core_transport(core) == ["1: import grpc", "2: from grpc", "5: current_caller"]
