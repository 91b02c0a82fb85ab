"""The trigger job: turn committed events into delivery rows, one per matching subscription.

Idempotent: events are locked and marked triggered in one transaction, and deliveries are unique
per (event, subscription), so running it twice creates nothing twice.

Where the database has row locks, a trigger job takes up to a batch of all untriggered events, not
only its own, and a commit enqueues a job only if none is waiting (see
:meth:`~flask_async_events.delivery.queues.Queues.request_trigger`): under load, events coalesce into
batches and RQ's per-job cost is paid per batch; when idle, each event still gets a job at once.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from redis.exceptions import RedisError
from sqlalchemy import Table, and_, bindparam, or_, select

from flask_async_events import tracing
from flask_async_events.definitions import receives
from flask_async_events.delivery.deliver import deliver
from flask_async_events.delivery.dialects import has_row_locks, insert_ignoring_duplicates
from flask_async_events.delivery.filters import admits
from flask_async_events.delivery.operational import event_owner, is_operational, sees
from flask_async_events.delivery.payloads import describe_error, resolve_body
from flask_async_events.models import Delivery, DeliveryState, Event, Subscription, utcnow
from flask_async_events.owners import owner_resources
from flask_async_events.state import AppState

log = logging.getLogger("flask_async_events")


def _resources(state: AppState, event_name: str) -> frozenset[str]:
    definition = state.definitions.get(event_name)
    return frozenset(definition.resources) if definition is not None else frozenset()


def _granted(held: frozenset[str] | None, needed: frozenset[str]) -> bool:
    """A token-owned subscription (a wildcard, say) gets only events whose resources its token holds."""
    return held is None or needed <= held


def delivery_row(event_id: int, subscription_id: int, now: datetime) -> dict[str, Any]:
    """A new delivery, due now, as inserted (ignoring one that exists: unique per event and subscription)."""
    return {
        "uuid": str(uuid.uuid4()),
        "event_id": event_id,
        "subscription_id": subscription_id,
        "state": DeliveryState.PENDING,
        "attempt_count": 0,
        "round_attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


def recipients(
    state: AppState, event: Event, candidates: Sequence[Any], grants: Mapping[str, frozenset[str] | None]
) -> list[Any]:
    """The candidate subscriptions (rows with ``event_name``, ``store_id`` and ``owner``) an event
    reaches by name, store scope and its owner's resources; operational events reach only their
    owner's. Filters, which need the payload, are asked afterwards."""
    needed = _resources(state, event.event_name)
    operational = is_operational(event.event_name)
    about = event_owner(event.arguments) if operational else None
    return [
        candidate
        for candidate in candidates
        if receives(candidate.event_name, candidate.store_id, event.event_name, event.store_id)
        and _granted(grants.get(candidate.owner or ""), needed)
        and (not operational or sees(candidate.owner, about, grants))
    ]


def trigger(state: AppState, event_ids: Sequence[int]) -> int:
    """Resolve and fan out the given events; return how many deliveries were created."""
    session = state.db.session
    sweep = has_row_locks(session)
    if sweep:
        _take_trigger_request(state)
    chosen = Event.triggered_at.is_(None) if sweep else and_(Event.id.in_(event_ids), Event.triggered_at.is_(None))
    batch = max(state.settings.batch_size, len(event_ids))
    events = list(session.scalars(select(Event).where(chosen).limit(batch).with_for_update(skip_locked=True)))
    if sweep and len(events) == batch:
        state.queues.enqueue_trigger([])  # there may be more: another worker can take the next batch
    if not events:
        session.rollback()
        return 0
    tracing.link_current(event.trace_context for event in events)
    names = {event.event_name for event in events}
    candidates = session.execute(
        select(
            Subscription.subscription_id,
            Subscription.event_name,
            Subscription.store_id,
            Subscription.owner,
            Subscription.filter,
        ).where(
            Subscription.status.is_(True),
            or_(Subscription.event_name.in_(names), Subscription.event_name.contains("*")),
        )
    ).all()
    grants = owner_resources(session, {candidate.owner for candidate in candidates if candidate.owner})
    now = utcnow()
    matches = {event.id: recipients(state, event, candidates, grants) for event in events}
    bodies = _resolve_all(state, [event for event in events if matches[event.id]])
    filtered = _apply_filters(events, matches, bodies)
    marks: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for event in events:
        body = bodies.get(event.id)
        error = describe_error(body) if isinstance(body, Exception) else None
        if error is not None:
            log.warning("Event %s (%s): %s", event.uuid, event.event_name, error)
        marks.append(
            {"b_id": event.id, "b_now": now, "b_body": body if isinstance(body, str) else None, "b_error": error}
        )
        rows.extend(delivery_row(event.id, subscription_id, now) for subscription_id in matches[event.id])
    session.execute(_MARK_TRIGGERED, marks)
    triggered_ids = [event.id for event in events]
    insert_ignoring_duplicates(session, Delivery.__table__, rows)  # type: ignore[arg-type]
    delivery_ids: list[int] = []
    if rows:  # read in the same transaction: no second commit
        delivery_ids = list(
            session.scalars(
                select(Delivery.id)
                .where(Delivery.event_id.in_(triggered_ids), Delivery.state == DeliveryState.PENDING)
                .order_by(Delivery.id)
            )
        )
    session.commit()
    if filtered:
        state.queues.count_filtered(filtered)
    if delivery_ids:
        # The first batch goes straight to this worker's senders (no second job, no queue hop);
        # the rest are deliver jobs, for any worker.
        first = delivery_ids[: state.settings.batch_size]
        state.queues.enqueue_deliveries(delivery_ids[len(first) :])
        deliver(state, first)
    return len(rows)


_EVENT = cast(Table, Event.__table__)
_MARK_TRIGGERED = (
    _EVENT.update()
    .where(_EVENT.c.id == bindparam("b_id"))
    .values(triggered_at=bindparam("b_now"), body=bindparam("b_body"), resolve_error=bindparam("b_error"))
)


def _apply_filters(events: list[Event], matches: dict[int, list[Any]], bodies: dict[int, str | Exception]) -> int:
    """Keep, in ``matches``, the ids of the subscriptions each event passes the filter of (or
    might, if its payload did not resolve); return how many were filtered out. Each body is
    parsed once, and only for an event a filtered subscription matched."""
    filtered = 0
    for event in events:
        document: dict[str, Any] | None = None
        kept: list[int] = []
        for candidate in matches[event.id]:
            if candidate.filter:
                body = bodies.get(event.id)
                if document is None and isinstance(body, str):
                    document = json.loads(body)
                if admits(candidate.filter, document, event.event_name, event.store_id) is False:
                    filtered += 1
                    continue
            kept.append(candidate.subscription_id)
        matches[event.id] = kept
    return filtered


def _resolve_all(state: AppState, events: list[Event]) -> dict[int, str | Exception]:
    """Each event's body, or why it failed. All in one savepoint; if anything fails, again with a
    savepoint per event, so a database error inside the host's service spoils only its own event
    (the services of that batch then run twice, which a payload service must allow anyway)."""
    session = state.db.session
    payload_format = state.settings.payload_format
    bodies: dict[int, str | Exception] = {}
    try:
        with session.begin_nested():
            for event in events:
                bodies[event.id] = resolve_body(state.definitions, event, payload_format)
        return bodies
    except Exception:  # the service is the host's code: anything may happen
        bodies.clear()
    for event in events:
        try:
            with session.begin_nested():
                bodies[event.id] = resolve_body(state.definitions, event, payload_format)
        except Exception as exc:
            bodies[event.id] = exc
    return bodies


def _take_trigger_request(state: AppState) -> None:
    """Clear the "a trigger job is waiting" mark before looking for events: a commit after this
    enqueues a new job, and one before it is seen by this job's query."""
    try:
        state.queues.take_trigger_request()
    except RedisError as exc:
        log.warning("Could not clear the trigger request mark (%s); it expires by itself", exc)
