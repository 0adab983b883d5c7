"""The per-process resources of a service, opened and closed in one place (an async context manager):
the database engine, Redis, outbound channels to peer services, and caller verification.

Everything here is created once at start and shared by every request; nothing per request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import grpc
import redis.asyncio as redis
from google.protobuf import json_format
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.common.auth import AccessTokenVerifier, JwksFetcher, ServiceTokens
from services.common.clients import open_channel
from services.common.config import RuntimeSettings
from services.common.db import create_engine, session_factory
from services.common.flags import Fetch, Flags
from services.common.revocation import TokenRevocations


class Runtime:
    def __init__(
        self, settings: RuntimeSettings, jwks_fetcher: JwksFetcher | None = None, flags_fetcher: Fetch | None = None
    ) -> None:
        self.settings = settings
        # Feature flags (services/common/flags.py), kept fresh by a worker of the server.
        self.flags = Flags(flags_fetcher or self._fetch_flags_from_accounts)
        self.service_tokens = ServiceTokens(settings.service_token_secrets, settings.service)
        self.verifier = AccessTokenVerifier(
            jwks_fetcher or self._fetch_jwks_from_accounts, settings.jwt_issuer, settings.jwt_audience
        )
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._redis: redis.Redis | None = None
        self._revocations: TokenRevocations | None = None

    async def __aenter__(self) -> Runtime:
        self._engine = create_engine(self.settings.database_url.value, schema=self.settings.service)
        self._sessions = session_factory(self._engine)
        self._redis = redis.Redis.from_url(self.settings.redis_url.value, decode_responses=False)
        # Loaded before the process serves, so no request meets an empty revocation list.
        self._revocations = TokenRevocations(self._redis, retention_s=self.settings.access_token_ttl_s + 60)
        await self._revocations.load()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
        if self._engine is not None:
            await self._engine.dispose()

    @property
    def engine(self) -> AsyncEngine:
        assert self._engine is not None, "Runtime used outside its context"
        return self._engine

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        assert self._sessions is not None, "Runtime used outside its context"
        return self._sessions

    @property
    def redis(self) -> redis.Redis:
        assert self._redis is not None, "Runtime used outside its context"
        return self._redis

    @property
    def revocations(self) -> TokenRevocations:
        """Access-token revocations (services/common/revocation.py); followed by a worker of the server."""
        assert self._revocations is not None, "Runtime used outside its context"
        return self._revocations

    def channel(self, peer: str) -> grpc.aio.Channel:
        """The one long-lived channel to ``peer`` (opened on first use, closed with the runtime)."""
        channel = self._channels.get(peer)
        if channel is None:
            channel = open_channel(self.settings.peers[peer], self.service_tokens)
            self._channels[peer] = channel
        return channel

    async def follow_flags(self, stop: asyncio.Event) -> None:
        """Keeps self.flags fresh: a worker of the server (services/common/flags.py)."""
        await self.flags.follow(self.redis, stop)

    async def _fetch_flags_from_accounts(self) -> dict[str, bool]:
        from nerava.accounts.v1 import accounts_pb2, accounts_pb2_grpc

        stub = accounts_pb2_grpc.AccountsServiceStub(self.channel("accounts"))
        response = await stub.ListFlags(accounts_pb2.ListFlagsRequest(), timeout=2.0)
        return {flag.name: flag.enabled for flag in response.flags}

    async def _fetch_jwks_from_accounts(self) -> list[Mapping[str, Any]]:
        # Imported here: generated code of one service is only needed by processes that call it.
        from nerava.accounts.v1 import accounts_pb2, accounts_pb2_grpc

        stub = accounts_pb2_grpc.AccountsServiceStub(self.channel("accounts"))
        response = await stub.GetJwks(accounts_pb2.GetJwksRequest(), timeout=3.0)
        return [json_format.MessageToDict(key, preserving_proto_field_name=True) for key in response.keys]
