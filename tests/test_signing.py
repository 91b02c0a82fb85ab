"""Signatures: Standard Webhooks and the Magento module's hex HMAC, checked against the reference library."""

from __future__ import annotations

import time

import pytest
from standardwebhooks import Webhook

from flask_async_events.signing import (
    InvalidSignature,
    generate_secret,
    legacy_signature,
    signing_key,
    standard_signature,
    verify_legacy,
    verify_standard,
)


def test_standard_signature_matches_the_reference_library() -> None:
    secret = generate_secret()
    body = b'{"data":{"id":1}}'
    timestamp = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_signature([signing_key(secret)], "msg_1", timestamp, body),
    }
    assert Webhook(secret).verify(body, headers) == {"data": {"id": 1}}
    verify_standard(secret, headers, body)
    with pytest.raises(InvalidSignature):
        verify_standard(secret, headers, body + b" ")
    with pytest.raises(InvalidSignature, match="tolerance"):
        verify_standard(secret, headers, body, now=timestamp + 3600)


def test_rotation_sends_one_signature_per_key() -> None:
    old, new = generate_secret(), generate_secret()
    body = b"{}"
    signature = standard_signature([signing_key(new), signing_key(old)], "m", 1, body)
    assert len(signature.split(" ")) == 2
    for secret in (old, new):
        verify_standard(
            secret, {"webhook-id": "m", "webhook-timestamp": "1", "webhook-signature": signature}, body, now=1
        )


def test_legacy_signature_is_hex_hmac_of_the_body() -> None:
    # echo -n '{"data":1}' | openssl dgst -sha256 -hmac 'fD03@NpYbXYg'
    expected = "0194ce703ae0b80c45030f5b88c0b815be79976257e7aff8d86d79529925e0fa"
    assert legacy_signature(b"fD03@NpYbXYg", b'{"data":1}') == expected
    verify_legacy("fD03@NpYbXYg", b'{"data":1}', expected.upper())
    with pytest.raises(InvalidSignature):
        verify_legacy("fD03@NpYbXYg", b'{"data":2}', expected)


def test_a_whsec_token_keys_with_its_decoded_bytes() -> None:
    assert signing_key("whsec_AAEC") == b"\x00\x01\x02"
    assert signing_key("plain") == b"plain"
    assert signing_key("whsec_not base64!") == b"whsec_not base64!"
