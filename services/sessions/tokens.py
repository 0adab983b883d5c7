"""Vehicle-API tokens encrypted at rest: AES-256-GCM with a key from configuration, bound to the connection they
belong to (the associated data), so that a token copied onto another driver's row does not decrypt.

Stored form: b"v1" + key id (1 byte) + 12-byte random nonce + ciphertext with its 16-byte tag. The key id lets
a new key be introduced while rows written under the old one are still readable (rotation re-encrypts them).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"v1"
_NONCE_BYTES = 12


class TokenDecryptionError(Exception):
    """The stored token was not written with one of our keys for this connection (or was altered)."""


class TokenCipher:
    def __init__(self, keys: Mapping[int, bytes], current: int) -> None:
        if current not in keys:
            raise ValueError("the current key id has no key")
        for key_id, key in keys.items():
            if not 0 <= key_id <= 255 or len(key) != 32:
                raise ValueError("token keys are 32 bytes, with ids 0-255")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._current = current

    @classmethod
    def from_config(cls, value: str) -> TokenCipher:
        """`id:base64key[,id:base64key…]`, the first one current (e.g. "2:…,1:…" while rotating from 1 to 2)."""
        keys: dict[int, bytes] = {}
        order: list[int] = []
        for part in value.split(","):
            key_id, _, encoded = part.strip().partition(":")
            keys[int(key_id)] = base64.b64decode(encoded)
            order.append(int(key_id))
        if not order:
            raise ValueError("no token key configured")
        return cls(keys, order[0])

    def encrypt(self, token: str, bound_to: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self._current].encrypt(nonce, token.encode(), bound_to.encode())
        return _VERSION + bytes([self._current]) + nonce + sealed

    def decrypt(self, stored: bytes, bound_to: str) -> str:
        if len(stored) < 3 + _NONCE_BYTES + 16 or stored[:2] != _VERSION:
            raise TokenDecryptionError("not a stored token")
        key = self._keys.get(stored[2])
        if key is None:
            raise TokenDecryptionError(f"no key with id {stored[2]}")
        nonce, sealed = stored[3 : 3 + _NONCE_BYTES], stored[3 + _NONCE_BYTES :]
        try:
            return key.decrypt(nonce, sealed, bound_to.encode()).decode()
        except InvalidTag as exc:
            raise TokenDecryptionError("the token does not decrypt for this connection") from exc

    def needs_rotation(self, stored: bytes) -> bool:
        return len(stored) > 2 and stored[2] != self._current
