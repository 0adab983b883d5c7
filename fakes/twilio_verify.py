"""A local Twilio Verify v2 that speaks Twilio's wire format over real HTTP on 127.0.0.1.

Tests point the production TwilioVerifyProvider at `base_url` and read the code that "was sent"
from `sent`, so the adapter is exercised end to end (form encoding, basic auth, status codes,
Twilio error JSON, keep-alive connections, timeouts) without a network or a Twilio account.
It is built on asyncio.start_server and a small HTTP/1.1 parser so it adds no dependency.

Behaviour follows Twilio's documentation: one pending verification per recipient, a random
6-digit code that resends repeat, 10 minutes to live, 5 sends and 5 check attempts, and the
verification deleted once approved, expired or out of attempts (later checks answer 404/20404).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from types import TracebackType
from typing import Final, NamedTuple, Self
from urllib.parse import parse_qsl

from fakes.http1 import MalformedRequest, Request, read_request, reason_phrase

VERIFICATION_TTL: Final = timedelta(minutes=10)
MAX_SEND_ATTEMPTS: Final = 5
MAX_CHECK_ATTEMPTS: Final = 5

_CHANNELS: Final = frozenset({"sms", "call", "email", "whatsapp", "sna"})
_E164: Final = re.compile(r"\+[1-9][0-9]{6,14}")
_ROUTE: Final = re.compile(r"/v2/Services/([^/]+)/(Verifications|VerificationCheck)")
_MAX_BODY_BYTES: Final = 64 * 1024


class SentCode(NamedTuple):
    """A code the fake "delivered": what a person would read on their phone or in their inbox."""

    channel: str
    to: str
    code: str


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as it arrived, for tests that assert on the wire format."""

    method: str
    path: str
    headers: Mapping[str, str]  # names lower-cased
    form: Mapping[str, str]


@dataclass
class _Verification:
    sid: str
    to: str
    channel: str
    code: str
    created: datetime
    updated: datetime
    send_attempts: list[dict[str, str]] = field(default_factory=list)
    failed_checks: int = 0


@dataclass(frozen=True)
class _Response:
    status: int
    body: Mapping[str, object]
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class _InjectedFailure:
    status: int
    twilio_code: int
    message: str


def _new_sid(prefix: str) -> str:
    # Twilio sids are a two-letter type prefix and 32 hex digits: 34 characters.
    return prefix + secrets.token_hex(16)


def _iso8601(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, twilio_code: int, message: str) -> _Response:
    return _Response(
        status,
        {
            "code": twilio_code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{twilio_code}",
            "status": status,
        },
    )


def _invalid_parameter(name: str) -> _Response:
    return _error(400, 60200, f"Invalid parameter `{name}`")


class FakeTwilioVerify:
    """Async context manager serving a fake Twilio Verify v2 on an ephemeral loopback port.

    Knobs for failure paths:
      * `fail_next_send_with(status, twilio_code)` / `fail_next_check_with(...)`: the next request
        to that endpoint gets a Twilio error response instead of being processed;
      * `response_delay`: seconds to wait before every response, to drive client timeouts;
      * `advance_time(delta)`: move the fake's clock forward, to expire pending verifications.
    """

    def __init__(
        self,
        *,
        account_sid: str | None = None,
        auth_token: str | None = None,
        service_sid: str | None = None,
    ) -> None:
        self.account_sid = account_sid or _new_sid("AC")
        self.auth_token = auth_token or secrets.token_hex(16)
        self.service_sid = service_sid or _new_sid("VA")
        self.sent: list[SentCode] = []
        self.requests: list[ReceivedRequest] = []
        self.response_delay = 0.0
        # Keyed by recipient: Twilio keeps at most one pending verification per `To`.
        self._verifications: dict[str, _Verification] = {}
        self._next_failure: dict[str, _InjectedFailure] = {}
        self._clock_offset = timedelta()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve_connection, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        # Python 3.11's wait_closed does not wait for open connections, and a handler may be
        # sleeping in `response_delay`: cancel them so no task outlives the fake.
        for connection in list(self._connections):
            connection.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeTwilioVerify is not running; use it as `async with`")
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    # -- knobs -------------------------------------------------------------------------------

    def fail_next_send_with(self, status: int, twilio_code: int, message: str = "") -> None:
        self._next_failure["Verifications"] = _InjectedFailure(status, twilio_code, message or reason_phrase(status))

    def fail_next_check_with(self, status: int, twilio_code: int, message: str = "") -> None:
        self._next_failure["VerificationCheck"] = _InjectedFailure(
            status, twilio_code, message or reason_phrase(status)
        )

    def advance_time(self, delta: timedelta) -> None:
        self._clock_offset += delta

    def last_code_sent_to(self, to: str) -> str:
        for sent in reversed(self.sent):
            if sent.to == to:
                return sent.code
        raise LookupError(f"no code was sent to {to!r}")

    # -- HTTP --------------------------------------------------------------------------------

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            # Keep-alive: the adapter's long-lived client reuses connections across requests.
            while True:
                try:
                    request = await read_request(reader, _MAX_BODY_BYTES)
                except MalformedRequest as exc:
                    writer.write(_encode(_error(400, 20001, str(exc)), keep_alive=False))
                    await writer.drain()
                    return
                if request is None:
                    return
                keep_alive = request.version == "HTTP/1.1" and request.headers.get("connection", "").lower() != "close"
                response = await self._respond(request)
                writer.write(_encode(response, keep_alive=keep_alive))
                await writer.drain()
                if not keep_alive:
                    return
        except ConnectionError:
            # The client gave up (typically a timeout while we slept in `response_delay`).
            return
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()

    async def _respond(self, request: Request) -> _Response:
        form = _parse_form(request)
        self.requests.append(ReceivedRequest(request.method, request.path, request.headers, form))
        if self.response_delay > 0:
            await asyncio.sleep(self.response_delay)

        if not self._authorized(request.headers.get("authorization")):
            response = _error(401, 20003, "Authenticate")
            return _Response(
                response.status,
                response.body,
                (("WWW-Authenticate", 'Basic realm="Twilio API"'),),
            )

        route = _ROUTE.fullmatch(request.path)
        if route is None or route.group(1) != self.service_sid:
            return self._not_found(request.path)
        if request.method != "POST":
            return _error(405, 20004, "Method not allowed")

        endpoint = route.group(2)
        failure = self._next_failure.pop(endpoint, None)
        if failure is not None:
            return _error(failure.status, failure.twilio_code, failure.message)
        if endpoint == "Verifications":
            return self._start_verification(form)
        return self._check_verification(request.path, form)

    def _authorized(self, header: str | None) -> bool:
        if header is None:
            return False
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            username, separator, password = (
                base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
            )
        except ValueError:  # binascii.Error and UnicodeDecodeError are both ValueErrors
            return False
        # Compare bytes: compare_digest rejects non-ASCII str, and credentials come from clients.
        return (
            separator == ":"
            and hmac.compare_digest(username.encode(), self.account_sid.encode())
            and hmac.compare_digest(password.encode(), self.auth_token.encode())
        )

    # -- Verify semantics --------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.now(UTC) + self._clock_offset

    def _pending(self, to: str) -> _Verification | None:
        verification = self._verifications.get(to)
        if verification is not None and self._now() >= verification.created + VERIFICATION_TTL:
            del self._verifications[to]
            return None
        return verification

    def _start_verification(self, form: Mapping[str, str]) -> _Response:
        to = form.get("To", "")
        channel = form.get("Channel", "")
        if not to:
            return _invalid_parameter("To")
        if channel not in _CHANNELS:
            return _invalid_parameter("Channel")
        if channel == "email":
            if "@" not in to.strip("@"):
                return _invalid_parameter("To")
        elif _E164.fullmatch(to) is None:
            return _invalid_parameter("To")

        now = self._now()
        verification = self._pending(to)
        if verification is None:
            verification = _Verification(
                sid=_new_sid("VE"),
                to=to,
                channel=channel,
                code=f"{secrets.randbelow(1_000_000):06d}",
                created=now,
                updated=now,
            )
            self._verifications[to] = verification
        elif len(verification.send_attempts) >= MAX_SEND_ATTEMPTS:
            return _error(429, 60203, "Max send attempts reached")

        # A resend while pending delivers the same code again, possibly over another channel.
        verification.channel = channel
        verification.updated = now
        verification.send_attempts.append(
            {
                "attempt_sid": _new_sid("VL"),
                "channel": channel.upper(),
                "time": _iso8601(now),
            }
        )
        self.sent.append(SentCode(channel, to, verification.code))
        return _Response(201, self._verification_json(verification))

    def _check_verification(self, path: str, form: Mapping[str, str]) -> _Response:
        to = form.get("To", "")
        verification_sid = form.get("VerificationSid", "")
        code = form.get("Code", "")
        if not to and not verification_sid:
            return _invalid_parameter("To")
        if not 4 <= len(code) <= 10:
            return _invalid_parameter("Code")

        verification = self._pending(to) if to else self._pending_by_sid(verification_sid)
        if verification is None or (verification_sid and verification.sid != verification_sid):
            return self._not_found(path)

        now = self._now()
        verification.updated = now
        if hmac.compare_digest(code.encode(), verification.code.encode()):
            # Approved verifications are deleted: a code works once.
            del self._verifications[verification.to]
            return _Response(200, self._check_json(verification, status="approved"))
        verification.failed_checks += 1
        if verification.failed_checks >= MAX_CHECK_ATTEMPTS:
            del self._verifications[verification.to]
        return _Response(200, self._check_json(verification, status="pending"))

    def _pending_by_sid(self, sid: str) -> _Verification | None:
        for verification in list(self._verifications.values()):
            if verification.sid == sid:
                return self._pending(verification.to)
        return None

    def _not_found(self, path: str) -> _Response:
        resource = path.removeprefix("/v2")
        return _error(404, 20404, f"The requested resource {resource} was not found")

    def _verification_json(self, verification: _Verification) -> dict[str, object]:
        return {
            "sid": verification.sid,
            "service_sid": self.service_sid,
            "account_sid": self.account_sid,
            "to": verification.to,
            "channel": verification.channel,
            "status": "pending",
            "valid": False,
            "lookup": {},
            "amount": None,
            "payee": None,
            "send_code_attempts": list(verification.send_attempts),
            "date_created": _iso8601(verification.created),
            "date_updated": _iso8601(verification.updated),
            "sna": None,
            "url": (f"{self.base_url}/v2/Services/{self.service_sid}/Verifications/{verification.sid}"),
        }

    def _check_json(self, verification: _Verification, *, status: str) -> dict[str, object]:
        return {
            "sid": verification.sid,
            "service_sid": self.service_sid,
            "account_sid": self.account_sid,
            "to": verification.to,
            "channel": verification.channel,
            "status": status,
            "valid": status == "approved",
            "amount": None,
            "payee": None,
            "date_created": _iso8601(verification.created),
            "date_updated": _iso8601(verification.updated),
            "sna_attempts_error_codes": None,
        }


def _parse_form(request: Request) -> dict[str, str]:
    # Twilio reads parameters only from form bodies; anything else (JSON, query strings) arrives
    # as "no parameters", which the endpoints answer with 400/60200.
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    return dict(parse_qsl(text, keep_blank_values=True))


def _encode(response: _Response, *, keep_alive: bool) -> bytes:
    body = json.dumps(response.body).encode()
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [
        f"HTTP/1.1 {response.status} {reason}",
        "Content-Type: application/json; charset=utf-8",
        f"Content-Length: {len(body)}",
        f"Twilio-Request-Id: {_new_sid('RQ')}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
        *(f"{name}: {value}" for name, value in response.headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
