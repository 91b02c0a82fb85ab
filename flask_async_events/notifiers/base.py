"""What a notifier is: an object that sends one message to one recipient and says how it went.

Notifiers know nothing of Flask or the database; the pipeline hands them plain values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Recipient:
    """The subscription a message goes to, with its decrypted verification token. ``event_name`` is
    what it subscribed to (a wildcard, perhaps); ``notifier`` its ``metadata``. ``previous_tokens``
    are the tokens a rotation replaced that still sign, newest first; ``headers`` the extra request
    headers its owner set, in order."""

    subscription_id: int
    event_name: str
    recipient_url: str
    verification_token: str
    notifier: str
    store_id: int
    previous_tokens: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Message:
    """One attempt to deliver one event. ``body`` is sent byte for byte on every attempt."""

    delivery_uuid: str  # webhook-id: the same on every retry and replay
    event_id: str
    event_name: str
    body: str
    content_type: str
    created_at: datetime
    attempt: int
    trace_headers: tuple[tuple[str, str], ...] = ()  # W3C trace context of the attempt (traceparent)


@dataclass(frozen=True)
class NotifyResult:
    """How an attempt went. ``gone`` asks for the subscription to be disabled (HTTP 410)."""

    success: bool
    retryable: bool = False
    retry_after: float | None = None
    status_code: int | None = None
    response_data: str = ""
    gone: bool = False
    error_class: str | None = None


@runtime_checkable
class Notifier(Protocol):
    """Sends messages for one kind of subscription (the subscription's ``metadata``).

    Optional extras a notifier may have:

    - ``validate_recipient(recipient_url) -> None``: raise ``ValueError`` for a recipient it cannot
      send to; called when a subscription is created or changed.
    - ``sends_headers: bool``: True if it sends a subscription's ``headers`` (``Recipient.headers``);
      subscriptions of a notifier without it cannot be given headers.
    - ``uses_host_credentials: bool``: True if it sends with the host's own credentials (a cloud
      SDK's, say); a non-admin owner may then give it only targets the host allow-lists in
      ``ASYNC_EVENTS_OWNER_TARGETS``.
    - ``max_batch: int`` and ``notify_batch(batch) -> list[NotifyResult]`` (see :class:`BatchNotifier`):
      deliveries due together are handed over up to ``max_batch`` at a time.
    """

    def notify(self, recipient: Recipient, message: Message) -> NotifyResult: ...


@runtime_checkable
class BatchNotifier(Notifier, Protocol):
    """A notifier that sends several messages in one call, with one result per message, in order."""

    max_batch: int

    def notify_batch(self, batch: Sequence[tuple[Recipient, Message]]) -> list[NotifyResult]: ...
