"""Caller identity: access tokens (ES256 JWT from accounts, checked against its JWKS) and
service-to-service tokens.

Envoy's jwt_authn already rejects bad tokens at the edge; every service verifies again because gRPC
callers inside the cluster do not pass through Envoy, and authorization must never depend on the path
a request took.

Service identity: a caller service signs a short-lived HS256 token with the deployment's SERVICE_TOKEN_SECRET
and sends it in the ``x-nerava-service-token`` metadata key. Envoy strips that key from every external
request, so only processes holding the secret can act as a service. The secret has no default anywhere (the
repository cannot mint a token): `make run` generates one per checkout under .run/, the tests one per run, and
Kubernetes reads it from the nerava-service-token Secret.

Rotation without downtime: a token names its key (``kid``, a digest of the secret), and a process accepts the
keys in SERVICE_TOKEN_ALSO_ACCEPTED besides its own. Roll out (1) ALSO_ACCEPTED=new, (2) SECRET=new with
ALSO_ACCEPTED=old, (3) SECRET=new alone: at every moment each replica's signing key is accepted by every other.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import jwt
from jwt.algorithms import ECAlgorithm

from services.common.config import SERVICE_TOKEN_HEADER, Secret
from services.common.context import Caller
from services.common.errors import Unauthenticated
from services.common.reasons import CommonReason

log = logging.getLogger(__name__)

SERVICE_AUDIENCE = "nerava-internal"
SERVICE_ROLE = "service"
_SERVICE_TOKEN_TTL_S = 300
_SERVICE_TOKEN_CACHE_SIZE = 1024


class ServiceTokens:
    """Mints and checks service identity tokens. A minted token is reused until a minute before it
    expires, so an outbound call costs no signing."""

    def __init__(self, secrets: Secret | Sequence[Secret], service: str) -> None:
        keys = (secrets,) if isinstance(secrets, Secret) else tuple(secrets)
        if not keys:
            raise ValueError("at least one service-token secret is needed")
        self.secret = keys[0]  # signs
        self._keys = {_key_id(key): key.value for key in keys}  # verify
        self._kid = _key_id(self.secret)
        self.service = service
        self._minted = ""
        self._minted_expires = 0.0
        self._verified: dict[str, tuple[Caller, float]] = {}

    def mint(self, now: float | None = None) -> str:
        issued = now if now is not None else time.time()
        if self._minted and issued < self._minted_expires - 60:
            return self._minted
        claims = {
            "sub": f"service:{self.service}",
            "aud": SERVICE_AUDIENCE,
            "iat": int(issued),
            "exp": int(issued) + _SERVICE_TOKEN_TTL_S,
        }
        self._minted = jwt.encode(claims, self.secret.value, algorithm="HS256", headers={"kid": self._kid})
        self._minted_expires = int(issued) + _SERVICE_TOKEN_TTL_S
        return self._minted

    def verify(self, token: str) -> Caller:
        """The calling service. A peer reuses its token for minutes, so verdicts are remembered until the
        token expires (a handful of peers: the cache stays tiny)."""
        remembered = self._verified.get(token)
        if remembered is not None and time.time() < remembered[1]:
            return remembered[0]
        try:
            key = self._keys.get(str(jwt.get_unverified_header(token).get("kid", "")))
            if key is None:
                raise Unauthenticated(
                    CommonReason.UNAUTHENTICATED, "service token signed with a key this service does not accept"
                )
            claims = jwt.decode(
                token,
                key,
                algorithms=["HS256"],
                audience=SERVICE_AUDIENCE,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(CommonReason.UNAUTHENTICATED, f"invalid service token: {exc}") from exc
        subject = str(claims.get("sub", ""))
        if not subject.startswith("service:"):
            raise Unauthenticated(CommonReason.UNAUTHENTICATED, "service token without a service subject")
        caller = Caller(service=subject.removeprefix("service:"), roles=frozenset({SERVICE_ROLE}))
        if len(self._verified) >= _SERVICE_TOKEN_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (caller, float(claims["exp"]))
        return caller


def _key_id(secret: Secret) -> str:
    """A public name for a secret: enough to pick the key, useless to guess it."""
    return hashlib.sha256(b"nerava-service-token:" + secret.value.encode()).hexdigest()[:16]


JwksFetcher = Callable[[], Awaitable[list[Mapping[str, Any]]]]


class AccessTokenVerifier:
    """Verifies access tokens against a JWKS, refetching when a token names an unknown key id.

    Refetches are rate limited so a flood of tokens with random ``kid`` values cannot hammer accounts.

    A verified token is remembered until it expires: an app sends the same token on every call (a poll
    a minute for an hour), and an ES256 check costs more than the rest of a cached read. Access tokens are
    stateless, so remembering a verdict until ``exp`` accepts exactly what re-verifying would.
    """

    def __init__(
        self,
        fetch_jwks: JwksFetcher,
        issuer: str,
        audience: str,
        *,
        min_refetch_interval_s: float = 10.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._verified: dict[str, tuple[Caller, float]] = {}
        self._cache_size = cache_size
        self._clock = clock
        self._fetch = fetch_jwks
        self._issuer = issuer
        self._audience = audience
        self._keys: dict[str, Any] = {}
        self._last_fetch = float("-inf")
        self._min_refetch = min_refetch_interval_s
        self._lock = asyncio.Lock()

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._last_fetch < self._min_refetch:
                return
            self._last_fetch = time.monotonic()
            try:
                jwks = await self._fetch()
            except Exception:  # the old keys stay usable while accounts is unreachable
                log.warning("JWKS fetch failed", exc_info=True)
                return
            self._keys = {str(k["kid"]): ECAlgorithm.from_jwk(json.dumps(dict(k))) for k in jwks}

    async def verify(self, token: str) -> Caller:
        remembered = self._verified.get(token)
        if remembered is not None:
            caller, expires = remembered
            if self._clock() < expires:
                return caller
            del self._verified[token]
        caller, expires = await self._verify_signature(token)
        if len(self._verified) >= self._cache_size:
            del self._verified[next(iter(self._verified))]  # oldest first: dicts keep insertion order
        self._verified[token] = (caller, expires)
        return caller

    async def _verify_signature(self, token: str) -> tuple[Caller, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated(CommonReason.UNAUTHENTICATED, "malformed access token") from exc
        kid = str(header.get("kid", ""))
        if kid not in self._keys:
            await self._refresh()
        key = self._keys.get(kid)
        if key is None:
            raise Unauthenticated(CommonReason.UNAUTHENTICATED, "access token signed by an unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["ES256"],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(CommonReason.UNAUTHENTICATED, f"invalid access token: {exc}") from exc
        roles = claims.get("roles", [])
        if not isinstance(roles, list):
            raise Unauthenticated(CommonReason.UNAUTHENTICATED, "access token roles claim is not a list")
        version = claims.get("tv", 0)
        if not isinstance(version, int):
            raise Unauthenticated(CommonReason.UNAUTHENTICATED, "access token version claim is not an integer")
        caller = Caller(user_id=str(claims["sub"]), roles=frozenset(str(r) for r in roles), token_version=version)
        return caller, float(claims["exp"])


# SERVICE_TOKEN_HEADER is declared with the other facts the gateway shares (services.common.config) and importable
# from here, beside the tokens it carries.
__all__ = [
    "SERVICE_AUDIENCE",
    "SERVICE_ROLE",
    "SERVICE_TOKEN_HEADER",
    "AccessTokenVerifier",
    "JwksFetcher",
    "ServiceTokens",
]
