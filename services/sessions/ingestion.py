"""Pushed vehicle data: Tesla Fleet Telemetry records (IngestTelemetry) and Smartcar webhooks
(HandleSmartcarWebhook), from the raw body and signature to the tracker's action.

A push is checked over its exact body bytes (an HMAC keyed with the provider's secret), then refused when sent longer
ago than a few minutes or when the same message was accepted before — so a captured, correctly signed push cannot be
played again to reopen, extend or end someone's session — and only then parsed into a reading for the tracker.
Seen messages are remembered in Redis (SET NX, shared by every replica) for twice the maximum age: anything older
is refused by its timestamp anyway.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import json

import redis.asyncio as redis
from nerava.sessions.v1 import sessions_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, Unauthenticated, Unavailable
from services.common.flags import TELEMETRY_INGESTION, Flags
from services.sessions import connections, domain
from services.sessions.adapters import smartcar
from services.sessions.adapters.vehicles import WebhookPayloadInvalid, WebhookSignatureInvalid
from services.sessions.reasons import Reason
from services.sessions.tracking import Applied, SessionTracker


@dataclasses.dataclass(frozen=True)
class Ingested:
    """What a push did: the tracker's action (NOTHING when the push was ignored), the session it opened, updated or
    ended ("" when none), and for a Smartcar verification event the answer to its challenge."""

    action: domain.Action = domain.Action.NOTHING
    session_id: str = ""
    challenge: str = ""

    @classmethod
    def of(cls, applied: Applied) -> Ingested:
        return cls(applied.action, "" if applied.session is None else str(applied.session["id"]))


IGNORED = Ingested()


class PushGuard:
    """A signed push acts once, and only while fresh."""

    def __init__(self, cache: redis.Redis, *, max_age_s: float = 300.0) -> None:
        self._cache = cache
        self._max_age = datetime.timedelta(seconds=max_age_s)

    async def admit(
        self,
        kind: str,
        message_id: str | None,
        sent_at: datetime.datetime | None,
        body: bytes,
        now: datetime.datetime,
    ) -> None:
        """Raises PUSH_TOO_OLD unless the push was sent within the maximum age of `now`, PUSH_REPLAYED unless it is
        seen for the first time. Without a message id, the body's SHA-256 stands for it (an identical body is the
        same message)."""
        if sent_at is None:
            raise FailedPrecondition(Reason.PUSH_TOO_OLD, "the push carries no time it was sent")
        if sent_at < now - self._max_age or sent_at > now + self._max_age:
            raise FailedPrecondition(
                Reason.PUSH_TOO_OLD, f"the push was sent at {sent_at.isoformat()}, outside {self._max_age} of now"
            )
        key = f"push:{kind}:{message_id or hashlib.sha256(body).hexdigest()}"
        first = await self._cache.set(key, b"1", nx=True, px=int(self._max_age.total_seconds() * 2000))
        if not first:
            raise AlreadyExists(Reason.PUSH_REPLAYED, "this push was accepted before")


def parse_time(value: object) -> datetime.datetime | None:
    """An RFC 3339 time ("…Z" or with an offset) from a push, None when absent or unreadable or without a zone."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _message_id(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def signature_matches(secret: str, body: bytes, presented: str) -> bool:
    """Fleet Telemetry's `X-Telemetry-Signature`: hex HMAC-SHA256 of the exact body, keyed with our secret."""
    if not secret or not presented:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), presented.strip().lower().encode())


class Ingestion:
    """Pushes in, sessions moved. `reads` answers the connection look-ups (a push names only the VIN or the
    vehicle); an empty secret or token refuses every push of that provider as unsigned."""

    def __init__(
        self,
        reads: AsyncEngine,
        tracker: SessionTracker,
        guard: PushGuard,
        flags: Flags,
        *,
        telemetry_secret: str,
        smartcar_management_token: str,
    ) -> None:
        self._reads = reads
        self._tracker = tracker
        self._guard = guard
        self._flags = flags
        self._telemetry_secret = telemetry_secret
        self._smartcar_token = smartcar_management_token

    async def _switched_on(self, what: str) -> None:
        if not await self._flags.enabled(TELEMETRY_INGESTION):
            raise Unavailable(Reason.INGESTION_DISABLED, f"{what} ingestion is switched off")

    async def telemetry(self, body: bytes, signature: str, now: datetime.datetime) -> Ingested:
        """One Fleet Telemetry record. A record without the charge state only updates a session already open."""
        await self._switched_on("Fleet Telemetry")
        if not signature_matches(self._telemetry_secret, body, signature):
            raise Unauthenticated(
                Reason.SIGNATURE_INVALID, "X-Telemetry-Signature is missing or does not match the body"
            )
        try:
            record = json.loads(body)
            push = domain.parse_fleet_push(record, now)
        except (ValueError, domain.MalformedPush) as exc:
            raise InvalidArgument(
                [("http_body", str(exc) or "not JSON")], reason=Reason.WEBHOOK_PAYLOAD_INVALID
            ) from exc
        sent_at = parse_time(record.get("created_at"))
        await self._guard.admit("tesla", _message_id(record.get("msg_id")), sent_at, body, now)
        connection = await connections.connected_by_vin(self._reads, push.vin)
        if connection is None:
            return IGNORED
        driver_id, selected_vehicle = connection
        vehicle_id = selected_vehicle or push.vin
        reading = domain.Telemetry(
            at=push.at,
            charging=bool(push.charging),
            battery_pct=push.battery_pct,
            kwh_added=push.kwh_added,
            power_kw=push.power_kw,
            lat=push.lat,
            lng=push.lng,
        )
        if push.charging is None:
            return Ingested.of(await self._tracker.update_if_active(driver_id, vehicle_id, reading))
        return Ingested.of(
            await self._tracker.apply(driver_id, vehicle_id, pb.SESSION_SOURCE_TESLA_TELEMETRY, reading, pushed=True)
        )

    async def smartcar_webhook(self, body: bytes, signature: str | None, now: datetime.datetime) -> Ingested:
        """One Smartcar webhook event: a verification event is answered with its challenge's HMAC; a
        VEHICLE_STATE event saying whether the car charges drives the state machine; anything else is ignored."""
        await self._switched_on("Smartcar webhook")
        token = self._smartcar_token
        if not token:
            raise Unauthenticated(Reason.SIGNATURE_INVALID, "Smartcar webhooks are not configured")
        try:
            event = smartcar.verify_webhook(body, signature, token)
            challenge = smartcar.verify_challenge(event)
            if challenge is not None:
                return Ingested(challenge=smartcar.challenge_response(challenge, token))
            reading = smartcar.reading_from_webhook(event, read_at=now)
            meta = event.get("meta")
            delivered_at = meta.get("deliveredAt") if isinstance(meta, dict) else None
        except WebhookSignatureInvalid as exc:
            raise Unauthenticated(Reason.SIGNATURE_INVALID, str(exc)) from exc
        except WebhookPayloadInvalid as exc:
            raise InvalidArgument([("http_body", str(exc))], reason=Reason.WEBHOOK_PAYLOAD_INVALID) from exc
        if reading is None:
            return IGNORED
        # Smartcar retries a delivery with the same eventId: one event acts once.
        await self._guard.admit("smartcar", _message_id(event.get("eventId")), parse_time(delivered_at), body, now)
        driver_id = await connections.smartcar_driver(self._reads, reading.vehicle_id)
        if driver_id is None:
            return IGNORED
        return Ingested.of(
            await self._tracker.apply(
                driver_id, reading.vehicle_id, pb.SESSION_SOURCE_SMARTCAR, reading.telemetry(), pushed=True
            )
        )
