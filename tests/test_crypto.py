"""Verification tokens at rest: encrypted, and readable after a key rotation."""

from __future__ import annotations

import pytest

from flask_async_events.crypto import SecretBox


def test_tokens_are_encrypted_and_keys_rotate() -> None:
    old = SecretBox(["derive:old"])
    stored = old.encrypt("fD03@NpYbXYg")
    assert "fD03" not in stored
    rotated = SecretBox(["derive:new", "derive:old"])
    assert rotated.decrypt(stored) == "fD03@NpYbXYg"
    with pytest.raises(ValueError, match="ASYNC_EVENTS_ENCRYPTION_KEYS"):
        SecretBox(["derive:new"]).decrypt(stored)
    with pytest.raises(ValueError, match="not a Fernet key"):
        SecretBox(["short"])
