"""The access-token signing keys (ES256): created once, stored in the accounts schema, shared by replicas.

The private key is stored as encrypted PKCS#8 (passphrase from configuration), the public half as a JWK.
Every replica signs with the newest unretired key; the JWKS lists every unretired key, so tokens signed
before a rotation stay valid until they expire. Rotation = insert a new key, retire the old one after the
access-token lifetime.
"""

from __future__ import annotations

import json
import secrets
import zlib
from typing import Any

import jwt
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from sqlalchemy.ext.asyncio import AsyncEngine

from services.accounts.store import signing_keys
from services.common.config import Secret

_CREATE_LOCK = zlib.crc32(b"nerava-accounts-signing-key")


class KeyRing:
    def __init__(self, passphrase: Secret) -> None:
        self._passphrase = passphrase.value.encode()
        self._signing_kid = ""
        self._signing_key: ec.EllipticCurvePrivateKey | None = None
        self._public_jwks: list[dict[str, Any]] = []

    async def load(self, engine: AsyncEngine) -> None:
        """Loads the keys, creating the first one if there is none (once, under an advisory lock)."""
        async with engine.begin() as conn:
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _CREATE_LOCK})
            rows = (
                await conn.execute(
                    sa.select(signing_keys)
                    .where(signing_keys.c.retired_at.is_(None))
                    .order_by(signing_keys.c.created_at)
                )
            ).all()
            if not rows:
                await conn.execute(sa.insert(signing_keys).values(**self._new_key()))
                rows = (await conn.execute(sa.select(signing_keys).where(signing_keys.c.retired_at.is_(None)))).all()
        newest = rows[-1]
        private = serialization.load_pem_private_key(newest.private_key_pem.encode(), password=self._passphrase)
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        self._signing_key = private
        self._signing_kid = newest.kid
        self._public_jwks = [dict(row.public_jwk) for row in rows]

    def _new_key(self) -> dict[str, Any]:
        private = ec.generate_private_key(ec.SECP256R1())
        kid = secrets.token_hex(8)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self._passphrase),
        ).decode()
        jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(private.public_key()))
        jwk.update({"kid": kid, "use": "sig", "alg": "ES256"})
        return {"kid": kid, "private_key_pem": pem, "public_jwk": jwk}

    def sign(self, claims: dict[str, object]) -> str:
        assert self._signing_key is not None, "KeyRing.load() first"
        return jwt.encode(claims, self._signing_key, algorithm="ES256", headers={"kid": self._signing_kid})

    def jwks(self) -> list[dict[str, Any]]:
        return list(self._public_jwks)
