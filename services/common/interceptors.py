"""Server interceptors, outermost first: request context + tracing + metrics + error mapping, authentication and
authorization, request validation — registered with gRPC as one InterceptorChain.

Tracing is done here rather than by OpenTelemetry's gRPC server interceptor, which rebuilds the method handler,
wraps the servicer context and computes the span's attributes on every call, sampled or not (measured by
`make bench-runtime`): here a sampled-out request costs the sampler's decision and a non-recording span that only
carries the trace id (for the log lines and the outbound calls' traceparent); attributes are set on recorded spans.

Only unary-unary methods of this service's own gRPC services are wrapped; health and reflection pass
through untouched.
"""

from __future__ import annotations

import abc
import contextvars
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NoReturn, cast

import asyncpg
import grpc
import protovalidate
from google.protobuf.message import Message
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from services.common.auth import SERVICE_ROLE, AccessTokenVerifier, ServiceTokens
from services.common.config import CLIENT_ADDRESS_HEADER, GRPC_STATUS_HEADER, SERVICE_TOKEN_HEADER
from services.common.context import ANONYMOUS, Caller, caller_var, client_ip_var, request_id_var
from services.common.edge_input import PathBindings, UnreadableRequest, query_overriding_path, tolerant_deserializer
from services.common.errors import (
    DomainError,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    to_status,
)
from services.common.reasons import CommonReason
from services.common.revocation import TokenRevocations
from services.common.telemetry import RPC_LATENCY, RPC_REQUESTS

log = logging.getLogger(__name__)

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


@dataclasses.dataclass(frozen=True)
class Owned:
    """The request names a resource that belongs to someone: only its owner (or an admin, where the role rule
    admits one) gets past the servicer's ownership check; anyone else gets ``refusal`` with ``reason``, the answer
    the contract documents. NOT_FOUND is the usual one: it does not confirm that another's resource exists.

    The check itself is the servicer's (it loads the resource anyway); tests/fuzz/test_access_matrix.py calls
    every RPC declared this way as a stranger of each owner role and as the owner, so a declaration and its
    check cannot drift apart.
    """

    resource: str  # what is owned, in the product's words: "campaign", "store", "charging session"…
    field: str  # the request field that names it
    owners: frozenset[str]  # the roles whose members own one (a sponsor owns campaigns, a merchant stores)
    reason: str  # the ErrorInfo reason of the refusal
    refusal: grpc.StatusCode = grpc.StatusCode.NOT_FOUND


@dataclasses.dataclass(frozen=True)
class NotOwned:
    """The request names nobody else's resource; ``why`` says so for the reader (the caller's own data taken from
    the token, a public catalog, a capability carried in the request, an administrator's or a service's RPC)."""

    why: str


# The reasons most RPCs reach nobody else's resource, named once.
OWN_DATA = NotOwned("the caller's own data: the user comes from the access token, no request field names another's")
BY_AN_ADMIN = NotOwned("an administrator's RPC: it acts on any user's or store's resource")
PUBLIC_DATA = NotOwned("public data that belongs to nobody (the charger and merchant catalogs, the signing keys)")
SIGNING_IN = NotOwned("signing in: the caller proves who they are with a code or a refresh token they hold")
SIGNED_BY_A_PROVIDER = NotOwned("a provider's callback or webhook, authenticated by its signature or single-use state")
# Other services act for callers they have already authorized, on any resource: nothing for them to own.
_SERVICES_ACT_FOR_THEIR_CALLERS = NotOwned("other services act for callers they authorized, on any resource")


@dataclasses.dataclass(frozen=True)
class Access:
    """Who may call one RPC (checked before the servicer runs) and whose resource it reaches (``ownership``,
    declared for every RPC: tests/test_contracts.py requires it; the servicer enforces it, see :class:`Owned`)."""

    public: bool = False  # no token needed; an invalid token is ignored (the caller is anonymous)
    roles: frozenset[str] | None = None  # None: any signed-in user; otherwise one of these roles
    internal: bool = False  # only other services (service token)
    ownership: Owned | NotOwned | None = None

    @staticmethod
    def anyone() -> Access:
        return Access(public=True)

    @staticmethod
    def signed_in() -> Access:
        return Access()

    @staticmethod
    def role(*roles: str) -> Access:
        return Access(roles=frozenset(roles))

    @staticmethod
    def service_only() -> Access:
        return Access(internal=True, ownership=_SERVICES_ACT_FOR_THEIR_CALLERS)

    def owned(self, ownership: Owned) -> Access:
        """This rule, for an RPC whose request names a resource of ``ownership``'s kind."""
        return dataclasses.replace(self, ownership=ownership)

    def not_owned(self, why: str | NotOwned) -> Access:
        """This rule, for an RPC that reaches nobody else's resource, and why."""
        return dataclasses.replace(self, ownership=why if isinstance(why, NotOwned) else NotOwned(why))

    def allows(self, caller: Caller) -> bool:
        if self.public:
            return True
        if self.internal:
            return caller.is_service
        if caller.user_id is None:
            return False
        return self.roles is None or caller.has_any(self.roles)


def _split(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").rpartition("/")
    return service, name


# Generic only in grpc-stubs: the runtime class cannot be subscripted.
class _UnaryInterceptor(grpc.aio.ServerInterceptor, abc.ABC):  # type: ignore[type-arg]
    """Wraps the unary-unary handlers of the given services with :meth:`wrap`."""

    def __init__(self, services: frozenset[str]) -> None:
        self._services = services
        # The handler of a method never changes once the server runs, so each is wrapped once, on its first
        # call, instead of building the chain of wrappers again for every RPC.
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any] | None] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        if details.method in self._handlers:
            return self._handlers[details.method]  # type: ignore[return-value]
        handler = await continuation(details)
        service, name = _split(details.method)
        if handler is not None and handler.unary_unary is not None and service in self._services:
            handler = grpc.unary_unary_rpc_method_handler(
                # grpc-stubs types handlers as sync functions; under grpc.aio they are coroutine functions.
                self.wrap(service, name, cast(Behavior, handler.unary_unary)),
                request_deserializer=self.deserializer(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler is not None:
            self._handlers[details.method] = handler
        return handler

    def deserializer(self, deserialize: Any) -> Any:
        """The request deserializer of a wrapped method (unchanged unless an interceptor says otherwise)."""
        return deserialize

    @abc.abstractmethod
    def wrap(self, service: str, method: str, behavior: Behavior) -> Behavior:
        """The behavior that runs in place of ``behavior`` for ``service``/``method``."""


class InterceptorChain(_UnaryInterceptor):
    """The layers (outermost first) registered as one gRPC interceptor: grpc.aio awaits every registered
    interceptor's intercept_service on every call, health checks included, so the layers' wrappers are composed
    once per method here instead (`make bench-runtime`: about 10 µs of CPU per call for each layer registered)."""

    def __init__(self, services: frozenset[str], layers: Sequence[_UnaryInterceptor]) -> None:
        super().__init__(services)
        self._layers = tuple(layers)

    def wrap(self, service: str, method: str, behavior: Behavior) -> Behavior:
        for layer in reversed(self._layers):
            behavior = layer.wrap(service, method, behavior)
        return behavior

    def deserializer(self, deserialize: Any) -> Any:
        for layer in reversed(self._layers):
            deserialize = layer.deserializer(deserialize)
        return deserialize


def _metadata(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    return {key: value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)}


# The request's metadata, parsed once by the outermost interceptor for the inner ones.
_metadata_var: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("metadata", default=None)


# The client comes from CLIENT_ADDRESS_HEADER; x-forwarded-for is never read: its first entries are whatever the
# client wrote.
_OK_METADATA = ((GRPC_STATUS_HEADER, "0"),)
# Where an RPC that ends a browser round trip (an OAuth callback) sends the browser: sent with the answer's
# headers, and the gateway turns that answer into an HTTP 302 with this Location (gateway/render.py), which
# transcoding alone cannot answer. Set with redirect_browser().
REDIRECT_HEADER = "x-nerava-redirect"
_redirect_var: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("redirect", default=None)


def redirect_browser(url: str) -> None:
    """Answer this RPC's REST call with a 302 to `url` (the response body stays for gRPC callers)."""
    holder = _redirect_var.get()
    if holder is not None:
        holder.append(url)


_TRACEPARENT = "traceparent"


def _peer_address(peer: str) -> str:
    """The address part of a gRPC peer string: 'ipv4:10.0.0.7:53412' → '10.0.0.7', 'ipv6:[::1]:5' → '::1'."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]") or rest
    return peer


# Failures to open a connection only: a connection lost mid-statement may have committed, and UNAVAILABLE is what
# peers retry.
_UNAVAILABLE_DATABASE_ERRORS = (asyncpg.TooManyConnectionsError, asyncpg.CannotConnectNowError, ConnectionRefusedError)
DATABASE_UNAVAILABLE = Unavailable(CommonReason.DATABASE_UNAVAILABLE, "the database is unavailable; retry shortly")


def _database_unavailable(error: BaseException) -> bool:
    """The database refused a new connection (SQLAlchemy wraps asyncpg's errors)."""
    seen: BaseException | None = error
    for _ in range(4):
        if seen is None:
            return False
        if isinstance(seen, _UNAVAILABLE_DATABASE_ERRORS):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: DomainError, domain: str) -> NoReturn:
    """Ends the call with the error's status, its ErrorInfo (and BadRequest) details and the status header."""
    await context.abort(
        error.code,
        error.message,
        trailing_metadata=(
            ("grpc-status-details-bin", to_status(error, domain).SerializeToString()),
            (GRPC_STATUS_HEADER, str(error.code.value[0])),
        ),
    )


def _start_span(
    tracer: trace.Tracer, name: str, metadata: Mapping[str, str], *, service: str, method: str, client: str
) -> tuple[trace.Span, object]:
    """The RPC's server span, made current. The caller's trace (Envoy's or a peer service's traceparent, W3C trace
    context) continues here; attributes only on a span that is recorded (sampled in)."""
    parent = propagate.extract(metadata) if _TRACEPARENT in metadata else None
    span = tracer.start_span(name, context=parent, kind=trace.SpanKind.SERVER)
    if span.is_recording():
        span.set_attributes(
            {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method, "client.address": client}
        )
    return span, otel_context.attach(trace.set_span_in_context(span, parent))


def _end_span(span: trace.Span, token: object, code: grpc.StatusCode) -> None:
    if span.is_recording():
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code is not grpc.StatusCode.OK:
            span.set_status(trace.Status(trace.StatusCode.ERROR, code.name))
    span.end()
    otel_context.detach(token)  # type: ignore[arg-type]


class RequestContextInterceptor(_UnaryInterceptor):
    """Request id, client address, metrics and the one place where errors become gRPC statuses.

    It also reads every request tolerantly (see services/common/edge_input.py): a request whose text is not
    UTF-8 or holds a NUL character reaches the inner interceptors as an UnreadableRequest, never as an error
    raised inside gRPC's own parsing.
    """

    def __init__(self, services: frozenset[str], service_name: str) -> None:
        super().__init__(services)
        self._service_name = service_name
        self._error_domain = f"{service_name}.nerava"

    def wrap(self, service: str, method: str, behavior: Behavior) -> Behavior:
        latency = RPC_LATENCY.labels(self._service_name, method)
        service_name = self._service_name
        domain = self._error_domain
        tracer = trace.get_tracer(__name__)
        span_name = f"/{service}/{method}"

        async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            metadata = _metadata(context)
            metadata_token = _metadata_var.set(metadata)
            request_id = metadata.get("x-request-id") or uuid.uuid4().hex
            request_id_token = request_id_var.set(request_id)
            forwarded_for = metadata.get(CLIENT_ADDRESS_HEADER)
            via_gateway = forwarded_for is not None
            client = forwarded_for or _peer_address(context.peer() or "")
            ip_token = client_ip_var.set(client)
            span, trace_token = _start_span(tracer, span_name, metadata, service=service, method=method, client=client)
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            redirect: list[str] = []
            redirect_token = _redirect_var.set(redirect)
            try:
                response = await behavior(request, context)
                if via_gateway:
                    # Sent with the answer's headers: the gateway logs it (see GRPC_STATUS_HEADER), and turns a
                    # redirect into a 302. grpc.aio can only send headers as an operation of their own (about 80 µs
                    # of CPU, `make bench-runtime`), so only the requests the gateway forwarded (it sets the client
                    # address) get them, not peers' calls.
                    await context.send_initial_metadata(
                        _OK_METADATA + tuple((REDIRECT_HEADER, url) for url in redirect[-1:])
                    )
                return response
            except DomainError as error:
                code = error.code
                if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED):
                    log.warning("rpc refused", extra={"rpc": method, "reason": error.reason, "detail": error.message})
                await _abort(context, error, domain)
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except Exception as error:
                if _database_unavailable(error):
                    # Not this request's fault, and safe to retry: no connection, so nothing was done.
                    code = grpc.StatusCode.UNAVAILABLE
                    log.warning("database unavailable", extra={"rpc": method, "detail": str(error)[:200]})
                    await _abort(context, DATABASE_UNAVAILABLE, domain)
                code = grpc.StatusCode.INTERNAL
                log.exception("rpc failed", extra={"rpc": method})
                await context.abort(code, "internal error", trailing_metadata=((GRPC_STATUS_HEADER, "13"),))
            finally:
                latency.observe(time.perf_counter() - started)
                RPC_REQUESTS.labels(service_name, method, code.name).inc()
                _end_span(span, trace_token, code)
                request_id_var.reset(request_id_token)
                _redirect_var.reset(redirect_token)
                client_ip_var.reset(ip_token)
                _metadata_var.reset(metadata_token)

        return handle

    def deserializer(self, deserialize: Any) -> Any:
        return tolerant_deserializer(deserialize)


class AuthInterceptor(_UnaryInterceptor):
    """Establishes the caller (access token or service token) and enforces the method's Access rule.

    Fail closed: a method of this service without an Access rule is refused.
    """

    def __init__(
        self,
        services: frozenset[str],
        access: Mapping[str, Access],
        verifier: AccessTokenVerifier,
        service_tokens: ServiceTokens,
        revocations: TokenRevocations,
    ) -> None:
        super().__init__(services)
        self._access = access
        self._verifier = verifier
        self._service_tokens = service_tokens
        self._revocations = revocations

    async def _caller(self, metadata: Mapping[str, str]) -> Caller:
        service_token = metadata.get(SERVICE_TOKEN_HEADER)
        if service_token:
            return self._service_tokens.verify(service_token)
        authorization = metadata.get("authorization", "")
        if not authorization:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated(CommonReason.UNAUTHENTICATED, "authorization must be 'Bearer <token>'")
        caller = await self._verifier.verify(token.strip())
        # After the verdict cache: a token revoked since it was first verified is refused on its next call.
        if caller.user_id is not None and self._revocations.revoked(caller.user_id, caller.token_version):
            raise Unauthenticated(CommonReason.TOKEN_REVOKED, "this access token was revoked; sign in again or refresh")
        return caller

    def wrap(self, service: str, method: str, behavior: Behavior) -> Behavior:
        rule = self._access.get(method)

        async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if rule is None:
                raise PermissionDenied(CommonReason.PERMISSION_DENIED, f"{method} has no access rule")
            try:
                caller = await self._caller(_metadata_var.get() or _metadata(context))
            except Unauthenticated:
                if not rule.public:
                    raise
                # The apps send their stored token on every call, including the refresh they make because
                # it expired; a public method ignores a bad token instead of refusing the call.
                caller = ANONYMOUS
            if not rule.allows(caller):
                if caller is ANONYMOUS:
                    raise Unauthenticated(
                        CommonReason.UNAUTHENTICATED, "sign in first: this method needs a bearer token"
                    )
                needed = (
                    "a service identity" if rule.internal else "one of the roles " + ", ".join(sorted(rule.roles or ()))
                )
                raise PermissionDenied(CommonReason.PERMISSION_DENIED, f"{method} needs {needed}")
            token = caller_var.set(caller)
            try:
                return await behavior(request, context)
            finally:
                caller_var.reset(token)

        return handle


class ValidationInterceptor(_UnaryInterceptor):
    """protovalidate rules from the contract → INVALID_ARGUMENT with a BadRequest naming each field.

    Runs after authentication. Before the contract's rules it refuses what the edge never lets through: an
    unreadable request (not UTF-8, a NUL character) and a REST query parameter naming a field the path binds.
    """

    def __init__(self, services: frozenset[str]) -> None:
        super().__init__(services)
        self._validator = protovalidate.Validator()
        self._bindings = PathBindings()

    def wrap(self, service: str, method: str, behavior: Behavior) -> Behavior:
        validator = self._validator
        bound = self._bindings.fields(service, method)

        async def handle(request: Message, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if isinstance(request, UnreadableRequest):
                raise InvalidArgument([(request.field, request.why, request.rule)])
            if bound:
                metadata = _metadata_var.get() or _metadata(context)
                overriding = query_overriding_path(metadata.get("x-envoy-original-path"), bound)
                if overriding is not None:
                    raise InvalidArgument(
                        [(overriding, "is set by the path and cannot be given as a query parameter", "path.bound")]
                    )
            violations = validator.collect_violations(request)
            if violations:
                raise InvalidArgument(
                    [(_field_path(v.proto.field), v.proto.message, v.proto.rule_id) for v in violations]
                )
            return await behavior(request, context)

        return handle


def _field_path(path: Any) -> str:
    """Dotted path of the violating field; empty for a rule on the whole message (a cross-field rule)."""
    if path is None:
        return ""
    parts: list[str] = []
    for element in path.elements:
        name = element.field_name
        subscript = getattr(element, "subscript", None)
        index = getattr(subscript, "value", None) if subscript is not None else None
        parts.append(f"{name}[{index}]" if index is not None else name)
    return ".".join(parts)


__all__ = [
    "BY_AN_ADMIN",
    "CLIENT_ADDRESS_HEADER",
    "GRPC_STATUS_HEADER",
    "OWN_DATA",
    "PUBLIC_DATA",
    "REDIRECT_HEADER",
    "SERVICE_ROLE",
    "SIGNED_BY_A_PROVIDER",
    "SIGNING_IN",
    "Access",
    "AuthInterceptor",
    "InterceptorChain",
    "NotOwned",
    "Owned",
    "RequestContextInterceptor",
    "ValidationInterceptor",
    "redirect_browser",
]
