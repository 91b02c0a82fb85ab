"""What a subscription sends with besides the body: its verification token, the tokens a rotation
left valid for a grace period, and the request headers its owner added.

All three are stored encrypted with the same :class:`~flask_async_events.crypto.SecretBox` and
decrypted only to send. Previous tokens and headers are stored as one encrypted JSON document each
(a column that is NULL when there are none), so the claim reads them with the subscription's row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from flask_async_events.crypto import SecretBox

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PreviousToken:
    """A verification token that was replaced, still signing deliveries until ``valid_until``."""

    token: str
    valid_until: datetime


@dataclass(frozen=True)
class Credentials:
    """A subscription's secrets in clear: the current token, the previous ones still valid (newest
    first) and the extra headers, in the order they were given."""

    token: str
    previous: tuple[str, ...] = ()
    headers: Headers = ()


def seal_previous(box: SecretBox, tokens: Sequence[PreviousToken]) -> str | None:
    """Previous tokens as stored; None for none."""
    if not tokens:
        return None
    document = [{"token": entry.token, "valid_until": entry.valid_until.isoformat()} for entry in tokens]
    return box.encrypt(json.dumps(document))


def open_previous(box: SecretBox, sealed: str | None, now: datetime) -> list[PreviousToken]:
    """The previous tokens still valid at ``now``, newest first (expired ones are dropped).
    Raises ``ValueError`` if they cannot be decrypted."""
    if not sealed:
        return []
    document = json.loads(box.decrypt(sealed))
    entries = [PreviousToken(entry["token"], datetime.fromisoformat(entry["valid_until"])) for entry in document]
    return [entry for entry in entries if entry.valid_until > now]


def seal_headers(box: SecretBox, headers: Mapping[str, str]) -> str | None:
    """Extra headers as stored (encrypted: their values may be credentials); None for none."""
    return box.encrypt(json.dumps(list(headers.items()))) if headers else None


def open_headers(box: SecretBox, sealed: str | None) -> dict[str, str]:
    """Extra headers in clear; raises ``ValueError`` if they cannot be decrypted."""
    return dict(json.loads(box.decrypt(sealed))) if sealed else {}


def open_credentials(
    box: SecretBox, verification_token: str, previous_tokens: str | None, headers: str | None, now: datetime
) -> Credentials:
    """Everything a send needs decrypted; raises ``ValueError`` naming what cannot be decrypted."""
    return Credentials(
        box.decrypt(verification_token),
        tuple(entry.token for entry in open_previous(box, previous_tokens, now)),
        tuple(open_headers(box, headers).items()),
    )
