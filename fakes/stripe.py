"""A local Stripe that speaks Stripe's v1 wire format over real HTTP on 127.0.0.1.

Tests point the production StripePayouts adapter (the official `stripe` library underneath) at
`base_url` with `api_key`, so the whole path is exercised: form encoding with nested keys
(`metadata[payout_id]=…`, `line_items[0][price_data][unit_amount]=…`), bearer or basic auth with the
secret key, Stripe's JSON objects and error JSON, Idempotency-Key replays and conflicts, list pagination,
keep-alive connections, timeouts and lost answers. It also plays Stripe's webhook sender: events signed
the way Stripe signs them, delivered over HTTP. Built on asyncio.start_server and a small HTTP/1.1 parser.

Covered endpoints (exactly what the adapter uses): POST /v1/accounts, GET /v1/accounts/{id},
POST /v1/account_links, POST and GET /v1/transfers, GET /v1/transfers/{id}, POST /v1/checkout/sessions,
GET /v1/checkout/sessions/{id}, POST and GET /v1/refunds, GET /v1/refunds/{id}.

Behaviour follows Stripe's documentation: every POST may carry an Idempotency-Key; once an endpoint has
started executing, its status and body are saved under the key, and the same key with the same method,
path and parameters gets them back with `Idempotent-Replayed: true` (errors included), while the same key
with anything else is a 400 idempotency_error. Requests refused before execution (bad parameters, rate
limiting) are not saved. A transfer needs the destination's transfers capability to be active and enough
platform balance; lists are newest first with `has_more` and `starting_after`/`ending_before` cursors.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import hmac
import json
import re
import secrets
import string
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import parse_qsl

import httpx

from fakes.http1 import MalformedRequest, Request, read_request, reason_phrase

# What events carry in `api_version` unless a test sets FakeStripe.api_version; responses echo the
# Stripe-Version the client sent, as Stripe does.
API_VERSION: Final = "2026-10-28.endive"

# The platform's available balance at start: large enough that only tests that mean to run out do.
DEFAULT_BALANCE_CENTS: Final = 10_000_000

MAX_IDEMPOTENCY_KEY_LENGTH: Final = 255
_MAX_BODY_BYTES: Final = 256 * 1024
_ACCOUNT_LINK_TTL_S: Final = 300
_CHECKOUT_SESSION_TTL_S: Final = 24 * 3600
_ALPHANUMERIC: Final = string.ascii_letters + string.digits

# Which `object` an event's data.object must be, by event-type prefix: catches a test sending a
# transfer under a payout event, which the real Stripe never does.
_EVENT_OBJECTS: Final[Mapping[str, str]] = {
    "account.": "account",
    "transfer.": "transfer",
    "payout.": "payout",
    "checkout.session.": "checkout.session",
}

_KEY: Final = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_SEGMENT: Final = re.compile(r"\[([^\[\]]*)\]")

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as it arrived, for tests that assert on the wire format."""

    method: str
    path: str
    headers: Mapping[str, str]  # names lower-cased
    form: tuple[tuple[str, str], ...]  # the raw pairs: query string for GET, body for POST
    params: Mapping[str, Any]  # the same pairs decoded into Stripe's nested objects and arrays


_HOSTED_CHECKOUT_PREFIX = "/c/pay/"


@dataclass(frozen=True)
class _Response:
    status: int
    body: Mapping[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class _Saved:
    """A response kept under an idempotency key."""

    method: str
    path: str
    params: Mapping[str, Any]
    response: _Response
    request_id: str


@dataclass(frozen=True)
class _InjectedFailure:
    status: int
    error_type: str
    code: str | None
    message: str


class _InvalidParams(Exception):
    """The form keys do not describe one nested object."""


class _Rejected(Exception):
    """A handler's Stripe error; `executed` says whether Stripe would save it under the idempotency key."""

    def __init__(self, response: _Response, *, executed: bool) -> None:
        super().__init__(response.body)
        self.response = response
        self.executed = executed


def _new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def _now() -> int:
    return int(time.time())


def _error(
    status: int,
    error_type: str,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> _Response:
    error: JsonObject = {"type": error_type, "message": message}
    # Stripe leaves out `code`, `param` and `doc_url` when they do not apply (401s, idempotency errors).
    if code is not None:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param is not None:
        error["param"] = param
    return _Response(status, {"error": error}, headers)


def _invalid(message: str, *, param: str | None = None, code: str | None = None, executed: bool = False) -> _Rejected:
    return _Rejected(_error(400, "invalid_request_error", message, code=code, param=param), executed=executed)


def _missing(param: str) -> _Rejected:
    return _invalid(f"Missing required param: {param}.", param=param, code="parameter_missing")


def _empty_list(url: str) -> JsonObject:
    return {"object": "list", "data": [], "has_more": False, "total_count": 0, "url": url}


class FakeStripe:
    """Async context manager serving a fake Stripe API on an ephemeral loopback port.

    Point the client at `base_url` with `api_key`; sign and check webhooks with `webhook_secret`.

    Knobs:
      * `complete_onboarding(account_id)`: the account finishes Express onboarding (details submitted,
        charges and payouts enabled, every requested capability active);
      * `fail_next_transfer_with(status, code)`: the next transfer request is answered with that Stripe
        error instead of being executed (saved under its idempotency key, except 429s, as Stripe does);
      * `delay_next_transfer(seconds)`: the next transfer is created, then its answer waits, to drive a
        client timeout after Stripe has done the work;
      * `delay_next_checkout(seconds)`: the same for the next Checkout session;
      * `lose_next_transfer()`: the next transfer is created and the connection is dropped without an
        answer, the "lost response" case;
      * `response_delay`: seconds to wait before handling every request;
      * `balance_available_cents`: the platform balance transfers are paid from;
      * `reverse_transfer`, `complete_checkout_session`, `expire_checkout_session`,
        `connected_account_payout`: later lifecycle steps, returning the object to send in a webhook.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        webhook_secret: str | None = None,
        balance_available_cents: int = DEFAULT_BALANCE_CENTS,
        port: int = 0,
        auto_onboard: bool = False,
        webhook_url: str | None = None,
    ) -> None:
        # `make run`: nobody can fill in Stripe's hosted onboarding locally, so accounts may start complete,
        # and created transfers may be announced to the ledger's webhook as Stripe would.
        self._port = port
        self._auto_onboard = auto_onboard
        self._webhook_url = webhook_url
        self._background: set[asyncio.Task[None]] = set()
        self.api_key = api_key or _new_id("sk_test_", 32)
        self.webhook_secret = webhook_secret or _new_id("whsec_", 32)
        self.api_version = API_VERSION
        self.balance_available_cents = balance_available_cents
        self.response_delay = 0.0
        self.requests: list[ReceivedRequest] = []
        self.events: list[JsonObject] = []
        self._accounts: dict[str, JsonObject] = {}
        self._transfers: dict[str, JsonObject] = {}  # insertion order is creation order
        self._sessions: dict[str, JsonObject] = {}
        # PaymentIntents made when a checkout is paid, and what each open session will give its own
        # (`payment_intent_data`: Stripe keeps it with the session without showing it on the session object).
        self._payment_intents: dict[str, JsonObject] = {}
        self._session_intent_data: dict[str, JsonObject] = {}
        self._refunds: dict[str, JsonObject] = {}  # insertion order is creation order
        # Keyed by (Stripe-Account header, key): Stripe scopes keys to the account a request acts for.
        self._idempotency: dict[tuple[str, str], _Saved] = {}
        self._next_transfer_failure: _InjectedFailure | None = None
        self._next_transfer_delay: float | None = None
        self._next_checkout_delay: float | None = None
        self._lose_next_transfer = False
        self._outage = False  # set by outage(): every API call answers 503 until it ends
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._webhook_client: httpx.AsyncClient | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def _announce(self, event_type: str, obj: Mapping[str, Any]) -> None:
        """Stripe sends events shortly after the API call that caused them; a receiver that is down is
        simply missed here (real Stripe would retry; the demo does not need to)."""
        await asyncio.sleep(0.2)
        assert self._webhook_url is not None
        with contextlib.suppress(httpx.HTTPError):
            await self.send_event(self._webhook_url, event_type, copy.deepcopy(dict(obj)))

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve_connection, "127.0.0.1", self._port)
        self._webhook_client = httpx.AsyncClient(timeout=5.0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._webhook_client is not None:
            await self._webhook_client.aclose()
            self._webhook_client = None
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        # Python 3.11's wait_closed does not wait for open connections, and a handler may be sleeping
        # in a delay: cancel them so no task outlives the fake.
        for connection in list(self._connections):
            connection.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeStripe is not running; use it as `async with`")
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    # -- state, read by tests ----------------------------------------------------------------

    @property
    def transfers(self) -> list[JsonObject]:
        """Every transfer created, oldest first (copies)."""
        return [copy.deepcopy(transfer) for transfer in self._transfers.values()]

    @property
    def accounts(self) -> dict[str, JsonObject]:
        """Every connected account, by id (copies)."""
        return copy.deepcopy(self._accounts)

    def account(self, account_id: str) -> JsonObject:
        return copy.deepcopy(self._accounts[account_id])

    def transfer(self, transfer_id: str) -> JsonObject:
        return copy.deepcopy(self._transfers[transfer_id])

    def checkout_session(self, session_id: str) -> JsonObject:
        return copy.deepcopy(self._sessions[session_id])

    @property
    def checkout_sessions(self) -> list[JsonObject]:
        """Every checkout session created, oldest first (copies)."""
        return [copy.deepcopy(session) for session in self._sessions.values()]

    def payment_intent(self, payment_intent_id: str) -> JsonObject:
        return copy.deepcopy(self._payment_intents[payment_intent_id])

    @property
    def refunds(self) -> list[JsonObject]:
        """Every refund created, oldest first (copies)."""
        return [copy.deepcopy(refund) for refund in self._refunds.values()]

    def refunded_cents(self, payment_intent_id: str) -> int:
        """What the payment's refunds returned to the payer so far."""
        return sum(r["amount"] for r in self._refunds.values() if r["payment_intent"] == payment_intent_id)

    def requests_to(self, method: str, path: str) -> list[ReceivedRequest]:
        return [request for request in self.requests if (request.method, request.path) == (method, path)]

    # -- knobs -------------------------------------------------------------------------------

    def complete_onboarding(self, account_id: str) -> JsonObject:
        """The holder finished onboarding and Stripe verified them; returns the account as
        account.updated would carry it."""
        account = self._accounts[account_id]
        capabilities: dict[str, str] = account["capabilities"]
        for name in capabilities:
            capabilities[name] = "active"
        account["details_submitted"] = True
        account["charges_enabled"] = "card_payments" in capabilities
        account["payouts_enabled"] = True
        account["tos_acceptance"] = {"date": _now()}
        account["requirements"] = _requirements(due=[])
        return copy.deepcopy(account)

    def fail_next_transfer_with(
        self, status: int, code: str | None, message: str = "", *, error_type: str | None = None
    ) -> None:
        if error_type is None:
            if status >= 500:
                error_type = "api_error"
            elif status == 402:
                error_type = "card_error"
            else:
                error_type = "invalid_request_error"
        self._next_transfer_failure = _InjectedFailure(status, error_type, code, message or reason_phrase(status))

    def delay_next_transfer(self, seconds: float) -> None:
        self._next_transfer_delay = seconds

    def delay_next_checkout(self, seconds: float) -> None:
        self._next_checkout_delay = seconds

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """Within the block every API call answers 503 (Stripe's own retries included)."""
        self._outage = True
        try:
            yield
        finally:
            self._outage = False

    def lose_next_transfer(self) -> None:
        self._lose_next_transfer = True

    def reverse_transfer(self, transfer_id: str) -> JsonObject:
        """Reverse the whole transfer (funds go back to the platform); returns the transfer as
        transfer.reversed carries it."""
        transfer = self._transfers[transfer_id]
        remaining = transfer["amount"] - transfer["amount_reversed"]
        if remaining > 0:
            reversal = {
                "id": _new_id("trr_"),
                "object": "transfer_reversal",
                "amount": remaining,
                "balance_transaction": _new_id("txn_"),
                "created": _now(),
                "currency": transfer["currency"],
                "destination_payment_refund": _new_id("pyr_"),
                "metadata": {},
                "source_refund": None,
                "transfer": transfer_id,
            }
            reversals = transfer["reversals"]
            reversals["data"].insert(0, reversal)
            reversals["total_count"] += 1
            transfer["amount_reversed"] += remaining
            self.balance_available_cents += remaining
        transfer["reversed"] = True
        return copy.deepcopy(transfer)

    def complete_checkout_session(self, session_id: str) -> JsonObject:
        """The payer paid; returns the session as checkout.session.completed carries it. The payment's
        PaymentIntent gets the session's `payment_intent_data[metadata]`."""
        session = self._sessions[session_id]
        if session["status"] != "open":
            raise ValueError(f"checkout session {session_id} is {session['status']}, not open")
        intent_id = _new_id("pi_")
        self._payment_intents[intent_id] = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": session["amount_total"],
            "amount_received": session["amount_total"],
            "created": _now(),
            "currency": session["currency"],
            "livemode": False,
            "metadata": dict(self._session_intent_data.get(session_id, {}).get("metadata", {})),
            "status": "succeeded",
        }
        session["status"] = "complete"
        session["payment_status"] = "paid"
        session["payment_intent"] = intent_id
        # Stripe clears the URL once a session can no longer be visited.
        session["url"] = None
        return copy.deepcopy(session)

    def expire_checkout_session(self, session_id: str) -> JsonObject:
        """The session expired unpaid (its `expires_at` passed, or it was expired through the API);
        returns the session as checkout.session.expired carries it."""
        session = self._sessions[session_id]
        if session["status"] != "open":
            raise ValueError(f"checkout session {session_id} is {session['status']}, not open")
        session["status"] = "expired"
        session["url"] = None
        return copy.deepcopy(session)

    def connected_account_payout(
        self,
        account_id: str,
        amount_cents: int,
        *,
        failure_code: str | None = None,
        failure_message: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> JsonObject:
        """A payout from the connected account's balance to its bank, as payout.paid (no
        `failure_code`) or payout.failed carries it. Send it with `account=account_id`: payout events
        of connected accounts reach the platform's Connect endpoint with the account named."""
        if account_id not in self._accounts:
            raise KeyError(account_id)
        now = _now()
        failed = failure_code is not None
        return {
            "id": _new_id("po_"),
            "object": "payout",
            "amount": amount_cents,
            "arrival_date": now + 2 * 86400,
            "automatic": True,
            "balance_transaction": _new_id("txn_"),
            "created": now,
            "currency": "usd",
            "description": "STRIPE PAYOUT",
            "destination": _new_id("ba_"),
            "failure_balance_transaction": _new_id("txn_") if failed else None,
            "failure_code": failure_code,
            "failure_message": (failure_message or "The bank could not process this payout.") if failed else None,
            "livemode": False,
            "metadata": dict(metadata or {}),
            "method": "standard",
            "reconciliation_status": "completed",
            "source_type": "card",
            "statement_descriptor": None,
            "status": "failed" if failed else "paid",
            "type": "bank_account",
        }

    # -- webhooks ----------------------------------------------------------------------------

    def signed_event(
        self,
        event_type: str,
        data_object: Mapping[str, Any],
        *,
        account: str | None = None,
        previous_attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
    ) -> tuple[bytes, str]:
        """Build a Stripe event around `data_object` and sign it as Stripe does.

        Returns the exact body bytes and the Stripe-Signature header value. `account` marks an event
        that happened on a connected account; `timestamp` backdates the event and its signature.
        """
        for prefix, object_name in _EVENT_OBJECTS.items():
            if event_type.startswith(prefix) and data_object.get("object") != object_name:
                raise ValueError(f"{event_type} carries a {object_name}, not {data_object.get('object')!r}")
        created = _now() if timestamp is None else timestamp
        event: JsonObject = {"id": _new_id("evt_"), "object": "event"}
        if account is not None:
            event["account"] = account
        data: JsonObject = {"object": copy.deepcopy(dict(data_object))}
        if previous_attributes is not None:
            data["previous_attributes"] = copy.deepcopy(dict(previous_attributes))
        event.update(
            {
                "api_version": self.api_version,
                "created": created,
                "data": data,
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "type": event_type,
            }
        )
        self.events.append(event)
        # Stripe sends pretty-printed JSON; receivers must verify the bytes, not a re-serialisation.
        payload = json.dumps(event, indent=2).encode()
        return payload, self.sign(payload, timestamp=created)

    def sign(self, payload: bytes, *, timestamp: int | None = None) -> str:
        """The Stripe-Signature header for `payload`: t=<unix time>,v1=<hex HMAC-SHA256 of "t.payload">
        keyed with the whole webhook secret (whsec_ prefix included)."""
        signed_at = _now() if timestamp is None else timestamp
        signature = hmac.new(
            self.webhook_secret.encode(),
            f"{signed_at}.".encode() + payload,
            hashlib.sha256,
        ).hexdigest()
        return f"t={signed_at},v1={signature}"

    async def deliver(self, url: str, payload: bytes, signature_header: str) -> httpx.Response:
        """POST a signed event to `url` as Stripe's webhook sender does."""
        if self._webhook_client is None:
            raise RuntimeError("FakeStripe is not running; use it as `async with`")
        return await self._webhook_client.post(
            url,
            content=payload,
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": signature_header,
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                "Cache-Control": "no-cache",
            },
        )

    async def send_event(
        self,
        url: str,
        event_type: str,
        data_object: Mapping[str, Any],
        *,
        account: str | None = None,
        previous_attributes: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """`signed_event` then `deliver`."""
        payload, header = self.signed_event(
            event_type, data_object, account=account, previous_attributes=previous_attributes
        )
        return await self.deliver(url, payload, header)

    # -- HTTP --------------------------------------------------------------------------------

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            # Keep-alive: the library's httpx client reuses connections across requests.
            while True:
                try:
                    request = await read_request(reader, _MAX_BODY_BYTES)
                except MalformedRequest as exc:
                    writer.write(_encode(_error(400, "invalid_request_error", str(exc)), keep_alive=False))
                    await writer.drain()
                    return
                if request is None:
                    return
                keep_alive = request.version == "HTTP/1.1" and request.headers.get("connection", "").lower() != "close"
                response = await self._respond(request)
                if response is None:
                    # The lost answer: the work is done and the client never hears about it.
                    return
                writer.write(_encode(response, keep_alive=keep_alive))
                await writer.drain()
                if not keep_alive:
                    return
        except ConnectionError:
            # The client gave up, typically a timeout while a delayed answer was pending.
            return
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()

    async def _respond(self, request: Request) -> _Response | None:
        request_id = _new_id("req_", 14)
        common = [
            ("Request-Id", request_id),
            ("Stripe-Version", request.headers.get("stripe-version", self.api_version)),
        ]
        response = await self._handle(request, request_id, common)
        if response is None:
            return None
        return _Response(response.status, response.body, (*common, *response.headers))

    async def _handle(self, request: Request, request_id: str, common: list[tuple[str, str]]) -> _Response | None:
        try:
            pairs = _form_pairs(request)
            params = _parse_params(pairs)
        except _InvalidParams as exc:
            self.requests.append(ReceivedRequest(request.method, request.path, request.headers, (), {}))
            return _error(400, "invalid_request_error", str(exc), code="parameter_unknown")
        self.requests.append(ReceivedRequest(request.method, request.path, request.headers, tuple(pairs), params))
        if self.response_delay > 0:
            await asyncio.sleep(self.response_delay)

        if request.method == "GET" and request.path.startswith(_HOSTED_CHECKOUT_PREFIX):
            # The hosted Checkout page is the payer's browser, not an API call: no key.
            return self._pay_hosted_checkout(request.path.removeprefix(_HOSTED_CHECKOUT_PREFIX))

        refused = self._refused_before_routing(request)
        if refused is not None:
            return refused

        handler = self._route(request.method, request.path)
        if handler is None:
            return _error(
                404,
                "invalid_request_error",
                f"Unrecognized request URL ({request.method}: {request.path}). Please see https://stripe.com/docs "
                "or we can help at https://support.stripe.com/.",
            )
        if request.method != "POST":
            try:
                return handler(params)
            except _Rejected as rejected:
                return rejected.response

        key = request.headers.get("idempotency-key")
        scope = (request.headers.get("stripe-account", ""), key or "")
        if key is not None:
            common.append(("Idempotency-Key", key))
            earlier = self._idempotent_answer(request, params, key, scope)
            if earlier is not None:
                return earlier

        try:
            response = handler(params)
            executed = True
        except _Rejected as rejected:
            response, executed = rejected.response, rejected.executed
        if key is not None and executed:
            # A snapshot: a replay returns the object as it was then, not as later knobs changed it.
            snapshot = _Response(response.status, copy.deepcopy(dict(response.body)), response.headers)
            self._idempotency[scope] = _Saved(request.method, request.path, params, snapshot, request_id)

        if request.path == "/v1/transfers":
            return await self._transfer_answer_fate(response)
        return await self._checkout_answer_fate(request.path, response)

    def _idempotent_answer(
        self, request: Request, params: Mapping[str, Any], key: str, scope: tuple[str, str]
    ) -> _Response | None:
        """The answer Stripe gives without executing: a replay, a key conflict, or a bad key."""
        if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
            return _error(
                400,
                "invalid_request_error",
                f"Idempotency keys can be at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters long.",
            )
        saved = self._idempotency.get(scope)
        if saved is None:
            return None
        if (saved.method, saved.path, saved.params) != (request.method, request.path, params):
            return _error(
                400,
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they were first "
                f"used with. Try using a key other than '{key}' if you meant to execute a different request.",
            )
        replay = saved.response
        return _Response(
            replay.status,
            replay.body,
            (*replay.headers, ("Idempotent-Replayed", "true"), ("Original-Request", saved.request_id)),
        )

    async def _checkout_answer_fate(self, path: str, response: _Response) -> _Response:
        """Apply delay_next_checkout to an executed Checkout session request's answer."""
        if path == "/v1/checkout/sessions" and self._next_checkout_delay is not None:
            delay, self._next_checkout_delay = self._next_checkout_delay, None
            await asyncio.sleep(delay)
        return response

    async def _transfer_answer_fate(self, response: _Response) -> _Response | None:
        """Apply delay_next_transfer / lose_next_transfer to an executed transfer request's answer."""
        delay, self._next_transfer_delay = self._next_transfer_delay, None
        if delay is not None:
            await asyncio.sleep(delay)
        if self._lose_next_transfer:
            self._lose_next_transfer = False
            return None
        return response

    def _refused_before_routing(self, request: Request) -> _Response | None:
        """An outage (outage()) or a missing or wrong API key answers before any endpoint runs."""
        if self._outage:
            return _error(503, "api_error", "Stripe is temporarily unavailable; try again")
        return self._check_auth(request.headers.get("authorization"))

    def _check_auth(self, header: str | None) -> _Response | None:
        www_authenticate = (("WWW-Authenticate", 'Basic realm="Stripe"'),)
        key = _secret_key_from(header)
        if key is None:
            return _error(
                401,
                "invalid_request_error",
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
                headers=www_authenticate,
            )
        # Compare bytes: compare_digest rejects non-ASCII str, and the key comes from the client.
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            shown = f"{key[:8]}{'*' * max(len(key) - 12, 0)}{key[-4:]}" if len(key) > 12 else "****"
            return _error(401, "invalid_request_error", f"Invalid API Key provided: {shown}", headers=www_authenticate)
        return None

    def _route(self, method: str, path: str) -> Callable[[Mapping[str, Any]], _Response] | None:
        routes: dict[tuple[str, str], Callable[[Mapping[str, Any]], _Response]] = {
            ("POST", "/v1/accounts"): self._create_account,
            ("POST", "/v1/account_links"): self._create_account_link,
            ("POST", "/v1/transfers"): self._create_transfer,
            ("GET", "/v1/transfers"): self._list_transfers,
            ("POST", "/v1/checkout/sessions"): self._create_checkout_session,
            ("POST", "/v1/refunds"): self._create_refund,
            ("GET", "/v1/refunds"): self._list_refunds,
        }
        handler = routes.get((method, path))
        if handler is not None:
            return handler
        collection, _, object_id = path.rpartition("/")
        if method != "GET" or not object_id:
            return None
        if collection == "/v1/accounts":
            return lambda _params: self._retrieve(self._accounts, object_id, "account")
        if collection == "/v1/transfers":
            return lambda _params: self._retrieve(self._transfers, object_id, "transfer")
        if collection == "/v1/checkout/sessions":
            return lambda _params: self._retrieve(self._sessions, object_id, "checkout.session")
        if collection == "/v1/refunds":
            return lambda _params: self._retrieve(self._refunds, object_id, "refund")
        return None

    # -- endpoints ---------------------------------------------------------------------------

    def _pay_hosted_checkout(self, session_id: str) -> _Response:
        """A visit to a session's `url` pays it, as a payer at Stripe's hosted page would: the session
        completes, checkout.session.completed goes to the webhook URL (when one is configured), and the
        browser is sent on to the session's success_url."""
        session = self._sessions.get(session_id)
        if session is None or session["status"] != "open":
            return _error(404, "invalid_request_error", f"No open checkout session: '{session_id}'")
        completed = self.complete_checkout_session(session_id)
        if self._webhook_url is not None:
            task = asyncio.get_running_loop().create_task(self._announce("checkout.session.completed", completed))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return _Response(303, {}, (("Location", str(completed["success_url"])),))

    def _retrieve(self, store: Mapping[str, JsonObject], object_id: str, name: str) -> _Response:
        found = store.get(object_id)
        if found is not None:
            return _Response(200, found)
        if name == "account":
            # Stripe does not tell "no such account" from "not one of yours".
            return _error(
                403,
                "invalid_request_error",
                f"The provided key '{self.api_key[:8]}****' does not have access to account '{object_id}' "
                "(or that account does not exist). Application access may have been revoked.",
                code="account_invalid",
            )
        raise _Rejected(
            _error(404, "invalid_request_error", f"No such {name}: '{object_id}'", code="resource_missing", param="id"),
            executed=False,
        )

    def _create_account(self, params: Mapping[str, Any]) -> _Response:
        account_type = params.get("type")
        if account_type is None:
            raise _missing("type")
        if account_type not in ("express", "standard", "custom"):
            raise _invalid("Invalid type: must be one of custom, express, or standard", param="type")
        metadata = _metadata(params)
        capabilities = _mapping(params.get("capabilities", {}), "capabilities")
        requested = {
            name: "inactive"
            for name, options in capabilities.items()
            if _mapping(options, f"capabilities[{name}]").get("requested") == "true"
        }
        business_profile = _mapping(params.get("business_profile", {}), "business_profile")
        account_id = _new_id("acct_", 16)
        account: JsonObject = {
            "id": account_id,
            "object": "account",
            "business_profile": {
                "mcc": business_profile.get("mcc"),
                "name": business_profile.get("name"),
                "product_description": None,
                "support_email": None,
                "url": business_profile.get("url"),
            },
            "business_type": params.get("business_type"),
            "capabilities": requested,
            "charges_enabled": False,
            "country": params.get("country", "US"),
            "created": _now(),
            "default_currency": "usd",
            "details_submitted": False,
            "email": params.get("email"),
            "external_accounts": _empty_list(f"/v1/accounts/{account_id}/external_accounts"),
            "metadata": metadata,
            "payouts_enabled": False,
            "requirements": _requirements(
                due=[
                    "business_profile.url",
                    "external_account",
                    "individual.dob.day",
                    "individual.first_name",
                    "individual.last_name",
                    "individual.ssn_last_4",
                    "tos_acceptance.date",
                ]
            ),
            "settings": {"payouts": {"schedule": {"delay_days": 2, "interval": "daily"}}},
            "tos_acceptance": {"date": None},
            "type": account_type,
        }
        self._accounts[account_id] = account
        if self._auto_onboard:
            return _Response(200, self.complete_onboarding(account_id))
        return _Response(200, account)

    def _create_account_link(self, params: Mapping[str, Any]) -> _Response:
        account_id = _required_str(params, "account")
        link_type = _required_str(params, "type")
        if link_type not in ("account_onboarding", "account_update"):
            raise _invalid("Invalid type: must be one of account_onboarding or account_update", param="type")
        refresh_url = _required_str(params, "refresh_url")
        return_url = _required_str(params, "return_url")
        if account_id not in self._accounts:
            raise _invalid(f"No such account: '{account_id}'", param="account", code="resource_missing")
        del refresh_url, return_url  # required by Stripe; the fake has no onboarding pages to send them to
        now = _now()
        return _Response(
            200,
            {
                "object": "account_link",
                "created": now,
                "expires_at": now + _ACCOUNT_LINK_TTL_S,
                "url": f"{self.base_url}/setup/e/{account_id}/{_new_id('', 12)}",
            },
        )

    def _create_transfer(self, params: Mapping[str, Any]) -> _Response:
        amount = _positive_int(params, "amount")
        currency = _required_str(params, "currency")
        destination = _required_str(params, "destination")
        metadata = _metadata(params)
        failure, self._next_transfer_failure = self._next_transfer_failure, None
        if failure is not None:
            # The rate limiter answers before the endpoint runs, so a 429 is not saved under the key.
            raise _Rejected(
                _error(failure.status, failure.error_type, failure.message, code=failure.code),
                executed=failure.status != 429,
            )
        account = self._accounts.get(destination)
        if account is None:
            raise _invalid(
                f"No such destination: '{destination}'", param="destination", code="resource_missing", executed=True
            )
        if account["capabilities"].get("transfers") != "active":
            raise _invalid(
                "Your destination account needs to have at least one of the following capabilities enabled: "
                "transfers, crypto_transfers, legacy_payments",
                param="destination",
                code="insufficient_capabilities_for_transfer",
                executed=True,
            )
        if amount > self.balance_available_cents:
            raise _invalid(
                "You have insufficient available funds in your Stripe account. Try adding funds directly to "
                "your available balance by creating Charges using the 4000000000000077 test card.",
                code="balance_insufficient",
                executed=True,
            )
        self.balance_available_cents -= amount
        transfer_id = _new_id("tr_")
        transfer: JsonObject = {
            "id": transfer_id,
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "balance_transaction": _new_id("txn_"),
            "created": _now(),
            "currency": currency,
            "description": params.get("description"),
            "destination": destination,
            "destination_payment": _new_id("py_"),
            "livemode": False,
            "metadata": metadata,
            "reversals": _empty_list(f"/v1/transfers/{transfer_id}/reversals"),
            "reversed": False,
            "source_transaction": None,
            "source_type": "card",
            "transfer_group": params.get("transfer_group"),
        }
        self._transfers[transfer_id] = transfer
        if self._webhook_url is not None:
            task = asyncio.get_running_loop().create_task(self._announce("transfer.created", transfer))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return _Response(200, transfer)

    def _create_refund(self, params: Mapping[str, Any]) -> _Response:
        """A refund of a succeeded PaymentIntent: the whole unrefunded amount, or `amount` of it. More than is left
        is refused as Stripe refuses it (a fully refunded payment: code charge_already_refunded)."""
        intent_id = _required_str(params, "payment_intent")
        intent = self._payment_intents.get(intent_id)
        if intent is None:
            raise _invalid(
                f"No such payment_intent: '{intent_id}'", param="payment_intent", code="resource_missing", executed=True
            )
        left = intent["amount_received"] - self.refunded_cents(intent_id)
        if left <= 0:
            raise _invalid(
                f"Charge for PaymentIntent {intent_id} has already been refunded.",
                code="charge_already_refunded",
                executed=True,
            )
        amount = _positive_int(params, "amount") if "amount" in params else left
        if amount > left:
            raise _invalid(
                f"Refund amount (${amount / 100:.2f}) is greater than unrefunded amount on charge (${left / 100:.2f})",
                param="amount",
                code="amount_too_large",
                executed=True,
            )
        reason = params.get("reason")
        if reason is not None and reason not in ("duplicate", "fraudulent", "requested_by_customer"):
            raise _invalid(f"Invalid reason: {reason!r}", param="reason")
        refund_id = _new_id("re_")
        refund: JsonObject = {
            "id": refund_id,
            "object": "refund",
            "amount": amount,
            "balance_transaction": _new_id("txn_"),
            "charge": _new_id("ch_"),
            "created": _now(),
            "currency": intent["currency"],
            "metadata": _metadata(params),
            "payment_intent": intent_id,
            "reason": reason,
            "status": "succeeded",
        }
        self._refunds[refund_id] = refund
        return _Response(200, refund)

    def _list_refunds(self, params: Mapping[str, Any]) -> _Response:
        limit = _int(params, "limit", default=10)
        if not 1 <= limit <= 100:
            raise _invalid("Invalid limit: must be between 1 and 100", param="limit", code="parameter_invalid_integer")
        intent = params.get("payment_intent")
        newest_first = [r for r in reversed(self._refunds.values()) if intent is None or r["payment_intent"] == intent]
        return _Response(200, _page(newest_first, params, limit, "/v1/refunds"))

    def _list_transfers(self, params: Mapping[str, Any]) -> _Response:
        limit = _int(params, "limit", default=10)
        if not 1 <= limit <= 100:
            raise _invalid("Invalid limit: must be between 1 and 100", param="limit", code="parameter_invalid_integer")
        destination = params.get("destination")
        group = params.get("transfer_group")
        created = params.get("created")
        newest_first = [
            transfer
            for transfer in reversed(self._transfers.values())
            if (destination is None or transfer["destination"] == destination)
            and (group is None or transfer["transfer_group"] == group)
            and _created_matches(transfer["created"], created)
        ]
        return _Response(200, _page(newest_first, params, limit, "/v1/transfers"))

    def _create_checkout_session(self, params: Mapping[str, Any]) -> _Response:
        mode = _required_str(params, "mode")
        if mode != "payment":
            raise _invalid(f"This fake only supports mode=payment, not {mode!r}", param="mode")
        success_url = _required_str(params, "success_url")
        raw_items = params.get("line_items")
        if not isinstance(raw_items, list) or not raw_items:
            raise _invalid("You must provide at least one line item.", param="line_items", code="parameter_missing")
        total = 0
        currency: str | None = None
        for index, raw_item in enumerate(raw_items):
            where = f"line_items[{index}]"
            item = _mapping(raw_item, where)
            quantity = _positive_int(item, "quantity", where=where)
            price_data = _mapping(item.get("price_data"), f"{where}[price_data]")
            unit_amount = _int(price_data, "unit_amount", where=f"{where}[price_data]")
            item_currency = _required_str(price_data, "currency", where=f"{where}[price_data]")
            product = _mapping(price_data.get("product_data"), f"{where}[price_data][product_data]")
            _required_str(product, "name", where=f"{where}[price_data][product_data]")
            if currency is not None and item_currency != currency:
                raise _invalid("All line items must use the same currency.", param=f"{where}[price_data][currency]")
            currency = item_currency
            total += unit_amount * quantity
        metadata = _metadata(params)
        intent_data = _mapping(params.get("payment_intent_data", {}), "payment_intent_data")
        intent_metadata = _metadata(intent_data)
        session_id = _new_id("cs_test_", 58)
        self._session_intent_data[session_id] = {"metadata": intent_metadata}
        now = _now()
        session: JsonObject = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": total,
            "amount_total": total,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "created": now,
            "currency": currency,
            "customer": None,
            "expires_at": now + _CHECKOUT_SESSION_TTL_S,
            "livemode": False,
            "metadata": metadata,
            "mode": mode,
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "success_url": success_url,
            "url": f"{self.base_url}/c/pay/{session_id}",
        }
        self._sessions[session_id] = session
        return _Response(200, session)


# -- parameter decoding and checks -----------------------------------------------------------


def _form_pairs(request: Request) -> list[tuple[str, str]]:
    """Stripe reads GET parameters from the query string and POST parameters from a form body."""
    if request.method == "GET":
        text = request.query
    else:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.body and content_type != "application/x-www-form-urlencoded":
            raise _InvalidParams(f"Invalid request: unsupported Content-Type {content_type or 'none'}.")
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _InvalidParams("Invalid request: the body is not UTF-8.") from exc
    return parse_qsl(text, keep_blank_values=True)


def _parse_params(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Decode Stripe's bracketed form keys (`a[b][0][c]=v`) into nested dicts and lists.

    Numeric segments make arrays, which must be indexed from 0 without gaps; `a[]` appends.
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.fullmatch(key)
        if match is None:
            raise _InvalidParams(f"Invalid parameter name: {key!r}.")
        path = [match.group(1), *_SEGMENT.findall(match.group(2))]
        node = root
        for segment in path[:-1]:
            child = node.setdefault(segment or str(len(node)), {})
            if not isinstance(child, dict):
                raise _InvalidParams(f"Invalid parameter {key!r}: {segment!r} is both a value and an object.")
            node = child
        last = path[-1] or str(len(node))
        if last in node:
            raise _InvalidParams(f"Received the parameter {key!r} more than once.")
        node[last] = value
    listed = _listify(root)
    assert isinstance(listed, dict)
    return listed


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    children = {name: _listify(child) for name, child in node.items()}
    if children and all(name.isdigit() for name in children):
        indices = sorted(int(name) for name in children)
        if indices != list(range(len(indices))):
            raise _InvalidParams("Invalid array: indices must start at 0 and have no gaps.")
        return [children[str(index)] for index in indices]
    return children


def _qualified(where: str | None, name: str) -> str:
    return f"{where}[{name}]" if where else name


def _required_str(params: Mapping[str, Any], name: str, *, where: str | None = None) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise _missing(_qualified(where, name))
    if not isinstance(value, str):
        raise _invalid(f"Invalid string: {_qualified(where, name)}", param=_qualified(where, name))
    return value


def _int(params: Mapping[str, Any], name: str, *, default: int | None = None, where: str | None = None) -> int:
    value = params.get(name)
    if value is None:
        if default is None:
            raise _missing(_qualified(where, name))
        return default
    if not isinstance(value, str) or re.fullmatch(r"-?[0-9]+", value) is None:
        raise _invalid(f"Invalid integer: {value}", param=_qualified(where, name), code="parameter_invalid_integer")
    return int(value)


def _positive_int(params: Mapping[str, Any], name: str, *, where: str | None = None) -> int:
    value = _int(params, name, where=where)
    if value <= 0:
        raise _invalid(
            f"This value must be greater than or equal to 1. {_qualified(where, name)}",
            param=_qualified(where, name),
            code="parameter_invalid_integer",
        )
    return value


def _mapping(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"Invalid object: {name}", param=name)
    return value


def _metadata(params: Mapping[str, Any]) -> dict[str, str]:
    raw = _mapping(params.get("metadata", {}), "metadata")
    metadata: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(value, str):
            raise _invalid(f"Invalid metadata[{name}]: values must be strings", param=f"metadata[{name}]")
        if len(name) > 40 or len(value) > 500:
            raise _invalid("Metadata keys are limited to 40 characters and values to 500.", param=f"metadata[{name}]")
        # Posting an empty value unsets a key.
        if value:
            metadata[name] = value
    return metadata


def _requirements(*, due: list[str]) -> JsonObject:
    return {
        "currently_due": list(due),
        "eventually_due": list(due),
        "past_due": list(due),
        "pending_verification": [],
        "disabled_reason": "requirements.past_due" if due else None,
        "errors": [],
    }


def _created_matches(created: int, condition: Any) -> bool:
    if condition is None:
        return True
    if isinstance(condition, str):
        return condition.isdigit() and created == int(condition)
    if not isinstance(condition, dict):
        return False
    checks: dict[str, Callable[[int, int], bool]] = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    return all(
        name in checks and isinstance(bound, str) and bound.isdigit() and checks[name](created, int(bound))
        for name, bound in condition.items()
    )


def _page(newest_first: list[JsonObject], params: Mapping[str, Any], limit: int, url: str) -> JsonObject:
    ids = [item["id"] for item in newest_first]
    starting_after = params.get("starting_after")
    ending_before = params.get("ending_before")
    if starting_after is not None:
        if starting_after not in ids:
            raise _invalid(f"No such object: '{starting_after}'", param="starting_after", code="resource_missing")
        window = newest_first[ids.index(starting_after) + 1 :]
        data, has_more = window[:limit], len(window) > limit
    elif ending_before is not None:
        if ending_before not in ids:
            raise _invalid(f"No such object: '{ending_before}'", param="ending_before", code="resource_missing")
        window = newest_first[: ids.index(ending_before)]
        data, has_more = window[-limit:], len(window) > limit
    else:
        data, has_more = newest_first[:limit], len(newest_first) > limit
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def _secret_key_from(header: str | None) -> str | None:
    """The secret key from `Bearer sk_…` or `Basic base64(sk_…:)`, as Stripe accepts both."""
    if header is None:
        return None
    scheme, _, credential = header.strip().partition(" ")
    if scheme.lower() == "bearer":
        return credential.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credential.strip(), validate=True).decode("utf-8")
        except ValueError:  # binascii.Error and UnicodeDecodeError are both ValueErrors
            return None
        return decoded.partition(":")[0] or None
    return None


# -- HTTP/1.1 framing --------------------------------------------------------------------------


def _encode(response: _Response, *, keep_alive: bool) -> bytes:
    body = json.dumps(response.body, indent=2).encode()
    lines = [
        f"HTTP/1.1 {response.status} {reason_phrase(response.status)}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
        *(f"{name}: {value}" for name, value in response.headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def main() -> None:
    """`python -m fakes.stripe`: the fake as a process, for `make run`."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--webhook-secret", required=True)
    parser.add_argument("--webhook-url")
    parser.add_argument("--auto-onboard", action="store_true")
    args = parser.parse_args()

    async def serve() -> None:
        fake = FakeStripe(
            api_key=args.api_key,
            webhook_secret=args.webhook_secret,
            port=args.port,
            auto_onboard=args.auto_onboard,
            webhook_url=args.webhook_url,
        )
        async with fake:
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
