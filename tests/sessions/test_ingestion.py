"""The ingestion core's refusals without a database or gRPC (services/sessions/ingestion.py): the signature, the
switch, the payload, the age and the replay of a push, each with its registered reason. What an accepted push does
to a session is tested through the service (test_telemetry_push.py, test_smartcar_webhook.py)."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
from typing import Any, cast

import pytest
import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import AlreadyExists, DomainError, FailedPrecondition, InvalidArgument, Unauthenticated
from services.common.flags import TELEMETRY_INGESTION, Flags
from services.sessions.adapters import smartcar
from services.sessions.ingestion import Ingestion, PushGuard, parse_time
from services.sessions.reasons import Reason
from services.sessions.tracking import SessionTracker

NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)
SECRET, TOKEN = "telemetry-secret", "management-token"


class SeenMessages:
    """Redis's SET NX, as the guard uses it."""

    def __init__(self) -> None:
        self.kept_ms: dict[str, int] = {}

    async def set(self, key: str, value: bytes, *, nx: bool, px: int) -> bool:
        if nx and key in self.kept_ms:
            return False
        self.kept_ms[key] = px
        return True


def guard(seen: SeenMessages | None = None) -> PushGuard:
    return PushGuard(cast(redis.Redis, seen or SeenMessages()), max_age_s=300)


def ingestion(*, switched_on: bool = True) -> Ingestion:
    async def fetch() -> dict[str, bool]:
        return {TELEMETRY_INGESTION.name: switched_on}

    # Every case here is refused before a connection look-up or the tracker.
    return Ingestion(
        cast(AsyncEngine, None),
        cast(SessionTracker, None),
        guard(),
        Flags(fetch),
        telemetry_secret=SECRET,
        smartcar_management_token=TOKEN,
    )


def signature(body: bytes, key: str) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def reason_of(error: pytest.ExceptionInfo[DomainError]) -> str:
    return error.value.reason


async def test_a_push_is_admitted_once_and_only_while_fresh() -> None:
    seen = SeenMessages()
    pushes = guard(seen)
    await pushes.admit("tesla", "m-1", NOW - datetime.timedelta(seconds=299), b"{}", NOW)
    # Remembered for twice the maximum age: anything older is refused by its time anyway.
    assert seen.kept_ms == {"push:tesla:m-1": 600_000}
    with pytest.raises(AlreadyExists) as replayed:
        await pushes.admit("tesla", "m-1", NOW, b"{}", NOW)
    assert reason_of(replayed) == Reason.PUSH_REPLAYED
    for sent_at in (None, NOW - datetime.timedelta(seconds=301), NOW + datetime.timedelta(seconds=301)):
        with pytest.raises(FailedPrecondition) as stale:
            await pushes.admit("tesla", "m-2", sent_at, b"{}", NOW)
        assert reason_of(stale) == Reason.PUSH_TOO_OLD
    # Without a message id, an identical body is the same message.
    await pushes.admit("smartcar", None, NOW, b"body", NOW)
    with pytest.raises(AlreadyExists):
        await pushes.admit("smartcar", None, NOW, b"body", NOW)


def test_push_times_need_a_zone() -> None:
    assert parse_time("2026-12-07T12:00:00Z") == NOW
    assert parse_time("2026-12-07T13:00:00+01:00") == NOW
    assert parse_time("2026-12-07T12:00:00") is None
    assert parse_time("yesterday") is None
    assert parse_time(1765108800) is None


async def test_telemetry_refusals() -> None:
    body = json.dumps({"vin": "5YJ3", "created_at": NOW.isoformat(), "data": []}).encode()
    with pytest.raises(Unauthenticated) as unsigned:
        await ingestion().telemetry(body, "", NOW)
    assert reason_of(unsigned) == Reason.SIGNATURE_INVALID
    with pytest.raises(Unauthenticated):
        await ingestion().telemetry(body, signature(body, "another secret"), NOW)
    with pytest.raises(DomainError) as switched_off:
        await ingestion(switched_on=False).telemetry(body, signature(body, SECRET), NOW)
    assert reason_of(switched_off) == Reason.INGESTION_DISABLED
    not_json = b"not json"
    with pytest.raises(InvalidArgument) as malformed:
        await ingestion().telemetry(not_json, signature(not_json, SECRET), NOW)
    assert reason_of(malformed) == Reason.WEBHOOK_PAYLOAD_INVALID


async def test_a_smartcar_verification_is_answered_with_its_challenge() -> None:
    event: dict[str, Any] = {"eventType": "VERIFY", "data": {"challenge": "c-123"}}
    body = json.dumps(event).encode()
    answered = await ingestion().smartcar_webhook(body, signature(body, TOKEN), NOW)
    assert answered.challenge == smartcar.challenge_response("c-123", TOKEN) and not answered.session_id
    with pytest.raises(Unauthenticated) as unsigned:
        await ingestion().smartcar_webhook(body, None, NOW)
    assert reason_of(unsigned) == Reason.SIGNATURE_INVALID
