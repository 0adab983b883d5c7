"""Feature flags: product switches an admin turns on or off per environment, seen by every replica within
seconds, without a deployment.

The values live in accounts (table ``feature_flags``, one row per toggled flag and environment; a flag never
toggled holds its default below). Every process reads them through :class:`Flags`, a cache:

- a read is a dict lookup; the cache is refetched (one ListFlags call, shared by concurrent readers) when it
  is older than ``ttl_s``;
- a toggle publishes on the Redis channel CHANGED_CHANNEL after its transaction commits; every process's
  :meth:`Flags.follow` worker marks its cache stale on that message, so the next read fetches the new value —
  within milliseconds normally, within ``ttl_s`` when a message is lost (Redis pub/sub keeps nothing);
- when accounts cannot be reached the last known values stay (then the defaults): a flag read never fails a
  request.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import redis.asyncio as redis

log = logging.getLogger(__name__)

CHANGED_CHANNEL = "nerava:flags:changed"
RECONNECT_S = 1.0


@dataclasses.dataclass(frozen=True)
class FlagDefinition:
    name: str
    default: bool
    description: str


TELEMETRY_INGESTION = FlagDefinition(
    "telemetry_ingestion",
    True,
    "sessions accepts Tesla Fleet Telemetry pushes and turns them into charging sessions; off, pushes are "
    "acknowledged and dropped and sessions fall back to polling",
)
PLACES_GEOCODING = FlagDefinition(
    "places_geocoding",
    True,
    "the charger search geocodes its text with Google Places; off, the text matches charger names only",
)

# Every flag the code reads. A name not here cannot be toggled (NOT_FOUND), so a typo never creates a flag.
DEFINITIONS: Mapping[str, FlagDefinition] = {d.name: d for d in (TELEMETRY_INGESTION, PLACES_GEOCODING)}

Fetch = Callable[[], Awaitable[Mapping[str, bool]]]


class Flags:
    """The cached flag values of this process's environment."""

    def __init__(self, fetch: Fetch, ttl_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._clock = clock
        self._values: dict[str, bool] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def enabled(self, flag: FlagDefinition) -> bool:
        if self._clock() - self._fetched_at >= self._ttl_s:
            await self._refresh()
        return self._values.get(flag.name, flag.default)

    def invalidate(self) -> None:
        self._fetched_at = float("-inf")

    async def _refresh(self) -> None:
        async with self._lock:
            if self._clock() - self._fetched_at < self._ttl_s:
                return  # another reader refreshed while this one waited
            started = self._clock()
            try:
                values = await self._fetch()
            except Exception:
                # Keep what is known; ask again after another ttl rather than on every read.
                log.warning("feature flags could not be read; keeping the last known values", exc_info=True)
                self._fetched_at = started
                return
            self._values = dict(values)
            self._fetched_at = started

    async def follow(self, client: redis.Redis, stop: asyncio.Event) -> None:
        """Marks the cache stale on every toggle (a worker of each process)."""
        while not stop.is_set():
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANGED_CHANNEL)
                    # Toggles made while this process was not subscribed are only found by a refetch.
                    self.invalidate()
                    while not stop.is_set():
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if message is not None:
                            self.invalidate()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("feature flag changes not followed; reconnecting", exc_info=True)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), RECONNECT_S)


async def announce_change(client: redis.Redis, name: str) -> None:
    """Tells every process a flag changed (after the toggle committed). A lost message costs ttl_s of delay."""
    try:
        await client.publish(CHANGED_CHANNEL, name)
    except Exception:
        log.warning("flag change not announced; replicas see it within their cache ttl", exc_info=True)
