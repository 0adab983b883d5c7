"""Pure rules of accounts: roles, login-code limits, token lifetimes and claims. No I/O, no clock reads."""

from __future__ import annotations

import dataclasses
import hashlib
import secrets

# Role names as they appear in the JWT `roles` claim and in the user_roles table.
DRIVER = "driver"
SPONSOR = "sponsor"
MERCHANT = "merchant"
ADMIN = "admin"
ADMIN_READONLY = "admin_readonly"
READ_ADMINS = frozenset({ADMIN, ADMIN_READONLY})


@dataclasses.dataclass(frozen=True)
class OtpPolicy:
    """Limits on one-time login codes (DOMAIN: 6 digits, 10 min, 5 attempts; per phone and per IP)."""

    starts_per_identity: int = 5  # codes one phone/email may request per window
    starts_per_ip: int = 60  # codes one client IP may request per window
    start_window_s: int = 600
    max_wrong_codes: int = 5  # the next wrong code after these locks the identity
    wrong_code_window_s: int = 600
    lockout_s: int = 900


@dataclasses.dataclass(frozen=True)
class TokenPolicy:
    access_ttl_s: int = 3600  # DOMAIN default 60 min
    refresh_ttl_s: int = 30 * 24 * 3600  # 30 days


def new_refresh_token() -> str:
    """256 bits from the OS CSPRNG, URL-safe."""
    return secrets.token_urlsafe(32)


def refresh_token_hash(token: str) -> bytes:
    """SHA-256 of the token: the token is 256 random bits, so a fast hash is safe (nothing to brute-force)
    and gives an exact-match indexed lookup — no scan over every stored token (🐞 of the first system)."""
    return hashlib.sha256(token.encode()).digest()


def access_claims(
    user_public_id: str,
    roles: list[str],
    *,
    issuer: str,
    audience: str,
    now: int,
    ttl_s: int,
    token_version: int = 0,
) -> dict[str, object]:
    return {
        "sub": user_public_id,
        "roles": sorted(roles),
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + ttl_s,
        # The user's token version (services/common/revocation.py): bumped by "log out everywhere" and role
        # changes, which makes every older token invalid within seconds.
        "tv": token_version,
    }


def normalize_email(email: str) -> str:
    return email.strip().lower()
