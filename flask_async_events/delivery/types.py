"""The values that pass between the stages of a delivery, defined before any stage that uses them.

A deliver job *claims* rows (:class:`Claimed`) and hands them to the senders as :data:`SendTask`;
each send ends in an :class:`Outcome` per delivery, which recording writes. :data:`AttemptKey`
names one attempt in the attempt journal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from flask_async_events.delivery.sender import Task
from flask_async_events.notifiers.base import NotifyResult

AttemptKey = tuple[int, int]  # (delivery id, attempt number)
SendResult = list[tuple[NotifyResult, int]]  # per message of one send: its result and duration in ms


class PublishedEvent(Protocol):
    """An event as the pipeline reads it: a row of ``async_event``'s columns (the trigger's: ORM
    objects cost a fifth of its CPU to build and expire) or an ORM ``Event``."""

    @property
    def id(self) -> int: ...
    @property
    def uuid(self) -> str: ...
    @property
    def event_name(self) -> str: ...
    @property
    def store_id(self) -> int: ...
    @property
    def arguments(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def trace_context(self) -> str | None: ...


@dataclass
class Claimed:
    """A claimed delivery with what sending it needs, read before the claim's commit. ``id`` is the
    delivery's row id, ``uuid`` its ``webhook-id``."""

    id: int
    uuid: str
    claim_token: str
    attempt_count: int
    round_attempts: int
    event_id: int
    event_uuid: str
    event_name: str
    body: str | None
    created_at: datetime
    subscription_id: int
    pattern: str
    recipient_url: str
    verification_token: str  # encrypted, as stored
    previous_tokens: str | None  # encrypted, as stored
    headers: str | None  # encrypted, as stored
    notifier: str
    store_id: int
    enabled: bool
    rate_limit: float | None = None  # deliveries per second to its subscription
    filter: str | None = None  # its subscription's filter
    event_store_id: int = 0  # the store the event was published for
    event_trace: str | None = None  # the publishing request's stored trace context
    span: Any = None  # the attempt's OpenTelemetry span, from its preparation to its recording

    @property
    def attempt_key(self) -> AttemptKey:
        """This claim's attempt: the delivery and the attempt's number (its journal key)."""
        return self.id, self.attempt_count + 1


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended (or that the delivery was cancelled without one). An ``interrupted``
    attempt was cut short by a lost worker: it counts as an attempt, not against the endpoint."""

    item: Claimed
    result: NotifyResult
    duration_ms: int | None = None
    cancelled: bool = False
    interrupted: bool = False


@dataclass(frozen=True)
class Released:
    """A claimed delivery handed back unsent and due now (its worker stops before sending it, or a
    lost worker never started it). It is not an attempt."""

    item: Claimed


@dataclass(frozen=True)
class Parked:
    """A claimed delivery handed back unsent, due again at ``until`` (its endpoint's circuit is open
    or its probe is out, or its subscription's rate limit gave it a later slot). It is not an
    attempt: its retry schedule stays where it was."""

    item: Claimed
    until: datetime


# One send on a sending thread: one delivery, or a batch for a notifier that takes batches.
SendTask = Task[SendResult, list[Claimed]]
