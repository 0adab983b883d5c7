"""Per-RPC context shared by the interceptors, the servicers and the log formatter (contextvars)."""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Iterable


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who is calling, as established by the auth interceptor.

    A user caller has ``user_id`` (the public id from the JWT ``sub``) and ``roles`` from the token.
    A service caller (service-to-service token) has ``service`` set and the role ``service``.
    """

    user_id: str | None = None
    roles: frozenset[str] = frozenset()
    service: str | None = None
    # The user's token version when the access token was issued (claim ``tv``; services/common/revocation.py).
    token_version: int = 0

    @property
    def is_service(self) -> bool:
        return self.service is not None

    def has_any(self, roles: Iterable[str]) -> bool:
        return not self.roles.isdisjoint(roles)


ANONYMOUS = Caller()

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
caller_var: contextvars.ContextVar[Caller] = contextvars.ContextVar("caller", default=ANONYMOUS)
client_ip_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("client_ip", default=None)


def current_caller() -> Caller:
    return caller_var.get()
