"""Pushed vehicle data (Tesla Fleet Telemetry records, Smartcar webhooks) after their signature: refused when sent
longer ago than a few minutes, or when the same message was accepted before — so a captured, correctly signed push
cannot be played again to reopen, extend or end someone's session.

Seen messages are remembered in Redis (SET NX, shared by every replica) for twice the maximum age: anything older
is refused by its timestamp anyway.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable

import redis.asyncio as redis

from services.sessions.reasons import Reason


class PushRefused(Exception):
    """A signed push that must not act: `reason` is the ErrorInfo reason the caller answers with."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


STALE = Reason.PUSH_TOO_OLD
REPLAYED = Reason.PUSH_REPLAYED


class PushGuard:
    def __init__(
        self,
        cache: redis.Redis,
        *,
        max_age_s: float = 300.0,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._cache = cache
        self._max_age = datetime.timedelta(seconds=max_age_s)
        self._clock = clock

    async def admit(self, kind: str, message_id: str | None, sent_at: datetime.datetime | None, body: bytes) -> None:
        """Raises PushRefused unless the push was sent within the maximum age and is seen for the first time.
        Without a message id, the body's SHA-256 stands for it (an identical body is the same message)."""
        now = self._clock()
        if sent_at is None:
            raise PushRefused(STALE, "the push carries no time it was sent")
        if sent_at < now - self._max_age or sent_at > now + self._max_age:
            raise PushRefused(STALE, f"the push was sent at {sent_at.isoformat()}, outside {self._max_age} of now")
        key = f"push:{kind}:{message_id or hashlib.sha256(body).hexdigest()}"
        first = await self._cache.set(key, b"1", nx=True, px=int(self._max_age.total_seconds() * 2000))
        if not first:
            raise PushRefused(REPLAYED, "this push was accepted before")


def parse_time(value: object) -> datetime.datetime | None:
    """An RFC 3339 time ("…Z" or with an offset) from a push, None when absent or unreadable or without a zone."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
