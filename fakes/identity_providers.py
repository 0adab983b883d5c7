"""A local OpenID provider that stands in for Google's or Apple's sign-in: it publishes its signing keys as a
JSON Web Key Set where the real one does (Google: /oauth2/v3/certs, Apple: /auth/keys) and the discovery document
(/.well-known/openid-configuration), and mints RS256 ID tokens with the claims those providers put in theirs.

The accounts service fetches the key set over real HTTP and verifies tokens exactly as it would Google's or
Apple's; only the URL differs. Tests mint tokens in-process (`mint`, and `mint_with_foreign_key` for a forged
signature); under `make run` anyone can ask the running fake for one:

  python -m fakes.identity_providers mint --url http://127.0.0.1:PORT --audience CLIENT_ID --email a@b.example

Only this fake serves /_fake/*; it is the one way to get a token it signed, the same as signing in with a
Google or Apple account would give.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sys
import time
from collections.abc import Mapping
from typing import Any, Final

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from fakes.http1 import Answer, LoopbackServer, Request

GOOGLE_ISSUER: Final = "https://accounts.google.com"
APPLE_ISSUER: Final = "https://appleid.apple.com"
# Where each provider publishes its keys; the fake answers on both so either URL shape works against it.
JWKS_PATHS: Final = frozenset({"/oauth2/v3/certs", "/auth/keys"})
DEFAULT_LIFETIME_S: Final = 3600

_JSON = {"content-type": "application/json"}


def _json(status: int, body: object) -> Answer:
    return status, _JSON, json.dumps(body).encode()


class _SigningKey:
    def __init__(self) -> None:
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(10)

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def sign(self, claims: Mapping[str, object]) -> str:
        return jwt.encode(dict(claims), self.private, algorithm="RS256", headers={"kid": self.kid})


class FakeIdentityProvider(LoopbackServer):
    """Google's or Apple's sign-in keys and tokens, on an ephemeral loopback port (see the module docstring)."""

    def __init__(self, issuer: str = GOOGLE_ISSUER, *, port: int = 0) -> None:
        super().__init__(port)
        self.issuer = issuer
        self._key = _SigningKey()
        self.jwks_requests = 0

    async def __aenter__(self) -> FakeIdentityProvider:
        await super().__aenter__()
        return self

    @property
    def jwks_url(self) -> str:
        return self.base_url + ("/auth/keys" if self.issuer == APPLE_ISSUER else "/oauth2/v3/certs")

    def claims(
        self,
        *,
        audience: str,
        subject: str | None = None,
        email: str | None = None,
        email_verified: bool = True,
        expires_in: int = DEFAULT_LIFETIME_S,
        name: str | None = None,
        hosted_domain: str | None = None,
        issuer: str | None = None,
    ) -> dict[str, object]:
        """The claims Google and Apple put in an ID token (Apple sends email_verified as a string); `issuer`
        overrides the provider's own, for a token that claims to come from someone else."""
        now = int(time.time())
        claims: dict[str, object] = {
            "iss": issuer or self.issuer,
            "aud": audience,
            "sub": subject or str(secrets.randbelow(10**20)),
            "iat": now,
            "exp": now + expires_in,
        }
        if email is not None:
            claims["email"] = email
            claims["email_verified"] = (
                ("true" if email_verified else "false") if self.issuer == APPLE_ISSUER else email_verified
            )
        if name is not None and self.issuer != APPLE_ISSUER:
            claims["name"] = name  # Apple never puts the name in the token
        if hosted_domain is not None:
            claims["hd"] = hosted_domain
        return claims

    def mint(self, **claims: Any) -> str:
        """An ID token signed with the published key; keyword arguments as `claims`."""
        return self._key.sign(self.claims(**claims))

    def mint_with_foreign_key(self, **claims: Any) -> str:
        """The same token signed by a key the provider never published, under the published key's id: a forgery."""
        forger = _SigningKey()
        forger.kid = self._key.kid
        return forger.sign(self.claims(**claims))

    async def answer(self, request: Request) -> Answer:
        if request.method == "GET" and request.path in JWKS_PATHS:
            self.jwks_requests += 1
            return _json(200, {"keys": [self._key.public_jwk()]})
        if request.method == "GET" and request.path == "/.well-known/openid-configuration":
            return _json(
                200,
                {
                    "issuer": self.issuer,
                    "jwks_uri": self.jwks_url,
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "subject_types_supported": ["public" if self.issuer == GOOGLE_ISSUER else "pairwise"],
                },
            )
        if request.method == "POST" and request.path == "/_fake/id-tokens":
            try:
                asked = json.loads(request.body or b"{}")
                token = self.mint(**asked)
            except (ValueError, TypeError) as exc:
                return _json(400, {"error": str(exc)})
            return _json(200, {"id_token": token})
        return _json(404, {"error": "not_found"})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fakes.identity_providers", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run a fake Google or Apple sign-in")
    serve.add_argument("--port", type=int, default=0, help="0: any free port (the URL is printed)")
    serve.add_argument("--issuer", default=GOOGLE_ISSUER, help=f"{GOOGLE_ISSUER} or {APPLE_ISSUER}")
    mint = commands.add_parser("mint", help="ask a running fake for an ID token")
    mint.add_argument("--url", required=True)
    mint.add_argument("--audience", required=True, help="the app's client id")
    mint.add_argument("--email")
    mint.add_argument("--subject")
    mint.add_argument("--name")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "mint":
        asked = {"audience": args.audience, "email": args.email, "subject": args.subject, "name": args.name}
        reply = httpx.post(f"{args.url}/_fake/id-tokens", json={k: v for k, v in asked.items() if v is not None})
        print(reply.json().get("id_token") or reply.text)
        sys.exit(0 if reply.status_code == 200 else 1)

    async def serve() -> None:
        async with FakeIdentityProvider(args.issuer, port=args.port) as fake:
            print(json.dumps({"url": fake.base_url, "issuer": fake.issuer, "jwks_url": fake.jwks_url}), flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
