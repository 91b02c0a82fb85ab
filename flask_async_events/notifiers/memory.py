"""A notifier that keeps what it is given, for a host app's own tests (as httpx's ``MockTransport``
is for HTTP clients): register it under a subscription's notifier name and nothing leaves the
process::

    memory = MemoryNotifier()
    events.register_notifier("http", memory)  # every "http" subscription now lands here
    ...  # subscribe, publish, commit, then run a burst worker
    assert memory.payloads("sales.order.created") == [{"id": 1, "total": 99.5}]

A ``handler(recipient, message) -> NotifyResult`` decides each answer (default: a 200), so a test
can make an endpoint fail, throttle (``retry_after``) or disappear (``gone``, a 410). It accepts
any recipient URL, and is thread-safe: a worker's sending threads may call it at once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask_async_events.notifiers.base import Message, NotifyResult, Recipient

Handler = Callable[[Recipient, Message], NotifyResult]


def answer_ok(recipient: Recipient, message: Message) -> NotifyResult:
    """The default answer: delivered, 200."""
    return NotifyResult(True, status_code=200, response_data="OK")


@dataclass(frozen=True)
class Sent:
    """One call: to whom, what, and the answer the handler gave."""

    recipient: Recipient
    message: Message
    result: NotifyResult

    @property
    def payload(self) -> Any:
        """The event's payload: the ``data`` of the body, in either payload format."""
        return json.loads(self.message.body)["data"]


class MemoryNotifier:
    """Records every message it is asked to send, and answers with ``handler``."""

    sends_headers = True  # it stands in for "http": its subscriptions may have headers

    def __init__(self, handler: Handler = answer_ok) -> None:
        self.handler = handler
        self._sent: list[Sent] = []
        self._changed = threading.Condition()

    def validate_recipient(self, recipient_url: str) -> None:
        """Any recipient will do: nothing is sent anywhere."""

    def notify(self, recipient: Recipient, message: Message) -> NotifyResult:
        result = self.handler(recipient, message)
        with self._changed:
            self._sent.append(Sent(recipient, message, result))
            self._changed.notify_all()
        return result

    @property
    def sent(self) -> list[Sent]:
        """Every call so far, oldest first (a copy)."""
        with self._changed:
            return list(self._sent)

    def messages(self, event_name: str | None = None) -> list[Message]:
        """The messages sent, of one event if named, oldest first; a retry appears once per attempt."""
        return [entry.message for entry in self.sent if event_name in (None, entry.message.event_name)]

    def payloads(self, event_name: str | None = None) -> list[Any]:
        """The payloads of :meth:`messages`."""
        return [entry.payload for entry in self.sent if event_name in (None, entry.message.event_name)]

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``count`` calls were made (a worker in another thread); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._sent) >= count, timeout)

    def clear(self) -> None:
        """Forget the calls so far."""
        with self._changed:
            self._sent.clear()
