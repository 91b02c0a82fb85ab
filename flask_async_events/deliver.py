"""The deliver job: claim a batch of deliveries, send them concurrently, record every attempt.

1. Claim: one UPDATE marks the due rows ``delivering`` with this job's token and a lease. Only the
   holder of the token may write the outcome (a fence against a second worker after a lease ran out).
2. Send: each subscription's notifier runs on the sender's pool; nothing a subscriber does (a
   timeout, an error, a missing notifier, a broken payload) reaches the others.
3. Record, in one transaction: a log row per attempt, and per delivery ``delivered``, ``retrying``
   at a time, ``dead`` or ``cancelled``. Only then are retries scheduled in RQ.
"""

from __future__ import annotations

import logging
import math
import time
import uuid as uuid_module
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, cast
from urllib.parse import urlsplit

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import Table, and_, bindparam, func, insert, or_, select, update

from flask_async_events import signals
from flask_async_events.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Event,
    Subscription,
    UTCDateTime,
    utcnow,
)
from flask_async_events.notifiers.base import BatchNotifier, Message, Notifier, NotifyResult, Recipient
from flask_async_events.notifiers.http import RESPONSE_EXCERPT
from flask_async_events.payloads import CONTENT_TYPES, describe_error, resolve_body
from flask_async_events.retry import next_delay
from flask_async_events.sender import Task
from flask_async_events.state import AppState
from flask_async_events.subscriptions import cancel_open_deliveries, disable_subscriptions

log = logging.getLogger("flask_async_events")

CANCELLED_REASON = "Cancelled: the subscription is disabled"
GONE_REASON = "The recipient answered 410 Gone"
CLOCK_SLACK = timedelta(seconds=1)


@dataclass
class Claimed:
    """A claimed delivery with what sending it needs, read before the claim's commit."""

    id: int
    uuid: str
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
    token: str
    notifier: str
    store_id: int
    enabled: bool


@dataclass
class Send:
    """One unit of sending: one delivery, or a batch for a notifier that takes batches."""

    items: list[Claimed]
    task: Task[list[tuple[NotifyResult, int]]]


@dataclass
class Outcome:
    item: Claimed
    result: NotifyResult
    duration_ms: int | None = None
    cancelled: bool = False


def deliver(state: AppState, delivery_ids: list[int]) -> int:
    """Deliver the due deliveries among ``delivery_ids``; return how many attempts were made."""
    token = uuid_module.uuid4().hex
    items = _claim(state, delivery_ids, token)
    if not items:
        return 0
    deadline = time.monotonic() + state.settings.send_budget
    outcomes, sends, bodies = _prepare(state, items)
    results, unsent = state.sender().run([send.task for send in sends], deadline)
    for index, sent in results.items():
        outcomes.extend(
            Outcome(item, result, duration_ms)
            for item, (result, duration_ms) in zip(sends[index].items, sent, strict=True)
        )
    _record(state, token, outcomes, [item for index in unsent for item in sends[index].items], bodies)
    return sum(len(sends[index].items) for index in results)


def _claim(state: AppState, delivery_ids: list[int], token: str) -> list[Claimed]:
    """Claim the job's deliveries that are due, and, up to a full batch, other due ones: a job
    for a few retries then still moves a full batch, and work whose job was lost is picked up."""
    session = state.db.session
    now = utcnow()
    due = and_(Delivery.state.in_(DeliveryState.CLAIMABLE), Delivery.next_attempt_at <= now + CLOCK_SLACK)
    expired = and_(Delivery.state == DeliveryState.DELIVERING, Delivery.lease_until < now)
    room = state.settings.batch_size - len(delivery_ids)
    if room > 0:
        others = session.scalars(
            select(Delivery.id)
            .where(due, Delivery.id.not_in(delivery_ids))
            .order_by(Delivery.next_attempt_at)
            .limit(room)
        ).all()
        delivery_ids = [*delivery_ids, *others]
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(delivery_ids), or_(due, expired))
        .values(
            state=DeliveryState.DELIVERING,
            claim_token=token,
            lease_until=now + timedelta(seconds=state.settings.claim_lease),
        )
        .execution_options(synchronize_session=False)
    )
    rows = session.execute(
        select(
            Delivery.id,
            Delivery.uuid,
            Delivery.attempt_count,
            Delivery.round_attempts,
            Event.id.label("event_id"),
            Event.uuid.label("event_uuid"),
            Event.event_name,
            Event.body,
            Event.created_at,
            Subscription.subscription_id,
            Subscription.event_name.label("pattern"),
            Subscription.recipient_url,
            Subscription.verification_token,
            Subscription.notifier,
            Subscription.store_id,
            Subscription.status,
        )
        .join(Event, Delivery.event_id == Event.id)
        .join(Subscription, Delivery.subscription_id == Subscription.subscription_id)
        .where(Delivery.claim_token == token)
        .order_by(Delivery.id)
    ).all()
    session.commit()
    return [_claimed(row) for row in rows]


def _claimed(row: Any) -> Claimed:
    return Claimed(
        id=row.id,
        uuid=row.uuid,
        attempt_count=row.attempt_count,
        round_attempts=row.round_attempts,
        event_id=row.event_id,
        event_uuid=row.event_uuid,
        event_name=row.event_name,
        body=row.body,
        created_at=row.created_at,
        subscription_id=row.subscription_id,
        pattern=row.pattern,
        recipient_url=row.recipient_url,
        token=row.verification_token,
        notifier=row.notifier,
        store_id=row.store_id,
        enabled=row.status,
    )


def _prepare(state: AppState, items: list[Claimed]) -> tuple[list[Outcome], list[Send], dict[int, str]]:
    """Split claimed items into ready outcomes (cancelled, unsendable) and sends."""
    outcomes: list[Outcome] = []
    sends: list[Send] = []
    batches: dict[str, list[tuple[Claimed, Recipient, Message]]] = defaultdict(list)
    resolved: dict[int, str | Exception] = {}
    secrets: dict[int, str | Exception] = {}
    content_type = CONTENT_TYPES[state.settings.payload_format]
    for item in items:
        if not item.enabled:
            outcomes.append(Outcome(item, NotifyResult(False, response_data=CANCELLED_REASON), cancelled=True))
            continue
        body = item.body if item.body is not None else _resolve_once(state, item, resolved)
        if isinstance(body, Exception):
            outcomes.append(_unsendable(item, describe_error(body), "ResolveError"))
            continue
        item.body = body
        notifier = state.notifier(item.notifier)
        if notifier is None:
            reason = f"No notifier named {item.notifier!r} is registered on this worker"
            outcomes.append(_unsendable(item, reason, "UnknownNotifier"))
            continue
        secret = secrets.get(item.subscription_id)
        if secret is None:
            secret = secrets[item.subscription_id] = _decrypt(state, item.token)
        if isinstance(secret, Exception):
            outcomes.append(_unsendable(item, str(secret), "SecretError"))
            continue
        recipient = Recipient(
            item.subscription_id, item.pattern, item.recipient_url, secret, item.notifier, item.store_id
        )
        message = Message(
            item.uuid, item.event_uuid, item.event_name, body, content_type, item.created_at, item.attempt_count + 1
        )
        if isinstance(notifier, BatchNotifier):
            batches[item.notifier.lower()].append((item, recipient, message))
            continue
        endpoint = urlsplit(item.recipient_url).netloc or item.recipient_url
        sends.append(Send([item], Task(endpoint, partial(_attempt, notifier, recipient, message))))
    for name, entries in batches.items():
        batch_notifier = state.notifier(name)
        assert isinstance(batch_notifier, BatchNotifier)
        size = max(1, batch_notifier.max_batch)
        for start in range(0, len(entries), size):
            chunk = entries[start : start + size]
            task = Task(name, partial(_attempt_batch, batch_notifier, [(r, m) for _, r, m in chunk]))
            sends.append(Send([item for item, _, _ in chunk], task))
    bodies = {event_id: body for event_id, body in resolved.items() if isinstance(body, str)}
    return outcomes, sends, bodies


def _resolve_once(state: AppState, item: Claimed, resolved: dict[int, str | Exception]) -> str | Exception:
    """Resolve an event whose payload failed to resolve before, once per event per batch."""
    if item.event_id not in resolved:
        event = state.db.session.get(Event, item.event_id)
        try:
            if event is None:
                raise LookupError(f"event {item.event_id} no longer exists")
            resolved[item.event_id] = resolve_body(state.definitions, event, state.settings.payload_format)
        except Exception as exc:  # the service is the host's code
            resolved[item.event_id] = exc
        state.db.session.rollback()
    return resolved[item.event_id]


def _decrypt(state: AppState, token: str) -> str | Exception:
    try:
        return state.box.decrypt(token)
    except ValueError as exc:
        return exc


def _unsendable(item: Claimed, reason: str, error_class: str) -> Outcome:
    """An attempt that failed before anything was sent; retried, since an operator can fix it."""
    return Outcome(item, NotifyResult(False, retryable=True, response_data=reason, error_class=error_class))


def _attempt(notifier: Notifier, recipient: Recipient, message: Message) -> list[tuple[NotifyResult, int]]:
    """One notifier call, timed; an exception becomes a retryable failure, never a lost batch."""
    started = time.perf_counter()
    try:
        result = notifier.notify(recipient, message)
    except Exception as exc:  # a notifier is pluggable code
        result = _crashed(exc)
    return [(result, round((time.perf_counter() - started) * 1000))]


def _attempt_batch(notifier: BatchNotifier, batch: list[tuple[Recipient, Message]]) -> list[tuple[NotifyResult, int]]:
    """One batch call, timed; each message gets a result even if the notifier misbehaves."""
    started = time.perf_counter()
    try:
        results = list(notifier.notify_batch(batch))
    except Exception as exc:  # a notifier is pluggable code
        results = [_crashed(exc)] * len(batch)
    if len(results) != len(batch):
        missing = NotifyResult(False, retryable=True, response_data="The notifier returned no result for this message")
        results = (results + [missing] * len(batch))[: len(batch)]
    duration_ms = round((time.perf_counter() - started) * 1000)
    return [(result, duration_ms) for result in results]


def _crashed(exc: Exception) -> NotifyResult:
    return NotifyResult(
        False, retryable=True, response_data=f"{type(exc).__name__}: {exc}", error_class=type(exc).__name__
    )


def _due_at(now: datetime, delay: float) -> datetime:
    """Whole seconds, rounded up: RQ's scheduler keeps whole seconds, and must never run early."""
    if delay <= 0:
        return now
    due = now + timedelta(seconds=delay)
    return datetime.fromtimestamp(math.ceil(due.timestamp()), tz=due.tzinfo)


_DELIVERY = cast(Table, Delivery.__table__)
_UPDATE_DELIVERY = (
    _DELIVERY.update()
    .where(_DELIVERY.c.id == bindparam("b_id"), _DELIVERY.c.claim_token == bindparam("b_token"))
    .values(
        state=bindparam("b_state"),
        next_attempt_at=bindparam("b_next"),
        attempt_count=_DELIVERY.c.attempt_count + bindparam("b_inc"),
        round_attempts=bindparam("b_round"),
        claim_token=None,
        lease_until=None,
        updated_at=bindparam("b_now"),
    )
)
_SUBSCRIBER = cast(Table, Subscription.__table__)
_HEALTH_FAILURE = (
    _SUBSCRIBER.update()
    .where(_SUBSCRIBER.c.subscription_id == bindparam("b_sid"))
    .values(
        consecutive_failures=_SUBSCRIBER.c.consecutive_failures + bindparam("b_n"),
        failing_since=func.coalesce(_SUBSCRIBER.c.failing_since, bindparam("b_now", type_=UTCDateTime())),
    )
)


def _record(
    state: AppState, token: str, outcomes: list[Outcome], released: list[Claimed], bodies: dict[int, str]
) -> None:
    settings = state.settings
    session = state.db.session
    now = utcnow()
    logs: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    retries: dict[datetime, list[int]] = defaultdict(list)
    dead: list[tuple[int, str, str]] = []
    succeeded: set[int] = set()
    failures: dict[int, int] = defaultdict(int)
    gone: set[int] = set()
    notices: list[tuple[Any, dict[str, Any]]] = []

    for outcome in outcomes:
        item, result = outcome.item, outcome.result
        base = {"b_id": item.id, "b_token": token, "b_now": now, "b_next": now}
        logs.append(
            {
                "uuid": item.uuid,
                "subscription_id": item.subscription_id,
                "delivery_id": item.id,
                "attempt": item.attempt_count + (0 if outcome.cancelled else 1),
                "success": result.success,
                "status_code": result.status_code,
                "duration_ms": outcome.duration_ms,
                "error_class": "Cancelled" if outcome.cancelled else result.error_class,
                "response_data": result.response_data[:RESPONSE_EXCERPT],
                "created": now,
                "serialized_data": None if outcome.cancelled else item.body,
            }
        )
        if outcome.cancelled:
            updates.append({**base, "b_state": DeliveryState.CANCELLED, "b_inc": 0, "b_round": item.round_attempts})
            continue
        attempts_this_round = item.round_attempts + 1
        update_row = {**base, "b_inc": 1, "b_round": attempts_this_round}
        event_info = {"delivery_id": item.uuid, "event_name": item.event_name, "subscription_id": item.subscription_id}
        if result.success:
            succeeded.add(item.subscription_id)
            updates.append({**update_row, "b_state": DeliveryState.DELIVERED})
            notices.append((signals.delivery_succeeded, {**event_info, "status_code": result.status_code}))
            continue
        failures[item.subscription_id] += 1
        if result.gone:
            gone.add(item.subscription_id)
        delay = None
        if result.retryable and not result.gone:
            delay = next_delay(
                settings.retry_schedule,
                attempts_this_round,
                jitter=settings.retry_jitter,
                retry_after=result.retry_after,
                retry_after_max=settings.retry_after_max,
            )
        notices.append(
            (
                signals.delivery_failed,
                {**event_info, "status_code": result.status_code, "will_retry": delay is not None},
            )
        )
        if delay is None:
            reason = result.response_data[:500] or (result.error_class or "failed")
            dead.append((item.id, item.uuid, reason))
            updates.append({**update_row, "b_state": DeliveryState.DEAD})
            notices.append((signals.delivery_dead_lettered, {**event_info, "reason": reason}))
        else:
            due = _due_at(now, delay)
            retries[due].append(item.id)
            updates.append({**update_row, "b_state": DeliveryState.RETRYING, "b_next": due})

    for item in released:  # never started: hand back untouched, due now
        state_name = DeliveryState.RETRYING if item.round_attempts else DeliveryState.PENDING
        updates.append(
            {
                "b_id": item.id,
                "b_token": token,
                "b_now": now,
                "b_next": now,
                "b_state": state_name,
                "b_inc": 0,
                "b_round": item.round_attempts,
            }
        )

    for event_id, body in bodies.items():
        session.execute(update(Event).where(Event.id == event_id).values(body=body, resolve_error=None))
    if logs:
        session.execute(insert(DeliveryAttempt), logs)
    if updates:
        session.execute(_UPDATE_DELIVERY, updates)
    _record_health(state, now, succeeded, failures)
    batch_ids = [outcome.item.id for outcome in outcomes]
    if gone:
        disable_subscriptions(session, gone, GONE_REASON, now=now)
        cancel_open_deliveries(session, gone, GONE_REASON, now=now, exclude=batch_ids)
    session.commit()

    _after_commit(state, now, retries, dead, [item.id for item in released])
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    for signal, payload in notices:
        if signal.receivers:
            signal.send(app, **payload)
    if gone and signals.subscription_disabled.receivers:
        for subscription_id in gone:
            signals.subscription_disabled.send(app, subscription_id=subscription_id, reason=GONE_REASON)


def _record_health(state: AppState, now: datetime, succeeded: set[int], failures: dict[int, int]) -> None:
    """Track each endpoint's health: a success resets it, failures count up from the first."""
    session = state.db.session
    if succeeded:
        session.execute(
            update(Subscription)
            .where(Subscription.subscription_id.in_(succeeded))
            .values(last_success_at=now, failing_since=None, consecutive_failures=0)
            .execution_options(synchronize_session=False)
        )
    failing = [
        {"b_sid": subscription_id, "b_n": count, "b_now": now}
        for subscription_id, count in failures.items()
        if subscription_id not in succeeded
    ]
    if failing:
        session.execute(_HEALTH_FAILURE, failing)


def _after_commit(
    state: AppState,
    now: datetime,
    retries: dict[datetime, list[int]],
    dead: list[tuple[int, str, str]],
    released: list[int],
) -> None:
    """Tell RQ what the database now says. If Redis fails here, maintenance catches up from the rows."""
    try:
        state.queues.schedule_deliveries(retries, now)
        state.queues.record_dead_letters(dead)
        state.queues.enqueue_deliveries(released)
    except RedisError as exc:
        log.warning("Could not schedule follow-up jobs (%s); maintenance will re-enqueue them", exc)
