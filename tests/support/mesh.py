"""The five services started in the test process on loopback ports, each with its real server stack."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import secrets
from collections.abc import AsyncIterator, Callable, Mapping

import grpc

from services.accounts.__main__ import build_server as build_accounts
from services.accounts.config import AccountsSettings
from services.common.config import DEV_MODE_VARIABLE, SERVICE_NAMES, Env, RuntimeSettings
from services.common.server import ServiceServer
from services.incentives.config import IncentivesSettings
from services.ledger.config import LedgerSettings
from services.merchants.config import MerchantsSettings
from services.sessions.config import SessionsSettings
from tests.support.rpc import TEST_SERVICE_SECRET
from tools.embedded import free_port

# Services whose settings are more than the runtime's.
SETTINGS: dict[str, Callable[[Env], object]] = {
    "ledger": LedgerSettings.from_env,
    "incentives": IncentivesSettings.from_env,
    "sessions": SessionsSettings.from_env,
    "merchants": MerchantsSettings.from_env,
}


@dataclasses.dataclass
class Mesh:
    ports: dict[str, int]
    env: dict[str, str]
    servers: dict[str, ServiceServer]
    channels: dict[str, grpc.aio.Channel]

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"


def mesh_env(database_url: str, redis_url: str, extra: Mapping[str, str]) -> dict[str, str]:
    ports = {name: free_port() for name in SERVICE_NAMES}
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "STOP_GRACE_SECONDS": "1",
        # The explicit development mode: the secrets the tests do not set keep their development defaults.
        DEV_MODE_VARIABLE: "true",
        "SERVICE_TOKEN_SECRET": TEST_SERVICE_SECRET,
        # Like make run's: signed with a key of this run, not the public development default.
        "PREVIEW_SIGNING_KEY": secrets.token_urlsafe(32),
        "ACCOUNTS_SIGNING_KEY_PASSPHRASE": "test-passphrase",
    }
    for name, port in ports.items():
        env[f"{name.upper()}_PORT"] = str(port)
        env[f"{name.upper()}_ADDR"] = f"127.0.0.1:{port}"
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def running_mesh(env: dict[str, str], services: tuple[str, ...] = SERVICE_NAMES) -> AsyncIterator[Mesh]:
    source = Env(env)
    async with contextlib.AsyncExitStack() as stack:
        servers: dict[str, ServiceServer] = {}
        # accounts first: the others fetch its JWKS.
        servers["accounts"] = await build_accounts(AccountsSettings.from_env(source), stack)
        for name in services:
            if name == "accounts":
                continue
            build = importlib.import_module(f"services.{name}.__main__").build_server
            settings = SETTINGS.get(name, lambda env, name=name: RuntimeSettings.from_env(name, env))(source)
            servers[name] = await build(settings, stack)
        ports: dict[str, int] = {}
        for name, server in servers.items():
            ports[name] = await server.start()
            stack.push_async_callback(server.stop)
        channels = {name: grpc.aio.insecure_channel(f"127.0.0.1:{port}") for name, port in ports.items()}
        for channel in channels.values():
            stack.push_async_callback(channel.close, None)
        yield Mesh(ports=ports, env=env, servers=servers, channels=channels)
