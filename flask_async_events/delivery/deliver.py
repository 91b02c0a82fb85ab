"""The deliver job: claim a batch of due deliveries and hand their sends to the worker's dispatcher.

1. Claim (:mod:`.claims`): one UPDATE marks the due rows ``delivering`` with this job's token and
   a lease. The job fills its batch with other due deliveries, so a job for a few retries still
   moves a full batch and work whose job was lost is picked up; it leaves out endpoints whose queue
   is already full.
2. Prepare: what cannot be sent (a disabled subscription, a payload that does not resolve, a
   missing notifier, a secret that does not decrypt) gets its outcome at once; the rest become
   sends, one per delivery or one per batch for a notifier that takes batches.
3. Hand over: the :class:`~flask_async_events.delivery.dispatcher.Dispatcher` sends them on its
   threads and records each result as it arrives (:mod:`flask_async_events.delivery.recording`). The
   job returns as soon as the sends are handed over; it waits first only while every sending thread
   is busy.

:func:`send_claimed` is the entry for deliveries this process holds claims on: the trigger job
hands the first batch it inserted claimed to it, as a deliver job does its claim.

A claim whose lease ended (its worker is gone) is not taken by a deliver job: maintenance settles
it (:mod:`flask_async_events.worker.recovery`), from what the lost worker wrote in its attempt
journal.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import partial

from sqlalchemy import update

from flask_async_events import tracing
from flask_async_events.delivery.attempt import (
    attempt,
    attempt_batch,
    decrypt_credentials,
    find_notifier,
    recipient_for,
    unsendable,
)
from flask_async_events.delivery.attempt_log import span_attributes
from flask_async_events.delivery.circuits import endpoint_key
from flask_async_events.delivery.claims import claim
from flask_async_events.delivery.credentials import Credentials
from flask_async_events.delivery.dispatcher import dispatcher_of
from flask_async_events.delivery.filters import admits
from flask_async_events.delivery.flow import hold_back, pace
from flask_async_events.delivery.health import RESOLVE_ERROR
from flask_async_events.delivery.payloads import CONTENT_TYPES, describe_error, resolve_body
from flask_async_events.delivery.sender import Task
from flask_async_events.delivery.types import Claimed, Outcome, SendTask
from flask_async_events.errors import UnknownEvent
from flask_async_events.models import Event
from flask_async_events.notifiers.base import BatchNotifier, Message, Notifier, NotifyResult, Recipient
from flask_async_events.state import AppState

log = logging.getLogger("flask_async_events")

CANCELLED_REASON = "Cancelled: the subscription is disabled"
FILTERED_REASON = "Cancelled: the event does not match the subscription's filter"


def deliver(state: AppState, delivery_ids: list[int]) -> int:
    """Claim the due deliveries among ``delivery_ids`` (and others, up to a batch) and start
    sending them; return how many were claimed."""
    dispatcher = dispatcher_of(state)
    dispatcher.sender.wait_for_room(state.settings.send_budget)
    token = dispatcher.journal.claim_token()
    return send_claimed(state, claim(state, delivery_ids, token, skip=dispatcher.saturated_subscriptions()))


def send_claimed(state: AppState, items: list[Claimed]) -> int:
    """Start sending deliveries this process claimed (by a deliver job's claim, or inserted
    claimed by the trigger job); return how many."""
    if not items:
        return 0
    with tracing.span(
        "async_events.deliver",
        {"async_events.deliveries": len(items)},
        kind="CONSUMER",
        links=[item.event_trace for item in items],
    ):
        items, paced = pace(state, items)
        outcomes, sends = _prepare(state, items, deadline=time.monotonic() + state.settings.send_budget)
        dispatcher = dispatcher_of(state)
        starting, parked = hold_back(state, sends, dispatcher.journal.owner)
        dispatcher.submit(outcomes, starting, paced + parked)
    return len(items)


class _NotSent(Exception):
    """A claimed delivery that gets its outcome without a send (cancelled, or unsendable here)."""

    def __init__(self, result: NotifyResult, *, cancelled: bool = False) -> None:
        super().__init__(result.response_data)
        self.result, self.cancelled = result, cancelled


@dataclass
class _Preparing:
    """One batch of claims on its way to the senders, with what is read once per batch: payloads
    resolved here, each subscription's secrets, whether each notifier takes batches."""

    state: AppState
    resolved: dict[int, str | Exception] = field(default_factory=dict)
    secrets: dict[int, Credentials | NotifyResult] = field(default_factory=dict)
    batching: dict[str, bool] = field(default_factory=dict)

    def with_body(self, item: Claimed) -> Claimed:
        """``item`` with its payload, resolved here if it did not resolve at fan-out (and then its
        filter asked); :class:`_NotSent` with its outcome if it is not to be sent."""
        if not item.enabled:
            raise _NotSent(NotifyResult(False, response_data=CANCELLED_REASON), cancelled=True)
        if item.body is not None:
            return item
        body = _resolve_once(self.state, item, self.resolved)
        if isinstance(body, Exception):
            raise _NotSent(unsendable(describe_error(body), RESOLVE_ERROR))
        item = replace(item, body=body)
        if admits(item.filter, json.loads(body), item.event_name, item.event_store_id) is False:
            raise _NotSent(NotifyResult(False, response_data=FILTERED_REASON), cancelled=True)
        return item

    def ready(self, item: Claimed) -> tuple[Claimed, Notifier, Recipient, Message]:
        """What sending ``item`` (with its body) takes, and the item with its attempt's span;
        :class:`_NotSent` with its outcome if it cannot be sent."""
        body = item.body
        assert body is not None  # with_body came first
        notifier = find_notifier(self.state, item.notifier)
        if isinstance(notifier, NotifyResult):
            raise _NotSent(notifier)
        recipient = self._recipient(item)
        trace_headers: tuple[tuple[str, str], ...] = ()
        if tracing.ENABLED:
            span, trace_headers = tracing.start_attempt(item.event_trace, partial(span_attributes, item))
            item = replace(item, span=span)
        return item, notifier, recipient, self._message(item, body, trace_headers)

    def takes_batches(self, item: Claimed, notifier: Notifier) -> bool:
        """Whether ``notifier`` sends several messages at once (a runtime Protocol check costs tens
        of microseconds: asked once per notifier and batch)."""
        known = self.batching.get(item.notifier)
        if known is None:
            known = self.batching[item.notifier] = isinstance(notifier, BatchNotifier)
        return known

    def _recipient(self, item: Claimed) -> Recipient:
        secret = self.secrets.get(item.subscription_id)
        if secret is None:
            secret = self.secrets[item.subscription_id] = decrypt_credentials(
                self.state, item.verification_token, item.previous_tokens, item.headers
            )
        if isinstance(secret, NotifyResult):
            raise _NotSent(secret)
        return recipient_for(
            secret, item.subscription_id, item.pattern, item.recipient_url, item.notifier, item.store_id
        )

    def _message(self, item: Claimed, body: str, trace_headers: tuple[tuple[str, str], ...]) -> Message:
        content_type = CONTENT_TYPES[self.state.settings.payload_format]
        attempt_number = item.attempt_count + 1
        return Message(
            item.uuid,
            item.event_uuid,
            item.event_name,
            body,
            content_type,
            item.created_at,
            attempt_number,
            trace_headers,
        )


def _prepare(state: AppState, items: list[Claimed], deadline: float) -> tuple[list[Outcome], list[SendTask]]:
    """Split claimed items into ready outcomes (cancelled, unsendable) and sends to start before
    ``deadline``; store payloads resolved here, so the next attempt need not resolve again."""
    preparing = _Preparing(state)
    outcomes: list[Outcome] = []
    sends: list[SendTask] = []
    batches: dict[str, list[tuple[Claimed, Recipient, Message]]] = defaultdict(list)
    for item in items:
        try:
            item = preparing.with_body(item)
            item, notifier, recipient, message = preparing.ready(item)
        except _NotSent as refused:
            outcomes.append(Outcome(item, refused.result, cancelled=refused.cancelled))
            continue
        if preparing.takes_batches(item, notifier):
            batches[item.notifier.lower()].append((item, recipient, message))
            continue
        endpoint = endpoint_key(item.recipient_url) or item.recipient_url
        sends.append(Task(endpoint, partial(attempt, notifier, recipient, message), deadline, [item]))
    sends += _batch_sends(state, batches, deadline)
    _store_bodies(state, {event_id: body for event_id, body in preparing.resolved.items() if isinstance(body, str)})
    return outcomes, sends


def _batch_sends(
    state: AppState, batches: dict[str, list[tuple[Claimed, Recipient, Message]]], deadline: float
) -> list[SendTask]:
    """The sends of notifiers that take batches: up to ``max_batch`` messages each."""
    sends: list[SendTask] = []
    for name, entries in batches.items():
        batch_notifier = state.notifier(name)
        assert isinstance(batch_notifier, BatchNotifier)
        size = max(1, batch_notifier.max_batch)
        for start in range(0, len(entries), size):
            chunk = entries[start : start + size]
            run = partial(attempt_batch, batch_notifier, [(r, m) for _, r, m in chunk])
            sends.append(Task(name, run, deadline, [item for item, _, _ in chunk]))
    return sends


def _store_bodies(state: AppState, bodies: dict[int, str]) -> None:
    if not bodies:
        return
    session = state.db.session
    for event_id, body in bodies.items():
        session.execute(update(Event).where(Event.id == event_id).values(body=body, resolve_error=None))
    session.commit()


def _resolve_once(state: AppState, item: Claimed, resolved: dict[int, str | Exception]) -> str | Exception:
    """Resolve an event whose payload failed to resolve before, once per event per batch."""
    if item.event_id not in resolved:
        event = state.db.session.get(Event, item.event_id)
        try:
            if event is None:
                raise UnknownEvent(f"event {item.event_id} no longer exists")
            resolved[item.event_id] = resolve_body(state.definitions, event, state.settings.payload_format)
        except Exception as exc:  # the service is the host's code
            resolved[item.event_id] = exc
        state.db.session.rollback()
    return resolved[item.event_id]
