"""The ID-token check against a provider's published keys (services/accounts/adapters/id_tokens.py), with the
fake provider serving its JWKS over real HTTP: which check refuses which token, and when the keys are fetched."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import httpx
import jwt
import pytest

from fakes.identity_providers import APPLE_ISSUER, GOOGLE_ISSUER, FakeIdentityProvider
from services.accounts.adapters.id_tokens import (
    GOOGLE_ISSUERS,
    IdentityProviderUnavailable,
    IdTokenInvalid,
    IdTokenVerifier,
)
from services.accounts.sign_in import verified_identity
from services.common.errors import FailedPrecondition

CLIENT = "app.test"


@pytest.fixture
async def provider() -> AsyncIterator[FakeIdentityProvider]:
    async with FakeIdentityProvider(GOOGLE_ISSUER) as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def _verifier(provider: FakeIdentityProvider, http: httpx.AsyncClient, now: float | None = None) -> IdTokenVerifier:
    return IdTokenVerifier(
        jwks_url=provider.jwks_url,
        issuers=GOOGLE_ISSUERS,
        audiences=(CLIENT,),
        http=http,
        clock=time.time if now is None else lambda: now,
    )


async def test_a_good_token_says_who_signed_in(provider: FakeIdentityProvider, http: httpx.AsyncClient) -> None:
    token = provider.mint(audience=CLIENT, subject="1234", email="Ada@Example.com", name="Ada")
    identity = await _verifier(provider, http).verify(token)
    assert (identity.subject, identity.email, identity.email_verified, identity.name) == (
        "1234",
        "ada@example.com",
        True,
        "Ada",
    )


@pytest.mark.parametrize(
    ("forge", "why"),
    [
        (lambda p: p.mint_with_foreign_key(audience=CLIENT), "Signature verification failed"),
        (lambda p: p.mint(audience="another-app"), "(?i)audience"),
        (lambda p: p.mint(audience=CLIENT, issuer=APPLE_ISSUER), "(?i)issuer"),
        (lambda p: p.mint(audience=CLIENT, expires_in=-60), "expired"),
    ],
)
async def test_each_check_refuses_its_token(
    provider: FakeIdentityProvider, http: httpx.AsyncClient, forge: Callable[[FakeIdentityProvider], str], why: str
) -> None:
    token = forge(provider)
    with pytest.raises(IdTokenInvalid, match=why):
        await _verifier(provider, http).verify(token)


async def test_expiry_is_read_on_the_injected_clock(provider: FakeIdentityProvider, http: httpx.AsyncClient) -> None:
    token = provider.mint(audience=CLIENT, expires_in=3600)
    claims = jwt.decode(token, options={"verify_signature": False})
    await _verifier(provider, http, now=claims["exp"]).verify(token)  # within the 30 s leeway
    with pytest.raises(IdTokenInvalid, match="expired"):
        await _verifier(provider, http, now=claims["exp"] + 31).verify(token)


async def test_an_unsigned_token_is_refused(provider: FakeIdentityProvider, http: httpx.AsyncClient) -> None:
    unsigned = jwt.encode(provider.claims(audience=CLIENT), key="", algorithm="none")
    with pytest.raises(IdTokenInvalid, match="RS256"):
        await _verifier(provider, http).verify(unsigned)


async def test_keys_are_fetched_once_and_an_outage_before_any_fetch_is_unavailable(
    provider: FakeIdentityProvider, http: httpx.AsyncClient
) -> None:
    verifier = _verifier(provider, http)
    for _ in range(3):
        await verifier.verify(provider.mint(audience=CLIENT))
    assert provider.jwks_requests == 1
    down = IdTokenVerifier(jwks_url="http://127.0.0.1:9/keys", issuers=GOOGLE_ISSUERS, audiences=(CLIENT,), http=http)
    with pytest.raises(IdentityProviderUnavailable):
        await down.verify(provider.mint(audience=CLIENT))


async def test_a_provider_without_client_ids_is_switched_off(
    provider: FakeIdentityProvider, http: httpx.AsyncClient
) -> None:
    off = IdTokenVerifier(jwks_url=provider.jwks_url, issuers=GOOGLE_ISSUERS, audiences=(), http=http)
    with pytest.raises(FailedPrecondition) as refused:
        await verified_identity(off, provider.mint(audience=CLIENT), need_email=False)
    assert refused.value.reason == "SIGN_IN_NOT_CONFIGURED"
    assert provider.jwks_requests == 0  # not even the key set is fetched
