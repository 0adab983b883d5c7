"""Typed configuration read once from the environment at process start.

Each service builds one frozen settings object in its ``__main__``; nothing else reads ``os.environ``.
Secrets are wrapped in :class:`Secret` so they never appear in a repr or a log line.

Development defaults: a secret read with a non-empty default (``env.secret("PREVIEW_SIGNING_KEY", "dev-…")``)
has a value anyone can read in this repository. A process uses such a default — or accepts it when it is set
explicitly — only in the explicit development mode (``NERAVA_DEV_MODE=true``, which `make run` and the tests
set); anywhere else it refuses to start and names the variable to set. An empty default means "feature off"
(e.g. no Tesla telemetry secret: every push refused) and is allowed everywhere.
"""

from __future__ import annotations

import builtins
import dataclasses
import os
import secrets
from collections.abc import Mapping

# The one place that names the five services and their ports: the services, the gateway's renderer (whose image
# copies this module for it: it imports nothing outside the standard library), `make run`, the Kubernetes checks and
# the tests all read them from here.

# Default gRPC ports of the five services on one machine (README, `make run`); every one can be overridden.
DEFAULT_PORTS: Mapping[str, int] = {
    "accounts": 50051,
    "sessions": 50052,
    "incentives": 50053,
    "ledger": 50054,
    "merchants": 50055,
}
SERVICE_NAMES: tuple[str, ...] = tuple(DEFAULT_PORTS)
# The gRPC service each one serves, from its contract proto/nerava/<name>/v1 (tests/test_contracts.py pins it).
GRPC_SERVICES: Mapping[str, str] = {name: f"nerava.{name}.v1.{name.capitalize()}Service" for name in SERVICE_NAMES}
# In Kubernetes each service has a Service of its own, so all of them listen on this one port.
KUBERNETES_GRPC_PORT = 50051
# The metadata key of the service token (services/common/auth.py); the gateway removes it from every request.
SERVICE_TOKEN_HEADER = "x-nerava-service-token"
# The client address Envoy resolved (its remote address after the deployment's trusted hops), set by the gateway
# on every request it forwards and overwritten when a client sends it; the services key per-client limits on it.
CLIENT_ADDRESS_HEADER = "x-nerava-client-address"
# The gRPC status of an answer, repeated by the services in a header of their own (the transcoder drops
# grpc-status when it turns an error into JSON): the gateway's access log records the real code from it.
GRPC_STATUS_HEADER = "x-nerava-grpc-status"

# The switch that allows development defaults for secrets (see the module docstring).
DEV_MODE_VARIABLE = "NERAVA_DEV_MODE"
# Service-token secrets are never defaulted, not even in development mode, and must be at least this long.
SERVICE_TOKEN_MIN_LENGTH = 32


@dataclasses.dataclass(frozen=True)
class Secret:
    """A string that must not leak into logs or reprs."""

    value: str

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


class ConfigError(ValueError):
    """The environment does not describe a runnable configuration."""


class Env:
    """Typed reads from a mapping (``os.environ`` by default), with the variable named in every error."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    @classmethod
    def development(cls) -> Env:
        """An empty environment in development mode: the development defaults, e.g. the key the demo seed and
        the test mesh encrypt stored vehicle tokens with. Its service-token secret is a throwaway: settings read
        this way are for their other values, never to call a peer."""
        return cls({DEV_MODE_VARIABLE: "true", "SERVICE_TOKEN_SECRET": secrets.token_urlsafe(32)})

    @property
    def dev_mode(self) -> builtins.bool:
        """True only when NERAVA_DEV_MODE says so: development defaults of secrets are then allowed."""
        return self.bool(DEV_MODE_VARIABLE, False)

    # Most methods are named after the type they return, shadowing the builtins here: annotations spell them out.
    def str(self, name: builtins.str, default: builtins.str | None = None) -> builtins.str:
        value = self._environ.get(name)
        if value is None or value == "":
            if default is None:
                raise ConfigError(f"{name} must be set")
            return default
        return value

    def optional(self, name: builtins.str) -> builtins.str | None:
        return self._environ.get(name) or None

    def int(self, name: builtins.str, default: builtins.int) -> builtins.int:
        raw = self._environ.get(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError as exc:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc

    def float(self, name: builtins.str, default: builtins.float) -> builtins.float:
        raw = self._environ.get(name)
        if raw is None or raw == "":
            return default
        try:
            return float(raw)
        except ValueError as exc:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from exc

    def bool(self, name: builtins.str, default: builtins.bool) -> builtins.bool:
        raw = self._environ.get(name)
        if raw is None or raw == "":
            return default
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")

    def secret(self, name: builtins.str, default: builtins.str | None = None) -> Secret:
        """A secret; a non-empty ``default`` is a development default, refused outside development mode both
        when the variable is unset and when it is set to that same public value."""
        value = self._environ.get(name) or None
        if default:
            if (value is None or value == default) and not self.dev_mode:
                raise ConfigError(
                    f"{name} must be set to a secret of this deployment: its default is public and only "
                    f"allowed with {DEV_MODE_VARIABLE}=true (make run and the tests)"
                )
            return Secret(value or default)
        return Secret(self.str(name, default))

    def service_token_secrets(self) -> tuple[Secret, ...]:
        """SERVICE_TOKEN_SECRET (signs and verifies) then SERVICE_TOKEN_ALSO_ACCEPTED (comma-separated, verify
        only: the other key during a rotation). No default anywhere: `make run` generates one per checkout,
        the tests one per run, Kubernetes reads it from the nerava-service-token Secret."""
        values = (self.str("SERVICE_TOKEN_SECRET"), *self.list("SERVICE_TOKEN_ALSO_ACCEPTED"))
        for secret in values:
            if len(secret) < SERVICE_TOKEN_MIN_LENGTH:
                raise ConfigError(
                    f"service-token secrets must be at least {SERVICE_TOKEN_MIN_LENGTH} characters "
                    "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
                )
        return tuple(Secret(secret) for secret in values)

    def list(self, name: builtins.str, default: tuple[builtins.str, ...] = ()) -> tuple[builtins.str, ...]:
        raw = self._environ.get(name)
        if raw is None or raw == "":
            return default
        return tuple(part.strip() for part in raw.split(",") if part.strip())


@dataclasses.dataclass(frozen=True)
class RuntimeSettings:
    """What every service process needs, whatever its domain."""

    service: str
    host: str
    port: int
    database_url: Secret
    redis_url: Secret
    # Where each peer service listens (host:port), for the outbound channels.
    peers: Mapping[str, str]
    metrics_port: int  # Prometheus /metrics; 0 picks a free port
    log_level: str
    # Service-to-service identity tokens (services/common/auth.py): the first secret signs, every one verifies.
    service_token_secrets: tuple[Secret, ...]
    jwt_issuer: str
    jwt_audience: str
    # Lifetime of access tokens (accounts issues them); the others keep token revocations this long.
    access_token_ttl_s: int
    otlp_endpoint: str | None  # host:port of an OTLP/gRPC collector; None disables export
    drain_seconds: float  # how long to keep serving after SIGTERM while load balancers notice NOT_SERVING
    stop_grace_seconds: float  # how long in-flight RPCs may finish once the server stops accepting
    max_connection_age_seconds: int  # bounds HTTP/2 connection life so clients rebalance onto new replicas
    # The deployment's environment (development, staging, production): whose feature-flag values apply.
    environment: str = "development"

    @classmethod
    def from_env(cls, service: str, env: Env | None = None) -> RuntimeSettings:
        env = env or Env()
        upper = service.upper()
        peers = {name: env.str(f"{name.upper()}_ADDR", f"127.0.0.1:{port}") for name, port in DEFAULT_PORTS.items()}
        return cls(
            service=service,
            host=env.str(f"{upper}_HOST", env.str("GRPC_HOST", "127.0.0.1")),
            port=env.int(f"{upper}_PORT", DEFAULT_PORTS[service]),
            # Kept out of reprs like secrets, but their local defaults hold no credential: not development secrets.
            database_url=Secret(
                env.str(f"{upper}_DATABASE_URL", env.str("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/nerava"))
            ),
            redis_url=Secret(env.str("REDIS_URL", "redis://127.0.0.1:6379/0")),
            peers=peers,
            metrics_port=env.int(f"{upper}_METRICS_PORT", 0),
            log_level=env.str("LOG_LEVEL", "INFO"),
            service_token_secrets=env.service_token_secrets(),
            jwt_issuer=env.str("JWT_ISSUER", "nerava"),
            jwt_audience=env.str("JWT_AUDIENCE", "nerava-api"),
            access_token_ttl_s=env.int("ACCESS_TOKEN_TTL_S", 3600),
            otlp_endpoint=env.optional("OTLP_ENDPOINT"),
            drain_seconds=env.float("DRAIN_SECONDS", 0.0),
            stop_grace_seconds=env.float("STOP_GRACE_SECONDS", 10.0),
            max_connection_age_seconds=env.int("GRPC_MAX_CONNECTION_AGE_SECONDS", 300),
            environment=env.str("NERAVA_ENVIRONMENT", "development"),
        )
