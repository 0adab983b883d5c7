"""Signed-in people for tests: a user with roles and a real access token from the accounts service."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from tests.support.rpc import bearer


@dataclasses.dataclass
class Person:
    user_id: str
    token: str

    @property
    def auth(self) -> tuple[tuple[str, str], ...]:
        """gRPC metadata carrying the bearer token."""
        return bearer(self.token)

    @property
    def headers(self) -> dict[str, str]:
        """REST headers carrying the bearer token."""
        return {"Authorization": f"Bearer {self.token}"}


NewPerson = Callable[..., Awaitable[Person]]
