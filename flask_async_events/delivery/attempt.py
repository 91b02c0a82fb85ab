"""One attempt: the checks before a send, and the notifier call itself, timed and guarded.

Every delivery goes through here, and so does the REST API's ping, so a test event meets the same
checks (a notifier missing on this server, a secret that no longer decrypts) and the same guard (a
notifier that raises becomes a retryable failure, never a lost batch or a 500).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from flask_async_events.delivery.credentials import Credentials, open_credentials
from flask_async_events.delivery.types import SendResult
from flask_async_events.models import utcnow
from flask_async_events.notifiers.base import BatchNotifier, Message, Notifier, NotifyResult, Recipient
from flask_async_events.state import AppState

# Failures found before anything was sent: retried, since an operator can fix them.
UNKNOWN_NOTIFIER = "UnknownNotifier"
SECRET_ERROR = "SecretError"
UNSENDABLE = frozenset({UNKNOWN_NOTIFIER, SECRET_ERROR})


@dataclass(frozen=True)
class Sendable:
    """What a subscription is sent with: its notifier and its decrypted secrets."""

    notifier: Notifier
    credentials: Credentials


def unsendable(reason: str, error_class: str) -> NotifyResult:
    """An attempt that failed before anything was sent; retried, since an operator can fix it."""
    return NotifyResult(False, retryable=True, response_data=reason, error_class=error_class)


def find_notifier(state: AppState, name: str) -> Notifier | NotifyResult:
    """The notifier registered for a subscription's ``metadata``, or why there is none."""
    notifier = state.notifier(name)
    if notifier is None:
        reason = (
            f"No notifier named {name!r} is registered on this server: "
            "install its plug-in or change the subscription's metadata"
        )
        return unsendable(reason, UNKNOWN_NOTIFIER)
    return notifier


def decrypt_credentials(
    state: AppState, verification_token: str, previous_tokens: str | None, headers: str | None
) -> Credentials | NotifyResult:
    """A subscription's secrets in clear (as stored in its row), or why they cannot be decrypted."""
    try:
        return open_credentials(state.box, verification_token, previous_tokens, headers, utcnow())
    except ValueError as exc:
        return unsendable(str(exc), SECRET_ERROR)


def sendable(
    state: AppState, notifier_name: str, verification_token: str, previous_tokens: str | None, headers: str | None
) -> Sendable | NotifyResult:
    """Both checks at once, for a single send (a ping)."""
    notifier = find_notifier(state, notifier_name)
    if isinstance(notifier, NotifyResult):
        return notifier
    credentials = decrypt_credentials(state, verification_token, previous_tokens, headers)
    if isinstance(credentials, NotifyResult):
        return credentials
    return Sendable(notifier, credentials)


def recipient_for(
    credentials: Credentials, subscription_id: int, pattern: str, recipient_url: str, notifier: str, store_id: int
) -> Recipient:
    """The notifier's view of a subscription, with its secrets in clear."""
    return Recipient(
        subscription_id,
        pattern,
        recipient_url,
        credentials.token,
        notifier,
        store_id,
        credentials.previous,
        credentials.headers,
    )


def attempt(notifier: Notifier, recipient: Recipient, message: Message) -> SendResult:
    """One notifier call, timed; an exception becomes a retryable failure."""
    started = time.perf_counter()
    try:
        result = notifier.notify(recipient, message)
    except Exception as exc:  # a notifier is pluggable code
        result = crashed(exc)
    return [(result, round((time.perf_counter() - started) * 1000))]


def attempt_batch(notifier: BatchNotifier, batch: Sequence[tuple[Recipient, Message]]) -> SendResult:
    """One batch call, timed; each message gets a result even if the notifier misbehaves."""
    started = time.perf_counter()
    try:
        results = list(notifier.notify_batch(batch))
    except Exception as exc:  # a notifier is pluggable code
        results = [crashed(exc)] * len(batch)
    if len(results) != len(batch):
        missing = NotifyResult(False, retryable=True, response_data="The notifier returned no result for this message")
        results = (results + [missing] * len(batch))[: len(batch)]
    duration_ms = round((time.perf_counter() - started) * 1000)
    return [(result, duration_ms) for result in results]


def crashed(exc: Exception) -> NotifyResult:
    """The result of a notifier that raised: retryable, named after the exception."""
    return NotifyResult(
        False, retryable=True, response_data=f"{type(exc).__name__}: {exc}", error_class=type(exc).__name__
    )
