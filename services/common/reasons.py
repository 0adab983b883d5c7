"""ErrorInfo reasons, declared once per service: the reasons the shared runtime gives in every service (authentication,
authorization, validation, the database) are CommonReason here; each service's own are the Reason of its
services/<name>/reasons.py. The "Errors carry" comment of each service's proto documents both, with status and meaning.
tests/test_error_reasons.py checks each registry against its proto both ways, and that every reason the code gives
(a DomainError's reason, a key of a reason → DomainError table, the ledger's PL/pgSQL refusals) is registered."""

from __future__ import annotations

from enum import StrEnum


class CommonReason(StrEnum):
    UNAUTHENTICATED = "UNAUTHENTICATED"
    TOKEN_REVOKED = "TOKEN_REVOKED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
