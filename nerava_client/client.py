"""The typed client: one grpcio channel per service, the caller's credential on every call, UNAVAILABLE
retried with back-off, failures raised as :mod:`nerava_client.errors` exceptions.

Credentials: a person's access token (``Authorization: Bearer``) — what every admin action takes, so the
action is recorded under that person — or a service identity minted from the deployment's service-token
secret, for internal RPCs an operator runs by hand. Never both.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import grpc

from nerava_client._proto.nerava.accounts.v1 import AccountsServiceStub
from nerava_client._proto.nerava.incentives.v1 import IncentivesServiceStub
from nerava_client._proto.nerava.ledger.v1 import LedgerServiceStub
from nerava_client._proto.nerava.merchants.v1 import MerchantsServiceStub
from nerava_client._proto.nerava.sessions.v1 import SessionsServiceStub
from nerava_client.errors import from_rpc_error
from services.common.auth import SERVICE_TOKEN_HEADER, ServiceTokens
from services.common.clients import service_config
from services.common.config import DEFAULT_PORTS, Secret

# The identity an operator's service-token calls carry (services log and audit it as the caller).
OPS_SERVICE_NAME = "ops"


def default_targets(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Where each service listens: ``<SERVICE>_ADDR`` when set, else the local default port."""
    return {name: environ.get(f"{name.upper()}_ADDR", f"127.0.0.1:{port}") for name, port in DEFAULT_PORTS.items()}


class _CallInterceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc,type-arg]
    """Adds the credential and a request id to every call and turns a failure into a NeravaError."""

    def __init__(self, credential: Callable[[], tuple[str, str]] | None) -> None:
        self._credential = credential

    def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Any], details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        metadata: list[tuple[str, str | bytes]] = list(details.metadata or ())
        if self._credential is not None:
            metadata.append(self._credential())
        if not any(key == "x-request-id" for key, _ in metadata):
            metadata.append(("x-request-id", str(uuid.uuid4())))
        outcome = continuation(_Details(details, metadata), request)
        error = outcome.exception()
        if error is not None:
            raise from_rpc_error(error) from None
        return outcome


class _Details(grpc.ClientCallDetails):  # type: ignore[misc]
    def __init__(self, details: grpc.ClientCallDetails, metadata: list[tuple[str, str | bytes]]) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = tuple(metadata)
        self.credentials = details.credentials
        self.wait_for_ready = details.wait_for_ready
        self.compression = details.compression


class Client:
    """Stubs for the five services, e.g. ``client.ledger.get_wallet_balance(GetWalletBalanceRequest(...))``.

    ``token`` is a person's access token; ``service_secret`` the deployment's service-token secret. Use it
    as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        service_secret: str | None = None,
        targets: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
        max_attempts: int = 4,
    ) -> None:
        if token and service_secret:
            raise ValueError("give a person's token or the service secret, not both")
        credential: Callable[[], tuple[str, str]] | None = None
        if token:
            bearer = ("authorization", f"Bearer {token}")
            credential = lambda: bearer  # noqa: E731
        elif service_secret:
            minter = ServiceTokens(Secret(service_secret), OPS_SERVICE_NAME)
            credential = lambda: (SERVICE_TOKEN_HEADER, minter.mint())  # noqa: E731
        addresses = {**default_targets(), **(targets or {})}
        interceptor = _CallInterceptor(credential)
        self._channels: list[grpc.Channel] = []

        def channel(service: str) -> grpc.Channel:
            raw = grpc.insecure_channel(
                addresses[service],
                options=[
                    ("grpc.service_config", service_config(timeout_s, max_attempts)),
                    ("grpc.enable_retries", 1),
                ],
            )
            self._channels.append(raw)
            return grpc.intercept_channel(raw, interceptor)

        self.accounts = AccountsServiceStub(channel("accounts"))
        self.sessions = SessionsServiceStub(channel("sessions"))
        self.incentives = IncentivesServiceStub(channel("incentives"))
        self.ledger = LedgerServiceStub(channel("ledger"))
        self.merchants = MerchantsServiceStub(channel("merchants"))

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
