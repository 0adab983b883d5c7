"""Access-token revocation within seconds: a per-user token version, shared through Redis.

Access tokens are stateless JWTs that live for ACCESS_TOKEN_TTL_S (an hour). Each carries ``tv``, the user's
token version when it was issued. "Log out everywhere" and a role change bump the version (after their database
change commits) and append ``(user, version)`` to a Redis stream; every service process follows that stream
(a blocking XREAD, so a revocation arrives within milliseconds, and within RECONNECT_S after a Redis hiccup)
and keeps, per recently revoked user, the lowest version still valid. The auth interceptor then refuses an
older token with UNAUTHENTICATED / TOKEN_REVOKED.

Cost on the request path: one dict lookup, after the signature verdict cache — so neither that cache nor
Envoy's JWT cache (which only remembers signatures) can bring a revoked token back. Memory: one entry per user
revoked within the last token lifetime; older entries are dropped (every token they could refuse has expired).
The stream is capped (STREAM_MAX_ENTRIES, approximately); a process loads the retained part when it starts.

If Redis cannot be read, processes keep the revocations they know and retry; tokens revoked meanwhile stay
usable until Redis is back or they expire. Refresh tokens are revoked in PostgreSQL regardless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, cast

import redis.asyncio as redis

log = logging.getLogger(__name__)

STREAM = "auth:revocations"
VERSION_KEY = "auth:token-version:{user}"
STREAM_MAX_ENTRIES = 100_000
RECONNECT_S = 1.0
_BLOCK_MS = 1000


class TokenRevocations:
    """The follower side (every service) and the writer side (accounts) of token versions."""

    def __init__(self, client: redis.Redis, retention_s: float, clock: Callable[[], float] = time.time) -> None:
        self._redis = client
        self._retention_s = retention_s
        self._clock = clock
        # user → (lowest valid version, when it was revoked, epoch seconds)
        self._valid_from: dict[str, tuple[int, float]] = {}
        self._last_id = b"0-0"

    # --- request path ---------------------------------------------------------------------------

    def revoked(self, user_id: str, version: int) -> bool:
        entry = self._valid_from.get(user_id)
        return entry is not None and version < entry[0]

    # --- following the stream -------------------------------------------------------------------

    def _apply(self, entries: Any) -> None:
        """Stream entries as redis-py returns them (decode_responses off): [(id, {field: value})]."""
        for entry_id, fields in cast(list[tuple[bytes, dict[bytes, bytes]]], entries or []):
            self._last_id = entry_id
            user = fields.get(b"user", b"").decode()
            version = int(fields.get(b"version", b"0"))
            revoked_at = int(entry_id.split(b"-")[0]) / 1000  # Redis's own clock: no skew between writers
            current = self._valid_from.get(user)
            if user and (current is None or version > current[0]):
                self._valid_from[user] = (version, revoked_at)

    async def load(self) -> None:
        """Everything revoked within the retention window (called once before the process serves)."""
        start = max(0, int((self._clock() - self._retention_s) * 1000))
        self._last_id = f"{start}-0".encode()
        try:
            self._apply(await self._redis.xrange(STREAM, min=f"{start}-0"))
        except redis.RedisError:
            log.warning("token revocations could not be loaded; following the stream from now", exc_info=True)
            self._last_id = b"$"

    async def follow(self, stop: asyncio.Event) -> None:
        """Applies new revocations as they are appended, until ``stop``; forgets expired ones as it goes."""
        while not stop.is_set():
            try:
                reply = await self._redis.xread({STREAM: self._last_id}, block=_BLOCK_MS, count=1000)
            except (redis.RedisError, OSError):
                log.warning("token revocation stream unreadable; retrying", exc_info=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=RECONNECT_S)
                continue
            for _stream, entries in cast(list[tuple[bytes, Any]], reply or []):
                self._apply(entries)
            self._forget_expired()

    def _forget_expired(self) -> None:
        horizon = self._clock() - self._retention_s
        if any(at < horizon for _, at in self._valid_from.values()):
            self._valid_from = {user: entry for user, entry in self._valid_from.items() if entry[1] >= horizon}

    # --- writer side (accounts) -----------------------------------------------------------------

    async def current_version(self, user_id: str) -> int:
        """The version a token issued now carries."""
        return int(await self._redis.get(VERSION_KEY.format(user=user_id)) or 0)

    async def revoke_all(self, user_id: str) -> int:
        """Invalidates every access token issued to the user so far; returns the new version."""
        version = int(await self._redis.incr(VERSION_KEY.format(user=user_id)))
        await self._redis.xadd(
            STREAM, {"user": user_id, "version": str(version)}, maxlen=STREAM_MAX_ENTRIES, approximate=True
        )
        return version
