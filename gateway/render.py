"""Renders the Envoy bootstrap of the API gateway, for a local run or for Kubernetes, from one template.

The template is this module: `render()` builds the bootstrap as plain data from a `GatewaySettings`, and the
two targets differ only in the settings they start from (addresses, cluster discovery, descriptor path).
Envoy reads JSON bootstraps natively, so the output is JSON and no YAML library is needed.

What the gateway does, in request order (ARCHITECTURE.md §6):
  CORS → grpc_json_transcoder → jwt_authn → local_ratelimit → router
(with the request-body buffer before the transcoder, and a Lua response filter — see REDIRECT_HEADER — that turns
an OAuth callback's answer into the browser's 302).
The transcoder runs before jwt_authn on purpose: it rewrites :path to `/package.Service/Method`, so the JWT
rules, the rate-limit routes and the service routes all match gRPC method paths, and one list serves REST
callers and gRPC callers (grpcurl) alike. An unknown REST path is answered 404 by the transcoder before auth.

Usage:
  python -m gateway.render --target local --out build/envoy.json [--listen 127.0.0.1:8080 ...]
  python -m gateway.render --target kubernetes --out build/envoy-k8s.json [--namespace nerava ...]
Every option also reads an environment variable NERAVA_GATEWAY_<OPTION> (e.g. NERAVA_GATEWAY_LISTEN,
NERAVA_GATEWAY_CORS_ORIGINS as a comma-separated list); a command-line option wins over the variable.

Python API (tests render with ephemeral ports):
  settings = GatewaySettings.local(listen=Endpoint("127.0.0.1", 18080))
  config = render(settings)            # the bootstrap as a dict
  write(settings, Path("build/envoy.json"))
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import pathlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from gateway.redoc import BUNDLE as REDOC_BUNDLE
from services.common.config import (
    CLIENT_ADDRESS_HEADER,
    DEFAULT_PORTS,
    GRPC_SERVICES,
    GRPC_STATUS_HEADER,
    KUBERNETES_GRPC_PORT,
    SERVICE_TOKEN_HEADER,
)

JsonObject = dict[str, Any]
Target = Literal["local", "kubernetes"]

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Written by `make proto` (tools/genproto.py); the renderer reads it to learn which services exist.
DEFAULT_DESCRIPTOR = ROOT / "gen" / "nerava.binpb"
KUBERNETES_DESCRIPTOR_PATH = "/etc/envoy/descriptors/nerava.binpb"
# The API document and the Redoc bundle of /docs, as the gateway image carries them.
KUBERNETES_OPENAPI_PATH = "/etc/envoy/docs/openapi.json"
KUBERNETES_REDOC_PATH = "/etc/envoy/docs/redoc.standalone.js"

# Cluster name (= Kubernetes Service name) → the fully-qualified gRPC service it serves. One cluster per service.
SERVICES: Mapping[str, str] = GRPC_SERVICES
LOCAL_UPSTREAM_PORTS: Mapping[str, int] = DEFAULT_PORTS

# The methods callable without a valid access token, per service: the public rules of the services' access tables
# (Access.anyone() in services/<name>/api.py), written to this file by `python -m tools.k8s_check --write`
# (gateway/public_methods.py derives it; tests/fuzz/test_access_matrix.py fails while it is stale). A copy, because
# the gateway's image renders with protobuf alone and cannot import the services. Everything else under /nerava.
# requires the "accounts" JWT provider. Entries of a service missing from the descriptor set are skipped; a listed
# method missing from a service that IS in the descriptor set is an error.
PUBLIC_METHODS_FILE = pathlib.Path(__file__).resolve().parent / "public_methods.json"


def load_public_methods(path: pathlib.Path = PUBLIC_METHODS_FILE) -> Mapping[str, tuple[str, ...]]:
    return {service: tuple(methods) for service, methods in json.loads(path.read_text()).items()}


PUBLIC_METHODS: Mapping[str, tuple[str, ...]] = load_public_methods()

# Public methods where each call costs us something: each gets its own, much smaller token bucket per client
# address. They must also be public (checked in render()); protected methods are limited per account by the
# services.
PER_CLIENT_METHODS: Mapping[str, tuple[str, ...]] = {
    # Send or check a one-time code: they cost money (SMS) and guard accounts against code guessing.
    "nerava.accounts.v1.AccountsService": (
        "StartPhoneLogin",
        "VerifyPhoneLogin",
        "StartEmailLogin",
        "VerifyEmailLogin",
        "StartConsoleLogin",
        "VerifyConsoleLogin",
        # A claim link's token is 256 random bits, but each guess still costs a database read.
        "VerifyMerchantClaimLink",
        # Anyone may start a Tesla sign-in, and each start stores a single-use consent state.
        "GetTeslaLoginUrl",
        "SignInWithTesla",
    ),
    # The merchant app's funnel before sign-in: each search is a paid Google Places call, and each resolve of
    # a new place creates a pending store from Place Details.
    "nerava.merchants.v1.MerchantsService": ("SearchBusinesses", "ResolveBusiness"),
}

# Methods whose REST body is a third party's signed payload (google.api.HttpBody): they may carry up to
# WEBHOOK_BODY_LIMIT bytes; every other request body is limited to REQUEST_BODY_LIMIT. Both are enforced by the
# buffer filter that runs before the transcoder, on the REST route of the request, so an oversized body is
# answered 413 every time and never transcoded.
WEBHOOK_METHODS: Mapping[str, tuple[str, ...]] = {
    "nerava.sessions.v1.SessionsService": ("IngestTelemetry", "HandleSmartcarWebhook"),
    "nerava.ledger.v1.LedgerService": ("HandleStripeEvent",),
}
REQUEST_BODY_LIMIT = 64 * 1024
WEBHOOK_BODY_LIMIT = 1024 * 1024

# CLIENT_ADDRESS_HEADER (services.common.config) is the client address Envoy resolved (its remote address after
# `xff_num_trusted_hops`), put on every request it forwards, replacing whatever the client sent under that name.
# Local replies set GRPC_STATUS_HEADER too, so the access log records the real gRPC status. SERVICE_TOKEN_HEADER,
# service-to-service identity, is never accepted from outside the mesh.

# The JWKS the gateway verifies tokens with is served by accounts behind the gateway itself: the REST path is
# transcoded to AccountsService/GetJwks, which is public, so the self-fetch needs no token.
JWKS_PATH = "/.well-known/jwks.json"
JWKS_METHOD = ("nerava.accounts.v1.AccountsService", "GetJwks")
JWT_PROVIDER = "accounts"


# HTTP status of a local reply (one Envoy generates itself) → the google.rpc.Code put in its JSON Status body,
# so every error an app sees has the shape the services' errors have after transcoding (API.md "Wire
# conventions"). 504 (route timeout) maps to DEADLINE_EXCEEDED, which is what the transcoder maps back to 504.
# Each carries a google.rpc.ErrorInfo with a stable reason in the domain gateway.nerava, like the services' errors.
LOCAL_REPLY_GRPC_CODES: Mapping[int, int] = {
    400: 3,  # INVALID_ARGUMENT: malformed JSON body, a value of the wrong type
    401: 16,  # UNAUTHENTICATED: JWT missing, expired, badly signed
    403: 7,  # PERMISSION_DENIED: a valid JWT for another audience
    404: 5,  # NOT_FOUND: no REST binding / no route for the path
    413: 3,  # INVALID_ARGUMENT: request body over the limit
    429: 8,  # RESOURCE_EXHAUSTED: local rate limit
    431: 3,  # INVALID_ARGUMENT: request headers too large
    503: 14,  # UNAVAILABLE: no healthy upstream, connection refused
    504: 4,  # DEADLINE_EXCEEDED: upstream request timeout
}
LOCAL_REPLY_REASONS: Mapping[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "PAYLOAD_TOO_LARGE",
    429: "RATE_LIMITED",
    431: "HEADERS_TOO_LARGE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
LOCAL_REPLY_DEFAULT_GRPC_CODE = 2  # UNKNOWN
LOCAL_REPLY_DEFAULT_REASON = "GATEWAY_ERROR"
ERROR_DOMAIN = "gateway.nerava"

# On every answer, local or proxied. Answers are per caller and many carry tokens: nothing may be cached.
SECURITY_HEADERS: Mapping[str, str] = {"x-content-type-options": "nosniff", "cache-control": "no-store"}
# Browsers must only ever reach the production gateway over TLS (terminated by the load balancer in front).
HSTS_HEADER = ("strict-transport-security", "max-age=31536000; includeSubDomains")

HTTP_FILTER_NAMES = (
    "envoy.filters.http.cors",
    "envoy.filters.http.lua",
    "envoy.filters.http.buffer",
    "envoy.filters.http.grpc_json_transcoder",
    "envoy.filters.http.jwt_authn",
    "envoy.filters.http.local_ratelimit",
    "envoy.filters.http.router",
)
_CORS, _LUA, _BUFFER, _TRANSCODER, _JWT, _RATE_LIMIT, _ROUTER = HTTP_FILTER_NAMES

# An answer carrying this header (services/common/interceptors.py redirect_browser: the OAuth callbacks, which end
# a browser round trip) leaves the gateway as a 302 to its value. Transcoding cannot set an HTTP status, so the
# Lua filter does it on the way out — after the transcoder, since response filters run in reverse order. Every
# other answer passes with one header lookup.
REDIRECT_HEADER = "x-nerava-redirect"
_REDIRECT_LUA = f"""
function envoy_on_response(response_handle)
  local headers = response_handle:headers()
  local target = headers:get("{REDIRECT_HEADER}")
  if target ~= nil then
    headers:remove("{REDIRECT_HEADER}")
    headers:replace(":status", "302")
    headers:replace("location", target)
  end
end
"""
_HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
# Deliberately not defined as a cluster: see _catch_all_route().
_NO_SUCH_CLUSTER = "nerava_unroutable"


@dataclass(frozen=True)
class Endpoint:
    """A host (IP literal or DNS name) and a TCP port."""

    host: str
    port: int

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("endpoint host is empty")
        if not 0 < self.port < 65536:
            raise ValueError(f"endpoint port out of range: {self.port}")

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Parses `host:port` or `[v6]:port`."""
        host, sep, port = text.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        return cls(host.removeprefix("[").removesuffix("]"), int(port))

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class TokenBucket:
    """A local rate-limit bucket: `max_tokens` burst, refilled with `tokens_per_fill` every `fill_interval_s`."""

    max_tokens: int
    tokens_per_fill: int
    fill_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if self.max_tokens < 1 or self.tokens_per_fill < 1:
            raise ValueError("a token bucket needs at least one token and one token per fill")
        if self.fill_interval_s < 0.05:  # Envoy rejects fill intervals under 50 ms
            raise ValueError("fill_interval_s must be at least 0.05")


@dataclass(frozen=True)
class ApiDocs:
    """The files the gateway serves as they are, at /openapi.json and /docs (paths as Envoy reads them, when it
    loads its configuration): the OpenAPI document `make proto` generates and the Redoc bundle `make setup`
    fetches (gateway/redoc.py)."""

    openapi_file: str = str(ROOT / "gen" / "openapi.json")
    redoc_file: str = str(REDOC_BUNDLE)


def _local_upstreams() -> dict[str, Endpoint]:
    return {name: Endpoint("127.0.0.1", port) for name, port in LOCAL_UPSTREAM_PORTS.items()}


@dataclass(frozen=True)
class GatewaySettings:
    """Everything that differs between gateway deployments. Defaults are the local target's.

    descriptor_path is where Envoy reads the descriptor set; descriptor_source is where the renderer reads it
    to learn which services and methods exist (None = descriptor_path). They differ for Kubernetes, where the
    file is mounted into the Envoy pod but rendering happens from a checkout.
    """

    target: Target = "local"
    listen: Endpoint = Endpoint("127.0.0.1", 8080)
    admin: Endpoint = Endpoint("127.0.0.1", 9901)
    upstreams: Mapping[str, Endpoint] = field(default_factory=_local_upstreams)
    descriptor_path: str = str(DEFAULT_DESCRIPTOR)
    descriptor_source: pathlib.Path | None = None
    # Exact origins (scheme://host[:port]) browsers may call from; the Vite dev server's by default.
    cors_allowed_origins: tuple[str, ...] = ("http://localhost:5173", "http://127.0.0.1:5173")
    # OTLP/gRPC collector; None → no tracing section and no collector cluster.
    otlp_collector: Endpoint | None = None
    # Share of requests the gateway starts a trace for (percent). The decision travels in `traceparent`'s
    # sampled flag and the services follow it (parentbased sampler), so at ~17k polls/s in production a low
    # percentage saves the span export on every hop, not only at the edge. 100 = every request (tests, local).
    trace_sampling_percent: float = 100.0
    # Generous: a global guard against floods per Envoy process, not a per-client quota.
    default_rate_limit: TokenBucket = TokenBucket(max_tokens=2000, tokens_per_fill=2000)
    # Per client address (as resolved with xff_num_trusted_hops), per PER_CLIENT_METHODS method: one client
    # cannot use up everyone's logins or our Places quota. The services' per-IP and per-phone limits in Redis
    # are the durable ones.
    per_client_rate_limit: TokenBucket = TokenBucket(max_tokens=20, tokens_per_fill=20)
    # How many client addresses each per-client bucket tracks at once (least recently used ones are forgotten).
    per_client_rate_limit_clients: int = 20000
    jwt_issuer: str = "nerava"
    jwt_audiences: tuple[str, ...] = ("nerava-api",)
    jwks_cache_duration_s: int = 300
    upstream_timeout_s: float = 15.0
    connect_timeout_s: float = 1.0
    # Proxies in front of Envoy whose x-forwarded-for entries are trusted (a cloud load balancer → 1).
    xff_num_trusted_hops: int = 0
    # Kubernetes: a listener exposing only GET /ready and /stats/prometheus of the admin interface, so probes
    # and Prometheus work while the admin interface itself stays on loopback.
    ops_listen: Endpoint | None = None
    # Strict-Transport-Security on every answer (the production gateway sits behind a TLS load balancer).
    hsts: bool = False
    # An edge proxy without a connection cap can be exhausted by idle connections; per Envoy process.
    max_downstream_connections: int = 50000
    # /openapi.json and the /docs page; None serves neither.
    api_docs: ApiDocs | None = None

    def __post_init__(self) -> None:
        if set(self.upstreams) != set(SERVICES):
            raise ValueError(f"upstreams must name exactly {sorted(SERVICES)}, got {sorted(self.upstreams)}")
        if not self.jwt_audiences:
            raise ValueError("at least one JWT audience is required")
        if self.upstream_timeout_s <= 0 or self.connect_timeout_s <= 0 or self.jwks_cache_duration_s <= 0:
            raise ValueError("timeouts and the JWKS cache duration must be positive")
        if not 0 <= self.trace_sampling_percent <= 100:
            raise ValueError(f"trace_sampling_percent must be in [0, 100], got {self.trace_sampling_percent}")

    @classmethod
    def local(
        cls,
        *,
        listen_port: int | None = None,
        admin_port: int | None = None,
        upstreams: Mapping[str, Endpoint | str] | None = None,
        **overrides: Any,
    ) -> GatewaySettings:
        """Loopback listener, admin and upstreams (127.0.0.1:50051..50055), descriptor from gen/.

        Conveniences for scripts: `listen_port` / `admin_port` keep the loopback host, and an upstream may be
        given as "host:port". Any field can also be passed as such (listen=Endpoint(...), ...).
        """
        if listen_port is not None:
            overrides["listen"] = Endpoint("127.0.0.1", listen_port)
        if admin_port is not None:
            overrides["admin"] = Endpoint("127.0.0.1", admin_port)
        if upstreams is not None:
            overrides["upstreams"] = {
                name: value if isinstance(value, Endpoint) else Endpoint.parse(value)
                for name, value in upstreams.items()
            }
        overrides.setdefault("api_docs", ApiDocs())
        return cls(**overrides)

    @classmethod
    def kubernetes(
        cls,
        namespace: str = "nerava",
        service_port: int = KUBERNETES_GRPC_PORT,
        cluster_domain: str = "cluster.local",
        **overrides: Any,
    ) -> GatewaySettings:
        """Headless Services `<service>.<namespace>.svc.<cluster_domain>:<service_port>`, listener on all
        interfaces, descriptor mounted at /etc/envoy/descriptors/, no CORS origin until one is configured."""
        defaults: dict[str, Any] = {
            "target": "kubernetes",
            "listen": Endpoint("0.0.0.0", 8080),
            "admin": Endpoint("127.0.0.1", 9901),
            "upstreams": {
                name: Endpoint(f"{name}.{namespace}.svc.{cluster_domain}", service_port) for name in SERVICES
            },
            "descriptor_path": KUBERNETES_DESCRIPTOR_PATH,
            "descriptor_source": DEFAULT_DESCRIPTOR,
            "cors_allowed_origins": (),
            "ops_listen": Endpoint("0.0.0.0", 9902),
            "hsts": True,
            # Both files are in the gateway image (deploy/docker/gateway.Dockerfile).
            "api_docs": ApiDocs(KUBERNETES_OPENAPI_PATH, KUBERNETES_REDOC_PATH),
        }
        defaults.update(overrides)
        return cls(**defaults)

    @property
    def descriptor_file(self) -> pathlib.Path:
        return self.descriptor_source if self.descriptor_source is not None else pathlib.Path(self.descriptor_path)


# ---------------------------------------------------------------------------------------------------------------
# Descriptor set


def read_services(descriptor_file: pathlib.Path) -> dict[str, frozenset[str]]:
    """Fully-qualified service name → its method names, for every service in a FileDescriptorSet."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_file.read_bytes())
    services: dict[str, frozenset[str]] = {}
    for proto_file in fds.file:
        prefix = f"{proto_file.package}." if proto_file.package else ""
        for service in proto_file.service:
            services[prefix + service.name] = frozenset(method.name for method in service.method)
    return services


def _method_paths(
    table: Mapping[str, tuple[str, ...]], available: Mapping[str, frozenset[str]], what: str
) -> list[str]:
    """gRPC paths of `table`'s methods whose service is in the descriptor set; a missing method is an error."""
    paths = []
    for service, methods in table.items():
        if service not in available:
            continue
        for method in methods:
            if method not in available[service]:
                raise ValueError(f"{what} method {service}/{method} is not in the descriptor set")
            paths.append(f"/{service}/{method}")
    return paths


# ---------------------------------------------------------------------------------------------------------------
# Small builders


def _duration(seconds: float) -> str:
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def _socket_address(endpoint: Endpoint) -> JsonObject:
    return {"socket_address": {"address": endpoint.host, "port_value": endpoint.port}}


def _loopback_for(endpoint: Endpoint) -> Endpoint:
    """The address to reach a listener of this process: a wildcard listener is reached over loopback."""
    if endpoint.host in ("0.0.0.0", "::"):
        return Endpoint("::1" if endpoint.host == "::" else "127.0.0.1", endpoint.port)
    return endpoint


def _percent(value: int) -> JsonObject:
    return {"default_value": {"numerator": value, "denominator": "HUNDRED"}}


def _token_bucket(bucket: TokenBucket) -> JsonObject:
    return {
        "max_tokens": bucket.max_tokens,
        "tokens_per_fill": bucket.tokens_per_fill,
        "fill_interval": _duration(bucket.fill_interval_s),
    }


def _per_client_rate_limit(stat_prefix: str, bucket: TokenBucket, ceiling: TokenBucket, clients: int) -> JsonObject:
    """A bucket per client address: a descriptor entry without a value makes Envoy keep one bucket for each
    distinct address it sees (at most `clients`, least recently used forgotten). `ceiling` still bounds the
    route as a whole."""
    config = _rate_limit(stat_prefix, ceiling)
    config["descriptors"] = [{"entries": [{"key": "remote_address"}], "token_bucket": _token_bucket(bucket)}]
    config["max_dynamic_descriptors"] = clients
    # remote_address is the address after xff_num_trusted_hops, the same one the services receive.
    config["rate_limits"] = [{"actions": [{"remote_address": {}}]}]
    return config


def _rate_limit(stat_prefix: str, bucket: TokenBucket) -> JsonObject:
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": stat_prefix,
        "token_bucket": _token_bucket(bucket),
        # Both default to 0 %, i.e. a bucket that is never consulted; 100 % = checked and enforced.
        "filter_enabled": _percent(100),
        "filter_enforced": _percent(100),
        # x-ratelimit-limit / -remaining / -reset tell a well-behaved client when to come back.
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
    }


def _http_protocol_options(*, http2: bool) -> JsonObject:
    explicit: JsonObject
    if http2:
        # Keepalive PINGs notice a replica that vanished without a FIN/RST (a killed pod) within seconds
        # instead of leaving requests to hang on a dead connection until their deadline.
        explicit = {"http2_protocol_options": {"connection_keepalive": {"interval": "30s", "timeout": "5s"}}}
    else:
        explicit = {"http_protocol_options": {}}
    return {
        _HTTP_OPTIONS_KEY: {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": explicit,
        }
    }


def _cluster(name: str, endpoint: Endpoint, settings: GatewaySettings, *, http2: bool) -> JsonObject:
    cluster: JsonObject = {
        "name": name,
        "connect_timeout": _duration(settings.connect_timeout_s),
        # Per-request round robin over every address. With a headless Service, DNS returns one A record per
        # ready pod, STRICT_DNS makes each a host with its own HTTP/2 connection, and new replicas get traffic
        # after the next refresh (a ClusterIP would pin each long-lived HTTP/2 connection to one pod).
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket_address(endpoint)}}]}],
        },
        "typed_extension_protocol_options": _http_protocol_options(http2=http2),
    }
    if endpoint.is_ip:
        cluster["type"] = "STATIC"
    else:
        # Re-resolved every 5 s (Envoy's default; Cluster.dns_refresh_rate is deprecated in 1.40): that is how
        # soon a new replica behind a headless Service starts taking traffic.
        cluster["type"] = "STRICT_DNS"
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    if http2:
        # The defaults (1024 concurrent requests per cluster) would turn a latency spike at ~17k polls/s into
        # 503s from Envoy itself; the services' own deadlines and the HPA are the real back-pressure.
        cluster["circuit_breakers"] = {
            "thresholds": [{"max_connections": 100000, "max_pending_requests": 100000, "max_requests": 100000}]
        }
    return cluster


# ---------------------------------------------------------------------------------------------------------------
# Routes


def _route(name: str, match: JsonObject, action: JsonObject, **extra: Any) -> JsonObject:
    route: JsonObject = {"name": name, "match": match, "route": action}
    route.update(extra)
    return _with_edge_headers(route)


def _with_edge_headers(route: JsonObject) -> JsonObject:
    # On every route, not once per virtual host, so a route added later cannot miss it by construction.
    route["request_headers_to_remove"] = [SERVICE_TOKEN_HEADER]
    route["request_headers_to_add"] = [
        {
            "header": {"key": CLIENT_ADDRESS_HEADER, "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }
    ]
    return route


def _grpc_action(cluster: str, timeout_s: float) -> JsonObject:
    return {
        "cluster": cluster,
        "timeout": _duration(timeout_s),
        # A gRPC caller's own grpc-timeout is honoured up to the same ceiling.
        "max_stream_duration": {"grpc_timeout_header_max": _duration(timeout_s)},
        # Retry only failures where the request provably never reached a service (no connection, stream
        # refused, reset before it was sent), on another replica: safe even for mutations, and it hides pod
        # churn during rollouts and scale-downs.
        "retry_policy": {
            "retry_on": "connect-failure,refused-stream,reset-before-request",
            "num_retries": 2,
            "retry_host_predicate": [
                {
                    "name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3."
                        "PreviousHostsPredicate"
                    },
                }
            ],
            "host_selection_retry_max_attempts": 3,
        },
    }


# The human docs page: Redoc renders the gateway's own /openapi.json.
DOCS_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Nerava Mesh REST API</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><redoc spec-url="/openapi.json"></redoc><script src="/docs/redoc.standalone.js"></script></body>
</html>
"""
# Envoy refuses a direct response body larger than this (its default is 4 KiB); the Redoc bundle is ~0.9 MB.
MAX_STATIC_BODY_BYTES = 4 * 1024 * 1024


def _static_route(name: str, path: str, content_type: str, body: JsonObject) -> JsonObject:
    """GET `path` answered by Envoy itself with `body` (a file read at load, or an inline string). The
    transcoder is switched off on this route: it would refuse the path as an unknown REST method."""
    return _with_edge_headers(
        {
            "name": name,
            "match": {"path": path, "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
            "direct_response": {"status": 200, "body": body},
            "response_headers_to_add": [
                {
                    "header": {"key": "content-type", "value": content_type},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }
            ],
            "typed_per_filter_config": {
                _TRANSCODER: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}
            },
        }
    )


def _docs_routes(docs: ApiDocs) -> list[JsonObject]:
    return [
        _static_route("openapi", "/openapi.json", "application/json", {"filename": docs.openapi_file}),
        _static_route("docs", "/docs", "text/html; charset=utf-8", {"inline_string": DOCS_PAGE}),
        _static_route(
            "docs:redoc", "/docs/redoc.standalone.js", "application/javascript", {"filename": docs.redoc_file}
        ),
    ]


def _catch_all_route() -> JsonObject:
    """A last route matching every path, needed by the CORS filter and never used to forward anything.

    The CORS filter runs first and applies the virtual host's policy only when the request's path matches a
    route with a route action; REST paths (/v1/...) match no gRPC route before the transcoder rewrites them, so
    without this route a browser would get no CORS headers and no preflight answer. Past CORS, every REST
    request is either transcoded (the route is then recomputed on the gRPC path) or answered 404 by the
    transcoder. Anything that still reaches this route (e.g. a gRPC call to a service we do not serve) names a
    cluster that deliberately does not exist and gets 404 — "no route".
    """
    return _route(
        "unroutable",
        {"prefix": "/"},
        {"cluster": _NO_SUCH_CLUSTER, "cluster_not_found_response_code": "NOT_FOUND"},
    )


def _routes(settings: GatewaySettings, available: Mapping[str, frozenset[str]]) -> list[JsonObject]:
    cluster_of = {service: cluster for cluster, service in SERVICES.items()}
    routes: list[JsonObject] = []
    jwks_service, jwks_method = JWKS_METHOD
    if jwks_method in available.get(jwks_service, frozenset()):
        # The jwt_authn self-fetch, named so its traffic is visible on its own in stats and logs.
        routes.append(
            _route(
                "jwks",
                {"path": f"/{jwks_service}/{jwks_method}", "grpc": {}},
                _grpc_action(cluster_of[jwks_service], settings.upstream_timeout_s),
            )
        )
    for path in _method_paths(PER_CLIENT_METHODS, available, "per-client"):
        service, method = path.strip("/").split("/")
        # One route and so one bucket per method: a flood of code requests cannot lock out code checks.
        routes.append(
            _route(
                f"per_client:{method}",
                {"path": path, "grpc": {}},
                _grpc_action(cluster_of[service], settings.upstream_timeout_s),
                typed_per_filter_config={
                    _RATE_LIMIT: _per_client_rate_limit(
                        "per_client_rate_limit",
                        settings.per_client_rate_limit,
                        settings.default_rate_limit,
                        settings.per_client_rate_limit_clients,
                    )
                },
            )
        )
    for cluster, service in SERVICES.items():
        # `grpc: {}` requires content-type application/grpc, which the transcoder sets on every REST call it
        # maps; a plain HTTP request to a gRPC path never reaches a service.
        routes.append(
            _route(
                cluster,
                {"prefix": f"/{service}/", "grpc": {}},
                _grpc_action(cluster, settings.upstream_timeout_s),
            )
        )
    routes += _webhook_body_routes(settings)
    if settings.api_docs is not None:
        routes += _docs_routes(settings.api_docs)
    routes.append(_catch_all_route())
    return routes


def _rest_paths(descriptor_file: pathlib.Path, table: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The REST paths (google.api.http) of `table`'s methods that are in the descriptor set."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_file.read_bytes())
    paths: list[str] = []
    for proto_file in fds.file:
        for service in proto_file.service:
            wanted = table.get(f"{proto_file.package}.{service.name}", ())
            for method in service.method:
                if method.name not in wanted:
                    continue
                options = descriptor_pb2.MethodOptions.FromString(method.options.SerializeToString())
                rule = options.Extensions[annotations_pb2.http]
                paths += [p for p in (rule.get, rule.post, rule.put, rule.patch, rule.delete) if p]
    return paths


def _webhook_body_routes(settings: GatewaySettings) -> list[JsonObject]:
    """Routes matching the webhooks' REST paths as they arrive, before the transcoder rewrites them: only the
    buffer filter (which runs first) reads them, to allow those bodies up to WEBHOOK_BODY_LIMIT. Like the
    catch-all route, they forward nothing themselves."""
    routes = []
    for path in _rest_paths(settings.descriptor_file, WEBHOOK_METHODS):
        if "{" in path:
            raise ValueError(f"webhook path {path} has a variable; match it with a template")
        route = _route(
            f"webhook-body:{path}",
            {"path": path},
            {"cluster": _NO_SUCH_CLUSTER, "cluster_not_found_response_code": "NOT_FOUND"},
            typed_per_filter_config={_BUFFER: _buffer_per_route(WEBHOOK_BODY_LIMIT)},
        )
        routes.append(route)
    return routes


def _buffer_per_route(limit: int) -> JsonObject:
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute",
        "buffer": {"max_request_bytes": limit},
    }


def _cors_policy(settings: GatewaySettings) -> JsonObject:
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": [{"exact": origin} for origin in settings.cors_allowed_origins],
        "allow_methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
        "allow_headers": "authorization, content-type, x-request-id",
        "expose_headers": "x-request-id",
        "max_age": "600",
        # Tokens travel in the Authorization header, never in cookies: no credentialed CORS.
        "allow_credentials": False,
        # A preflight from an unknown origin is answered here (without allow-origin) instead of reaching the
        # transcoder as an OPTIONS request it has no binding for.
        "forward_not_matching_preflights": False,
    }


# ---------------------------------------------------------------------------------------------------------------
# HTTP filters


def _transcoder(settings: GatewaySettings, services: list[str]) -> JsonObject:
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
        "proto_descriptor": settings.descriptor_path,
        "services": services,
        "print_options": {
            "add_whitespace": False,
            "always_print_primitive_fields": True,  # the apps read `0`, `false`, `""` rather than absent keys
            "always_print_enums_as_ints": False,
            "preserve_proto_field_names": True,  # snake_case keys, as the apps already expect
        },
        # Errors of the services reach the app as a JSON google.rpc.Status (with ErrorInfo details).
        "convert_grpc_status": True,
        "request_validation_options": {
            "reject_unknown_method": True,  # unknown REST path → 404 here, before auth
            # One rule for unknown input: an unknown JSON body field is dropped (the transcoder cannot refuse it),
            # and so is an unknown query parameter. The contract lists the fields that mean something; a query
            # parameter naming a field that the path binds is refused by the services (edge_input.py).
            "reject_unknown_query_parameters": False,
            # A path variable and a body field with the same name must not disagree (e.g. a body naming another
            # user than the URL of :setRoles).
            "reject_binding_body_field_collisions": True,
        },
        # Only the google.api.http bindings are public REST; /Service/Method over JSON is not a REST surface.
        "auto_mapping": False,
        "ignore_unknown_query_parameters": True,
        # Browsers' URLSearchParams encode a space as '+' in query strings.
        "query_param_unescape_plus": True,
    }


def _jwt_authn(settings: GatewaySettings, available: Mapping[str, frozenset[str]]) -> JsonObject:
    jwks = _loopback_for(settings.listen)
    public_paths = _method_paths(PUBLIC_METHODS, available, "public")
    # Public methods accept a missing OR a failed token (allow_missing_or_failed rather than allow_missing):
    # the driver app sends its stored access token on every call, including POST /v1/auth/refresh, which it
    # calls precisely when that token has expired, and on the login calls. With allow_missing the expired
    # token would be rejected and the refresh flow could never recover. These methods do not use the caller's
    # identity; the header is still forwarded, and the services verify tokens themselves.
    rules: list[JsonObject] = [
        {"match": {"path": path}, "requires": {"allow_missing_or_failed": {}}} for path in public_paths
    ]
    rules.append({"match": {"prefix": "/nerava."}, "requires": {"provider_name": JWT_PROVIDER}})
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {
            JWT_PROVIDER: {
                "issuer": settings.jwt_issuer,
                "audiences": list(settings.jwt_audiences),
                "remote_jwks": {
                    "http_uri": {"uri": f"http://{jwks}{JWKS_PATH}", "cluster": "jwks", "timeout": "5s"},
                    "cache_duration": _duration(settings.jwks_cache_duration_s),
                    # fast_listener: the JWKS comes through this very listener, so it must not wait for the
                    # first fetch; a failed fetch (accounts not up yet) is retried every second.
                    "async_fetch": {"fast_listener": True, "failed_refetch_duration": "1s"},
                },
                # The services verify the token again and read its claims; the gateway is not the only guard.
                "forward": True,
                # The verified claims, for the access log's `user` field.
                "payload_in_metadata": "jwt_payload",
                # An app sends the same token on every call for its whole lifetime; remembering verified
                # tokens (until exp) saves an ES256 check per request on each Envoy worker.
                "jwt_cache_config": {"jwt_cache_size": 10000},
            }
        },
        "rules": rules,
    }


def _http_filters(settings: GatewaySettings, available: Mapping[str, frozenset[str]]) -> list[JsonObject]:
    services = [service for service in SERVICES.values() if service in available]
    if not services:
        raise ValueError(f"none of {list(SERVICES.values())} is in {settings.descriptor_file}")
    configs: dict[str, JsonObject] = {
        _CORS: {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"},
        _LUA: {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": _REDIRECT_LUA},
        },
        # Before the transcoder: the whole body is read (and refused with 413 past the limit) before any of it
        # is parsed. The limit is the REST route's: webhook paths allow more (see _webhook_body_routes).
        _BUFFER: {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": REQUEST_BODY_LIMIT,
        },
        _TRANSCODER: _transcoder(settings, services),
        _JWT: _jwt_authn(settings, available),
        # The default bucket for every route; per-client routes replace it with their own (per-route config).
        _RATE_LIMIT: _rate_limit("gateway_rate_limit", settings.default_rate_limit),
        _ROUTER: {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    }
    return [{"name": name, "typed_config": configs[name]} for name in HTTP_FILTER_NAMES]


# ---------------------------------------------------------------------------------------------------------------
# Local replies, access log, tracing


def _status_body(grpc_code: int, reason: str) -> JsonObject:
    error_info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": ERROR_DOMAIN}
    return {
        # A literal number in json_format stays a JSON number; %LOCAL_REPLY_BODY% is JSON-escaped by Envoy.
        "json_format": {"code": grpc_code, "message": "%LOCAL_REPLY_BODY%", "details": [error_info]},
        "content_type": "application/json",
    }


def _local_reply_mapper(
    filter_: JsonObject, grpc_code: int, reason: str, security_headers: Mapping[str, str]
) -> JsonObject:
    headers = {GRPC_STATUS_HEADER: str(grpc_code), **security_headers}
    return {
        "filter": filter_,
        "body_format_override": _status_body(grpc_code, reason),
        "headers_to_add": [
            {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            for key, value in headers.items()
        ],
    }


def _status_code_filter(op: str, value: int) -> JsonObject:
    return {"status_code_filter": {"comparison": {"op": op, "value": {"default_value": value, "runtime_key": ""}}}}


def _local_reply_config(settings: GatewaySettings) -> JsonObject:
    # A direct gRPC call (content-type application/grpc that the transcoder did not produce, i.e. without the
    # x-envoy-original-path it sets) gets Envoy's gRPC local reply — grpc-status plus a plain grpc-message —
    # rather than a JSON document stuffed into grpc-message. This mapper matches them and rewrites nothing;
    # there is deliberately no top-level body_format that would apply to it.
    direct_grpc = {
        "filter": {
            "and_filter": {
                "filters": [
                    {
                        "header_filter": {
                            "header": {"name": "content-type", "string_match": {"prefix": "application/grpc"}}
                        }
                    },
                    {"header_filter": {"header": {"name": "x-envoy-original-path", "present_match": False}}},
                ]
            }
        }
    }
    mappers: list[JsonObject] = [direct_grpc]
    headers = _security_headers(settings)
    mappers += [
        _local_reply_mapper(_status_code_filter("EQ", status), code, LOCAL_REPLY_REASONS[status], headers)
        for status, code in LOCAL_REPLY_GRPC_CODES.items()
    ]
    # Any other error status: UNKNOWN. Successful local replies (none today) keep their body.
    mappers.append(
        _local_reply_mapper(
            _status_code_filter("GE", 400), LOCAL_REPLY_DEFAULT_GRPC_CODE, LOCAL_REPLY_DEFAULT_REASON, headers
        )
    )
    return {"mappers": mappers}


ACCESS_LOG_FORMAT: Mapping[str, str] = {
    "time": "%START_TIME%",
    # The transcoder rewrites method and path; log what the client sent, and the gRPC method separately.
    "method": "%REQ(X-ENVOY-ORIGINAL-METHOD?:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "rpc": "%REQ(:PATH)%",
    "protocol": "%PROTOCOL%",
    "status": "%RESPONSE_CODE%",
    # The services' own copy of the status (x-nerava-grpc-status; local replies set it too), else grpc-status:
    # the transcoder drops grpc-status from an error it turns into JSON, and Envoy would guess it from the HTTP
    # code (every 400 logged as 13).
    "grpc_status": "%RESP(X-NERAVA-GRPC-STATUS?GRPC-STATUS)%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "flags": "%RESPONSE_FLAGS%",
    "duration_ms": "%DURATION%",
    "upstream_ms": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "trace_id": "%TRACE_ID%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "upstream_host": "%UPSTREAM_HOST%",
    "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "user": "%DYNAMIC_METADATA(envoy.filters.http.jwt_authn:jwt_payload:sub)%",
    "bytes_in": "%BYTES_RECEIVED%",
    "bytes_out": "%BYTES_SENT%",
    "user_agent": "%REQ(USER-AGENT)%",
}


def _stdout_access_log(fields: Mapping[str, str]) -> JsonObject:
    return {
        "name": "envoy.access_loggers.stdout",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
            "log_format": {"json_format": dict(fields)},
        },
    }


def _tracing(settings: GatewaySettings) -> JsonObject:
    return {
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "grpc_service": {"envoy_grpc": {"cluster_name": "otel_collector"}, "timeout": "1s"},
                "service_name": "nerava-gateway",
            },
        },
        # By default every request is traced (sampling belongs to the collector); a deployment may sample at the
        # edge instead (trace_sampling_percent). The router adds a client span for the upstream call, and W3C
        # traceparent is injected into the request to the service.
        "random_sampling": {"value": settings.trace_sampling_percent},
        "spawn_upstream_span": True,
    }


# ---------------------------------------------------------------------------------------------------------------
# Listeners, clusters, bootstrap


def _public_listener(settings: GatewaySettings, available: Mapping[str, frozenset[str]]) -> JsonObject:
    hcm: JsonObject = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
        "HttpConnectionManager",
        "stat_prefix": "public",
        # HTTP/1.1 for the apps' REST calls, h2c for gRPC callers, on the same port.
        "codec_type": "AUTO",
        # Envoy is the edge: it appends the peer address to x-forwarded-for (the services read the client IP
        # there) and treats the request as external, stripping internal-only x-envoy-* headers.
        "use_remote_address": True,
        "xff_num_trusted_hops": settings.xff_num_trusted_hops,
        "generate_request_id": True,
        # An app may send its own x-request-id to correlate its logs with ours; keep it when present.
        "preserve_external_request_id": True,
        "always_set_request_id_in_response": True,
        # By default Envoy packs its sampling decision into a UUID request id and reads it back from there, so a
        # request whose app-chosen id is not a UUID would never be traced: the decision is random_sampling's alone.
        "request_id_extension": {
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig",
                "pack_trace_reason": False,
                "use_request_id_for_trace_sampling": False,
            }
        },
        "normalize_path": True,
        "merge_slashes": True,
        # Slow-header clients cannot hold connections open forever.
        "request_headers_timeout": "10s",
        "route_config": {
            "name": "public",
            "virtual_hosts": [
                {
                    "name": "nerava",
                    "domains": ["*"],
                    "routes": _routes(settings, available),
                    "typed_per_filter_config": {_CORS: _cors_policy(settings)},
                    "response_headers_to_add": [
                        {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                        for key, value in _security_headers(settings).items()
                    ],
                }
            ],
            # The catch-all route names a cluster that does not exist on purpose (see _catch_all_route);
            # tests check that every other route targets a defined cluster.
            "validate_clusters": False,
            "max_direct_response_body_size_bytes": MAX_STATIC_BODY_BYTES,
        },
        "http_filters": _http_filters(settings, available),
        "local_reply_config": _local_reply_config(settings),
        "access_log": [_stdout_access_log(ACCESS_LOG_FORMAT)],
    }
    if settings.otlp_collector is not None:
        hcm["tracing"] = _tracing(settings)
    return {
        "name": "public",
        "address": _socket_address(settings.listen),
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }


def _security_headers(settings: GatewaySettings) -> dict[str, str]:
    headers = dict(SECURITY_HEADERS)
    if settings.hsts:
        headers[HSTS_HEADER[0]] = HSTS_HEADER[1]
    return headers


def _ops_listener(endpoint: Endpoint) -> JsonObject:
    def admin_route(path: str) -> JsonObject:
        return _route(
            f"admin:{path}",
            {"path": path, "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
            {"cluster": "admin", "timeout": "5s"},
        )

    hcm: JsonObject = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
        "HttpConnectionManager",
        "stat_prefix": "ops",
        "route_config": {
            "name": "ops",
            "virtual_hosts": [
                {
                    "name": "ops",
                    "domains": ["*"],
                    # Read-only endpoints only: the admin interface can also drain, reconfigure and quit.
                    "routes": [admin_route("/ready"), admin_route("/stats/prometheus")],
                }
            ],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            }
        ],
    }
    return {
        "name": "ops",
        "address": _socket_address(endpoint),
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }


def _clusters(settings: GatewaySettings) -> list[JsonObject]:
    clusters = [_cluster(name, settings.upstreams[name], settings, http2=True) for name in SERVICES]
    # jwt_authn fetches the JWKS with a plain HTTP/1.1 GET, through our own public listener.
    clusters.append(_cluster("jwks", _loopback_for(settings.listen), settings, http2=False))
    if settings.otlp_collector is not None:
        clusters.append(_cluster("otel_collector", settings.otlp_collector, settings, http2=True))
    if settings.ops_listen is not None:
        clusters.append(_cluster("admin", _loopback_for(settings.admin), settings, http2=False))
    return clusters


def render(settings: GatewaySettings) -> JsonObject:
    """The Envoy bootstrap for `settings`, as JSON-ready data."""
    available = read_services(settings.descriptor_file)
    per_client_paths = set(_method_paths(PER_CLIENT_METHODS, available, "per-client"))
    if not per_client_paths <= set(_method_paths(PUBLIC_METHODS, available, "public")):
        raise ValueError("every per-client limited method must also be public (the others are limited per account)")
    listeners = [_public_listener(settings, available)]
    if settings.ops_listen is not None:
        listeners.append(_ops_listener(settings.ops_listen))
    return {
        "node": {"id": f"nerava-gateway-{settings.target}", "cluster": "nerava-gateway"},
        "admin": {"address": _socket_address(settings.admin)},
        "static_resources": {"listeners": listeners, "clusters": _clusters(settings)},
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3."
                        "DownstreamConnectionsConfig",
                        "max_active_downstream_connections": settings.max_downstream_connections,
                    },
                }
            ]
        },
    }


def write(settings: GatewaySettings, path: pathlib.Path) -> JsonObject:
    """Renders `settings` into `path` (parent directories created) and returns the bootstrap."""
    config = render(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    return config


# ---------------------------------------------------------------------------------------------------------------
# Command line


def _env(option: str) -> str | None:
    return os.environ.get("NERAVA_GATEWAY_" + option.upper().replace("-", "_")) or None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--target", choices=("local", "kubernetes"), default=_env("target"), required=not _env("target")
    )
    parser.add_argument("--out", type=pathlib.Path, required=True, help="where to write the JSON bootstrap")
    parser.add_argument("--listen", default=_env("listen"), help="HOST:PORT (local 127.0.0.1:8080, k8s 0.0.0.0:8080)")
    parser.add_argument("--admin", default=_env("admin"), help="HOST:PORT of the admin interface (127.0.0.1:9901)")
    for name in SERVICES:
        parser.add_argument(f"--{name}", default=_env(name), help=f"HOST:PORT of {name} (local target)")
    parser.add_argument("--namespace", default=_env("namespace") or "nerava", help="k8s namespace of the Services")
    parser.add_argument(
        "--service-port", type=int, default=int(_env("service-port") or KUBERNETES_GRPC_PORT), help="k8s gRPC port"
    )
    parser.add_argument("--descriptor", default=_env("descriptor"), help="descriptor set path as Envoy sees it")
    parser.add_argument(
        "--descriptor-source", type=pathlib.Path, default=_env("descriptor-source"),
        help="descriptor set read at render time (default: --descriptor locally, gen/nerava.binpb for k8s)",
    )  # fmt: skip
    parser.add_argument(
        "--cors-origin", action="append", dest="cors_origins",
        help="allowed browser origin, exact match; repeatable (env: NERAVA_GATEWAY_CORS_ORIGINS, comma-separated)",
    )  # fmt: skip
    parser.add_argument("--otlp", default=_env("otlp"), help="HOST:PORT of an OTLP/gRPC collector (enables tracing)")
    parser.add_argument(
        "--trace-sampling-percent", type=float, default=_env("trace-sampling-percent"),
        help="percent of requests traced at the gateway (default 100; with --otlp)",
    )  # fmt: skip
    parser.add_argument("--rate-limit-rps", type=int, default=_env("rate-limit-rps"), help="default bucket per second")
    parser.add_argument("--rate-limit-burst", type=int, default=_env("rate-limit-burst"), help="default bucket size")
    parser.add_argument(
        "--per-client-rate-limit-per-second", type=int, default=_env("per-client-rate-limit-per-second")
    )
    parser.add_argument("--per-client-rate-limit-burst", type=int, default=_env("per-client-rate-limit-burst"))
    parser.add_argument("--jwt-issuer", default=_env("jwt-issuer"))
    parser.add_argument(
        "--jwt-audience", action="append", dest="jwt_audiences",
        help="accepted `aud`; repeatable (env: NERAVA_GATEWAY_JWT_AUDIENCES, comma-separated)",
    )  # fmt: skip
    parser.add_argument("--xff-trusted-hops", type=int, default=_env("xff-trusted-hops"))
    return parser


def _env_list(option: str) -> list[str] | None:
    value = _env(option)
    return [item.strip() for item in value.split(",") if item.strip()] if value is not None else None


def _bucket(per_second: int | None, burst: int | None, default: TokenBucket) -> TokenBucket | None:
    if per_second is None and burst is None:
        return None
    rate = per_second or default.tokens_per_fill
    return TokenBucket(max_tokens=burst or rate, tokens_per_fill=rate)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Settings given on the command line or in the environment; everything else keeps the target's default."""
    defaults = GatewaySettings()
    descriptor: str | None = args.descriptor
    if descriptor is not None and args.target == "local":
        # Taken relative to the current directory but written absolute: Envoy may be started elsewhere. The
        # Kubernetes path is the one inside the pod and is written as given.
        descriptor = str(pathlib.Path(descriptor).resolve())
    candidates: dict[str, Any] = {
        "listen": Endpoint.parse(args.listen) if args.listen else None,
        "admin": Endpoint.parse(args.admin) if args.admin else None,
        "descriptor_path": descriptor,
        "descriptor_source": args.descriptor_source.resolve() if args.descriptor_source else None,
        "cors_allowed_origins": _tuple(args.cors_origins or _env_list("cors-origins")),
        "otlp_collector": Endpoint.parse(args.otlp) if args.otlp else None,
        "trace_sampling_percent": args.trace_sampling_percent,
        "default_rate_limit": _bucket(args.rate_limit_rps, args.rate_limit_burst, defaults.default_rate_limit),
        "per_client_rate_limit": _bucket(
            args.per_client_rate_limit_per_second,
            args.per_client_rate_limit_burst,
            defaults.per_client_rate_limit,
        ),
        "jwt_issuer": args.jwt_issuer,
        "jwt_audiences": _tuple(args.jwt_audiences or _env_list("jwt-audiences")),
        "xff_num_trusted_hops": args.xff_trusted_hops,
    }
    return {name: value for name, value in candidates.items() if value is not None}


def _tuple(items: list[str] | None) -> tuple[str, ...] | None:
    return tuple(items) if items is not None else None


def settings_from_args(argv: Sequence[str] | None = None) -> tuple[GatewaySettings, pathlib.Path]:
    """Parses the command line (and NERAVA_GATEWAY_* variables) into settings and the output path."""
    args = _parser().parse_args(argv)
    overrides = _overrides(args)
    if args.target == "kubernetes":
        settings = GatewaySettings.kubernetes(namespace=args.namespace, service_port=args.service_port, **overrides)
    else:
        upstreams = _local_upstreams()
        for name in SERVICES:
            if value := getattr(args, name):
                upstreams[name] = Endpoint.parse(value)
        settings = GatewaySettings.local(upstreams=upstreams, **overrides)
    return settings, args.out


def main(argv: Sequence[str] | None = None) -> None:
    settings, out = settings_from_args(argv)
    write(settings, out)
    sys.stdout.write(f"wrote {out} ({settings.target}, listen {settings.listen}, admin {settings.admin})\n")


if __name__ == "__main__":
    main()
