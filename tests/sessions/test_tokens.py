"""Vehicle tokens at rest: they decrypt only for their own connection and only with a known key."""

from __future__ import annotations

import base64
import os

import pytest

from services.sessions.tokens import TokenCipher, TokenDecryptionError


def key() -> bytes:
    return os.urandom(32)


def test_a_token_round_trips_and_is_not_stored_in_clear() -> None:
    cipher = TokenCipher({1: key()}, 1)
    stored = cipher.encrypt("tesla-refresh-token-123", "connection-a")
    assert b"tesla-refresh-token-123" not in stored
    assert cipher.decrypt(stored, "connection-a") == "tesla-refresh-token-123"
    assert cipher.encrypt("same", "connection-a") != cipher.encrypt("same", "connection-a")  # fresh nonce


def test_a_token_does_not_decrypt_for_another_connection_or_after_tampering() -> None:
    cipher = TokenCipher({1: key()}, 1)
    stored = cipher.encrypt("secret", "connection-a")
    with pytest.raises(TokenDecryptionError):
        cipher.decrypt(stored, "connection-b")
    tampered = stored[:-1] + bytes([stored[-1] ^ 1])
    with pytest.raises(TokenDecryptionError):
        cipher.decrypt(tampered, "connection-a")
    with pytest.raises(TokenDecryptionError):
        cipher.decrypt(b"plain text", "connection-a")


def test_keys_rotate_old_rows_stay_readable() -> None:
    old, new = key(), key()
    before = TokenCipher({1: old}, 1)
    stored = before.encrypt("secret", "c")
    config = f"2:{base64.b64encode(new).decode()},1:{base64.b64encode(old).decode()}"
    during = TokenCipher.from_config(config)
    assert during.decrypt(stored, "c") == "secret"
    assert during.needs_rotation(stored)
    assert not during.needs_rotation(during.encrypt("secret", "c"))
    with pytest.raises(TokenDecryptionError):
        TokenCipher({2: new}, 2).decrypt(stored, "c")  # the old key retired: unreadable, not wrong


def test_keys_must_be_32_bytes() -> None:
    with pytest.raises(ValueError):
        TokenCipher({1: b"short"}, 1)
