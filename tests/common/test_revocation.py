"""Token versions through a real Redis: the writer side (accounts) and a follower (any service process)."""

from __future__ import annotations

import asyncio
import time
import uuid

import redis.asyncio as redis

from services.common.revocation import TokenRevocations
from tests.support.eventually import eventually


async def test_a_follower_refuses_older_versions_once_the_revocation_arrives(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    writer, follower = TokenRevocations(client, retention_s=3600), TokenRevocations(client, retention_s=3600)
    user, bystander = str(uuid.uuid4()), str(uuid.uuid4())
    await follower.load()
    stop = asyncio.Event()
    following = asyncio.create_task(follower.follow(stop))
    try:
        issued_with = await writer.current_version(user)
        assert not follower.revoked(user, issued_with)
        new_version = await writer.revoke_all(user)
        assert new_version == issued_with + 1

        def followed() -> None:
            assert follower.revoked(user, issued_with)

        await eventually(followed, within=2, interval=0.01)
        assert not follower.revoked(user, await writer.current_version(user))  # tokens issued after it work
        assert not follower.revoked(bystander, 0)
        # A process started later learns it from the stream's retained part.
        late = TokenRevocations(client, retention_s=3600)
        await late.load()
        assert late.revoked(user, issued_with)
    finally:
        stop.set()
        await following
        await client.aclose()


async def test_revocations_older_than_every_token_are_forgotten(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    now = [0.0]
    user = str(uuid.uuid4())
    try:
        await TokenRevocations(client, retention_s=3600).revoke_all(user)
        follower = TokenRevocations(client, retention_s=3600, clock=lambda: now[0])
        now[0] = time.time()
        await follower.load()
        assert follower.revoked(user, 0)
        now[0] += 3601  # every token the revocation could refuse has expired
        follower._forget_expired()
        assert not follower.revoked(user, 0)
    finally:
        await client.aclose()
