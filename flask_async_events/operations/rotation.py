"""Signing-secret rotation: a new verification token signs at once, and the one it replaces keeps
signing beside it for a grace period, so a receiver can switch secrets without dropping a delivery.

During the grace period every delivery's ``webhook-signature`` holds one ``v1,`` signature per
valid token, the newest first (a Standard Webhooks receiver holding either verifies it). The hex
header holds the newest token's signature only. At most :data:`MAX_PREVIOUS` replaced tokens are
kept, encrypted like the current one; expired ones are dropped at the next rotation and never sign.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_async_events.delivery.credentials import PreviousToken, open_previous, seal_previous
from flask_async_events.errors import InvalidSubscription
from flask_async_events.models import Subscription, utcnow
from flask_async_events.signing import generate_secret
from flask_async_events.state import AppState

DEFAULT_GRACE = 24 * 3600
MAX_GRACE = 7 * 24 * 3600
MAX_PREVIOUS = 10
MAX_TOKEN = 255


@dataclass(frozen=True)
class Rotation:
    """The new token (shown once) and until when the replaced one still signs."""

    verification_token: str
    previous_valid_until: datetime


def still_valid(
    replaced: str | None, previous: Sequence[PreviousToken], grace: float, now: datetime
) -> list[PreviousToken]:
    """The tokens that sign beside a new one: the ``replaced`` token for ``grace`` seconds (none
    for 0), then the earlier ones not yet expired; newest first, :data:`MAX_PREVIOUS` at most."""
    kept = [entry for entry in previous if entry.valid_until > now]
    if replaced is not None and grace > 0:
        kept.insert(0, PreviousToken(replaced, now + timedelta(seconds=grace)))
    return kept[:MAX_PREVIOUS]


def check_grace(grace: object) -> float:
    """A grace period in seconds, from 0 to 7 days."""
    if isinstance(grace, bool) or not isinstance(grace, int | float) or not 0 <= grace <= MAX_GRACE:
        raise InvalidSubscription(f"grace_period must be a number of seconds from 0 to {MAX_GRACE} (7 days)")
    return float(grace)


def rotate_secret(
    state: AppState, subscription: Subscription, *, token: str | None = None, grace: float = DEFAULT_GRACE
) -> Rotation:
    """Give ``subscription`` a new verification token (``token``, or a new ``whsec_`` secret); the
    replaced one keeps signing for ``grace`` seconds. Leaves the commit to the caller.

    A current token that no longer decrypts (its key is gone) is replaced without a grace period:
    it could not sign anyway."""
    grace = check_grace(grace)
    if token is not None and not 1 <= len(token) <= MAX_TOKEN:
        raise InvalidSubscription(f"verification_token must be 1 to {MAX_TOKEN} characters")
    new = token or generate_secret()
    now = utcnow()
    box = state.box
    try:
        replaced: str | None = box.decrypt(subscription.verification_token)
    except ValueError:
        replaced = None
    if replaced == new:
        raise InvalidSubscription("verification_token must differ from the current one")
    try:
        previous = open_previous(box, subscription.previous_tokens, now)
    except ValueError:
        previous = []
    kept = still_valid(replaced, previous, grace, now)
    subscription.verification_token = box.encrypt(new)
    subscription.previous_tokens = seal_previous(box, kept)
    subscription.modified = now
    valid_until = now + timedelta(seconds=grace) if replaced is not None else now
    return Rotation(new, valid_until)
