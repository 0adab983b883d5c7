"""Checking the ID tokens Google Sign-In and Sign in with Apple give the apps (OpenID Connect).

A token is accepted only when it is signed (RS256) by a key the provider publishes in its JSON Web Key Set,
names the provider as issuer and one of this deployment's client ids as audience, and has not expired. The key
set is fetched over HTTP (httpx), kept for an hour, and fetched again at once when a token names a key id it
does not hold (the providers rotate keys), at most once a minute so forged key ids cannot hammer the provider.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import httpx
import jwt
from jwt.algorithms import RSAAlgorithm

GOOGLE_ISSUERS: Final = ("https://accounts.google.com", "accounts.google.com")
APPLE_ISSUERS: Final = ("https://appleid.apple.com",)
_KEYS_TTL_S: Final = 3600.0
_REFETCH_AFTER_S: Final = 60.0
# Clocks of phones and providers drift: an ID token a few seconds past `exp` is still the one just issued.
_LEEWAY_S: Final = 30


class IdTokenInvalid(Exception):
    """The token is not one this deployment accepts (why, in the message: for logs, never for the caller)."""


class IdentityProviderUnavailable(Exception):
    """The provider's key set could not be fetched."""


@dataclasses.dataclass(frozen=True)
class VerifiedIdentity:
    """What a checked ID token says about the person."""

    subject: str  # the provider's stable account id (`sub`)
    email: str | None
    email_verified: bool
    name: str


class IdTokenVerifier:
    def __init__(
        self,
        *,
        jwks_url: str,
        issuers: Sequence[str],
        audiences: Sequence[str],
        http: httpx.AsyncClient,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._jwks_url = jwks_url
        self._issuers = tuple(issuers)
        self._audiences = tuple(audiences)
        self._http = http
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")

    @property
    def configured(self) -> bool:
        """False when this deployment has no client id for the provider: sign-in with it is switched off."""
        return bool(self._audiences)

    async def verify(self, token: str) -> VerifiedIdentity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise IdTokenInvalid(f"not a JWT: {exc}") from exc
        if header.get("alg") != "RS256":
            raise IdTokenInvalid(f"algorithm {header.get('alg')!r} is not RS256")
        key = await self._key(str(header.get("kid", "")))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=list(self._audiences),
                issuer=list(self._issuers),
                # Expiry is checked below against the injectable clock.
                options={"require": ["iss", "aud", "sub", "exp", "iat"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise IdTokenInvalid(str(exc)) from exc
        if not isinstance(claims["exp"], int) or claims["exp"] + _LEEWAY_S <= self._clock():
            raise IdTokenInvalid("expired")
        email = claims.get("email")
        verified = claims.get("email_verified")
        return VerifiedIdentity(
            subject=str(claims["sub"]),
            email=email.strip().lower() if isinstance(email, str) and email.strip() else None,
            # Apple sends "true"/"false" strings, Google booleans.
            email_verified=verified is True or verified == "true",
            name=str(claims.get("name") or ""),
        )

    async def _key(self, kid: str) -> Any:
        now = time.monotonic()
        stale = now - self._fetched_at > _KEYS_TTL_S
        if stale or (kid not in self._keys and now - self._fetched_at > _REFETCH_AFTER_S):
            await self._fetch(now)
        key = self._keys.get(kid)
        if key is None:
            raise IdTokenInvalid(f"no published key {kid!r}")
        return key

    async def _fetch(self, now: float) -> None:
        try:
            reply = await self._http.get(self._jwks_url)
            reply.raise_for_status()
            published = reply.json()["keys"]
            keys = {str(k["kid"]): RSAAlgorithm.from_jwk(json.dumps(k)) for k in published if k.get("kty") == "RSA"}
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            if self._keys and now - self._fetched_at <= _KEYS_TTL_S * 24:
                return  # keep verifying with the keys we have through a provider outage
            raise IdentityProviderUnavailable(f"key set {self._jwks_url} unavailable: {exc!r}") from exc
        self._keys, self._fetched_at = keys, now
