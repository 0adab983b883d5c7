"""For the campaign funding tests: a ledger of its own (its own database, so no other ledger's outbox relay
takes its rows) and a stand-in incentives service that only answers RecordCampaignFunding."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import grpc
import protovalidate
from nerava.incentives.v1 import incentives_pb2, incentives_pb2_grpc
from sqlalchemy.engine import make_url

from services.common import migrations
from services.common.auth import SERVICE_TOKEN_HEADER, ServiceTokens
from services.common.config import Env, Secret
from services.common.server import ServiceServer
from services.ledger.__main__ import build_server
from services.ledger.config import LedgerSettings
from tests.support import eventually as waiting
from tests.support.rpc import TEST_SERVICE_SECRET


@dataclasses.dataclass(frozen=True)
class Recorded:
    request: incentives_pb2.RecordCampaignFundingRequest
    caller: str | None  # the calling service, from its identity token


class _Servicer(incentives_pb2_grpc.IncentivesServiceServicer):
    def __init__(self, receiver: IncentivesReceiver) -> None:
        self._receiver = receiver
        self._tokens = ServiceTokens(Secret(TEST_SERVICE_SECRET), "incentives")

    async def RecordCampaignFunding(
        self, request: incentives_pb2.RecordCampaignFundingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> incentives_pb2.RecordCampaignFundingResponse:
        token = dict(context.invocation_metadata() or ()).get(SERVICE_TOKEN_HEADER)
        caller = self._tokens.verify(token).service if isinstance(token, str) else None
        self._receiver.calls.append(Recorded(request, caller))
        try:
            protovalidate.validate(request)  # what the real service's validation interceptor checks
        except protovalidate.ValidationError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        refusal = self._receiver.refusals.get(request.campaign_id)
        if refusal is not None:
            await context.abort(*refusal)
        replayed = request.checkout_session_id in self._receiver.recorded
        self._receiver.recorded.setdefault(request.checkout_session_id, request)
        return incentives_pb2.RecordCampaignFundingResponse(replayed=replayed)


class IncentivesReceiver:
    """RecordCampaignFunding on a fixed loopback port, which can be taken down and brought back."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.calls: list[Recorded] = []  # every call, refused or not
        self.recorded: dict[str, incentives_pb2.RecordCampaignFundingRequest] = {}  # by checkout session
        # campaign id → the status code and message every call for it is answered with
        self.refusals: dict[str, tuple[grpc.StatusCode, str]] = {}
        self._server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        server = grpc.aio.server()
        # The generated stub marks every RPC abstract; at runtime the others answer UNIMPLEMENTED.
        servicer = _Servicer(self)  # type: ignore[abstract]
        incentives_pb2_grpc.add_IncentivesServiceServicer_to_server(servicer, server)
        if server.add_insecure_port(self.address) != self.port:
            raise RuntimeError(f"could not bind {self.address}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(None)

    def calls_for(self, checkout_session_id: str) -> list[Recorded]:
        return [call for call in self.calls if call.request.checkout_session_id == checkout_session_id]


@contextlib.asynccontextmanager
async def ledger_database(server_url: str) -> AsyncIterator[str]:
    """A database of its own with the ledger schema migrated to head; dropped afterwards."""
    name = f"nerava_funding_{uuid.uuid4().hex[:12]}"
    server = make_url(server_url.replace("postgres://", "postgresql://", 1))
    admin = await asyncpg.connect(
        server.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    )
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = server.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    try:
        await asyncio.to_thread(migrations.upgrade, "ledger", url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@contextlib.asynccontextmanager
async def running_ledger(env: dict[str, str]) -> AsyncIterator[ServiceServer]:
    """The ledger process's server (build_server, as `python -m services.ledger` builds it), started."""
    async with contextlib.AsyncExitStack() as stack:
        server = await build_server(LedgerSettings.from_env(Env(env)), stack)
        await server.start()
        stack.push_async_callback(server.stop)
        yield server


async def eventually(check: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    """The first truthy value of ``check`` (sync or async), waited for with the tests' one `eventually`."""

    async def truthy() -> Any:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        assert value, f"not true within {timeout_s}s: {check}"
        return value

    return await waiting.eventually(truthy, within=timeout_s)
