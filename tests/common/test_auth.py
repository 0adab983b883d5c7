"""Caller verification: access tokens against a JWKS (with the verdict cache) and service tokens."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from services.common.auth import AccessTokenVerifier, ServiceTokens
from services.common.config import Secret
from services.common.errors import Unauthenticated
from tests.support.eventually import eventually

KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


def _jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "alg": "ES256", "use": "sig"})
    return jwk


def _token(key: ec.EllipticCurvePrivateKey, kid: str, ttl_s: int = 60, **claims: Any) -> str:
    now = int(time.time())
    body = {"sub": "u-1", "roles": ["driver"], "iss": "nerava", "aud": "nerava-api", "iat": now, "exp": now + ttl_s}
    body.update(claims)
    return jwt.encode(body, key, algorithm="ES256", headers={"kid": kid})


class Jwks:
    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.fetches = 0

    async def __call__(self) -> list[Mapping[str, Any]]:
        self.fetches += 1
        return list(self.keys)


async def test_a_valid_token_names_the_user_and_roles() -> None:
    verifier = AccessTokenVerifier(Jwks([_jwk(KEY, "k1")]), "nerava", "nerava-api")
    caller = await verifier.verify(_token(KEY, "k1", roles=["driver", "sponsor"]))
    assert caller.user_id == "u-1"
    assert caller.roles == frozenset({"driver", "sponsor"})


@pytest.mark.parametrize(
    "token",
    [
        _token(OTHER_KEY, "k1"),  # signed by someone else under our kid
        _token(KEY, "k1", iss="someone-else"),
        _token(KEY, "k1", aud="other-api"),
        _token(KEY, "k1", ttl_s=-5),  # expired
        _token(KEY, "k1", roles="admin"),  # roles must be a list
        "not-a-jwt",
    ],
)
async def test_bad_tokens_are_refused(token: str) -> None:
    verifier = AccessTokenVerifier(Jwks([_jwk(KEY, "k1")]), "nerava", "nerava-api")
    with pytest.raises(Unauthenticated):
        await verifier.verify(token)


async def test_a_remembered_token_is_refused_once_it_expires() -> None:
    verifier = AccessTokenVerifier(Jwks([_jwk(KEY, "k1")]), "nerava", "nerava-api")
    token = _token(KEY, "k1", ttl_s=1)
    assert (await verifier.verify(token)).user_id == "u-1"
    assert (await verifier.verify(token)).user_id == "u-1"

    # The verifier's clock only decides when a remembered verdict lapses; the signature check behind it reads the
    # token's `exp` against the real time (PyJWT), so the test waits for the real second to pass.
    async def refused() -> None:
        try:
            caller = await verifier.verify(token)
        except Unauthenticated:
            return
        raise AssertionError(f"an expired token is still accepted for {caller.user_id}")

    await eventually(refused, within=5)


async def test_unknown_key_ids_refetch_the_jwks_at_a_bounded_rate() -> None:
    jwks = Jwks([_jwk(KEY, "k1")])
    verifier = AccessTokenVerifier(jwks, "nerava", "nerava-api", min_refetch_interval_s=60)
    await verifier.verify(_token(KEY, "k1"))
    assert jwks.fetches == 1
    jwks.keys.append(_jwk(OTHER_KEY, "k2"))  # rotation published after our first fetch
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            await verifier.verify(_token(OTHER_KEY, "k2"))
    assert jwks.fetches == 1  # within the refetch interval a flood of unknown kids costs nothing
    fresh = AccessTokenVerifier(jwks, "nerava", "nerava-api", min_refetch_interval_s=0)
    assert (await fresh.verify(_token(OTHER_KEY, "k2"))).user_id == "u-1"


def test_service_tokens_identify_the_calling_service_and_are_reused() -> None:
    tokens = ServiceTokens(Secret("s" * 32), "sessions")
    token = tokens.mint()
    assert tokens.mint() == token
    caller = tokens.verify(token)
    assert caller.service == "sessions"
    assert caller.roles == frozenset({"service"})
    assert caller.user_id is None


def test_service_tokens_from_another_secret_or_user_tokens_are_refused() -> None:
    ours = ServiceTokens(Secret("s" * 32), "ledger")
    theirs = ServiceTokens(Secret("x" * 32), "ledger")
    with pytest.raises(Unauthenticated):
        ours.verify(theirs.mint())
    with pytest.raises(Unauthenticated):
        ours.verify(_token(KEY, "k1"))
