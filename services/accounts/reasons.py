"""The accounts service's ErrorInfo reasons, as proto/nerava/accounts/v1/accounts.proto documents them (the rule:
services/common/reasons.py)."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    CANNOT_REMOVE_OWN_ADMIN = "CANNOT_REMOVE_OWN_ADMIN"
    INVALID_CODE = "INVALID_CODE"
    OTP_LOCKED = "OTP_LOCKED"
    OTP_PROVIDER_FAILED = "OTP_PROVIDER_FAILED"
    OTP_RATE_LIMITED = "OTP_RATE_LIMITED"
    REFRESH_TOKEN_INVALID = "REFRESH_TOKEN_INVALID"
    REFRESH_TOKEN_REUSED = "REFRESH_TOKEN_REUSED"
    USER_INACTIVE = "USER_INACTIVE"
    USER_NOT_FOUND = "USER_NOT_FOUND"
