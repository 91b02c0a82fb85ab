"""Secrets at rest: verification tokens are stored Fernet-encrypted and decrypted only to sign.

Several keys may be configured: the first encrypts, all decrypt (``MultiFernet``), so a key can be
rotated without losing stored tokens. A key written ``derive:<text>`` (the default, from
``SECRET_KEY``) is stretched into a Fernet key.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from flask_async_events.errors import ConfigError, SecretError

DERIVE_PREFIX = "derive:"


def _fernet(key: str) -> Fernet:
    if key.startswith(DERIVE_PREFIX):
        material = hashlib.sha256(b"flask-async-events:" + key[len(DERIVE_PREFIX) :].encode()).digest()
        return Fernet(base64.urlsafe_b64encode(material))
    try:
        return Fernet(key.encode())
    except ValueError:
        raise ConfigError(
            "ASYNC_EVENTS_ENCRYPTION_KEYS holds a key that is not a Fernet key "
            "(make one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
        ) from None


class SecretBox:
    """Encrypts and decrypts verification tokens with the configured keys."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._fernet = MultiFernet([_fernet(key) for key in keys])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise SecretError(
                "cannot decrypt a verification token: the key that encrypted it is not in "
                "ASYNC_EVENTS_ENCRYPTION_KEYS (or SECRET_KEY changed)"
            ) from None
