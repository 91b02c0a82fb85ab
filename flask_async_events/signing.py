"""Webhook signatures: Standard Webhooks (``webhook-signature``) and the Magento module's hex HMAC.

Both are HMAC-SHA256. The key is the verification token's UTF-8 bytes or, for a ``whsec_`` token,
the base64-decoded rest, as the Standard Webhooks libraries do. The verify functions are for
receivers written in Python.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping, Sequence

from flask_async_events.errors import InvalidSignature

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE = 300


def generate_secret() -> str:
    """A new random ``whsec_`` secret (24 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def signing_key(token: str) -> bytes:
    """The HMAC key of a verification token."""
    if token.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(token[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error:
            pass  # not base64 after all: use the token as it is
    return token.encode("utf-8")


def standard_signature(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: one ``v1,<base64>`` per key, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode() for key in keys)


def legacy_signature(key: bytes, body: bytes) -> str:
    """The Magento module's signature: lower-case hex HMAC-SHA256 of the exact body."""
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_standard(
    token: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Check a delivery's Standard Webhooks headers; raise :class:`InvalidSignature` if they fail."""
    lowered = {key.lower(): value for key, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    signature = lowered.get("webhook-signature")
    if not (msg_id and stamp and signature):
        raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise InvalidSignature("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise InvalidSignature("webhook-timestamp is outside the tolerance window")
    expected = standard_signature([signing_key(token)], msg_id, timestamp, body).split(",", 1)[1]
    for candidate in signature.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return
    raise InvalidSignature("no matching v1 signature")


def verify_legacy(token: str, body: bytes, signature: str) -> None:
    """Check the Magento module's hex signature; raise :class:`InvalidSignature` if it fails."""
    if not hmac.compare_digest(legacy_signature(signing_key(token), body), signature.strip().lower()):
        raise InvalidSignature("hex HMAC signature does not match")
