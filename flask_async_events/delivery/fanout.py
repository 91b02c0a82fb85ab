"""The trigger job: turn committed events into delivery rows, one per matching subscription.

Idempotent: events are locked and marked triggered in one transaction, and deliveries are unique
per (event, subscription), so running it twice creates nothing twice.

Where the database has row locks, a trigger job takes up to a batch of all untriggered events, not
only its own, and a commit enqueues a job only if none is waiting (see
:meth:`~flask_async_events.queues.Queues.request_trigger`): under load, events coalesce into
batches and RQ's per-job cost is paid per batch; when idle, each event still gets a job at once.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from redis.exceptions import RedisError
from sqlalchemy import ColumnElement, Select, Table, bindparam, or_, select, text

from flask_async_events import tracing
from flask_async_events.definitions import receives
from flask_async_events.delivery.claims import SENDING_COLUMNS, claimed, lease_end
from flask_async_events.delivery.deliver import send_claimed
from flask_async_events.delivery.dialects import has_row_locks, inserted_rows, update_rows
from flask_async_events.delivery.dispatcher import dispatcher_of
from flask_async_events.delivery.filters import admits
from flask_async_events.delivery.operational import event_owner, is_operational, sees
from flask_async_events.delivery.payloads import describe_error, resolve_body
from flask_async_events.delivery.types import Claimed, PublishedEvent
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


def new_uuids(count: int) -> Iterator[str]:
    """``count`` random (version 4) UUIDs from one read of the OS's random source. Each
    ``uuid4()`` reads it on its own and lets go of the GIL while it does: in a worker, whose sending
    threads take the GIL at once, a wait to get it back for every delivery row."""
    random = os.urandom(16 * count)
    return (str(uuid.UUID(bytes=random[start : start + 16], version=4)) for start in range(0, len(random), 16))


def delivery_row(
    delivery_uuid: str,
    event_id: int,
    subscription_id: int,
    now: datetime,
    claim_token: str | None = None,
    lease_until: datetime | None = None,
) -> dict[str, Any]:
    """A new delivery ``delivery_uuid`` (see :func:`new_uuids`), due now, as inserted (ignoring one that
    exists: unique per event and subscription); with a ``claim_token``, already claimed by that
    worker until ``lease_until``."""
    return {
        "uuid": delivery_uuid,
        "event_id": event_id,
        "subscription_id": subscription_id,
        "state": DeliveryState.PENDING if claim_token is None else DeliveryState.DELIVERING,
        "claim_token": claim_token,
        "lease_until": lease_until,
        "attempt_count": 0,
        "round_attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


def recipients(
    state: AppState, event: PublishedEvent, candidates: Sequence[Any], grants: Mapping[str, frozenset[str] | None]
) -> list[Any]:
    """The candidate subscriptions (rows with ``pattern``, ``store_id`` and ``owner``) an event
    reaches by name, store scope and its owner's resources; operational events reach only their
    owner's. Filters, which need the payload, are asked afterwards."""
    needed = _resources(state, event.event_name)
    operational = is_operational(event.event_name)
    about = event_owner(event.arguments) if operational else None
    return [
        candidate
        for candidate in candidates
        if receives(candidate.pattern, candidate.store_id, event.event_name, event.store_id)
        and _granted(grants.get(candidate.owner or ""), needed)
        and (not operational or sees(candidate.owner, about, grants))
    ]


@dataclass
class _Plan:
    """What one trigger writes: each event's mark (its body or why it failed), the delivery rows,
    and the first of them, claimed by this worker to send from here (by delivery uuid)."""

    token: str
    marks: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    sending: dict[str, tuple[PublishedEvent, Any, str | None]] = field(default_factory=dict)


def trigger(state: AppState, event_ids: Sequence[int]) -> int:
    """Resolve and fan out the given events; return how many deliveries were created. If this
    worker's senders have room, the first batch is inserted already claimed by it and sent from
    here (no claim, no second job, no queue hop); the rest become deliver jobs, for any worker."""
    events = _take_events(state, event_ids)
    if not events:
        state.db.session.rollback()
        return 0
    tracing.link_current(event.trace_context for event in events)
    matches = _recipients_of(state, events)
    bodies = _resolve_all(state, [event for event in events if matches[event.id]])
    filtered = _apply_filters(events, matches, bodies)
    plan = _plan(state, events, matches, bodies, utcnow())
    pending, claimed_here = _write(state, events, plan)
    if filtered:
        state.queues.count_filtered(filtered)
    state.queues.enqueue_deliveries(pending)
    send_claimed(state, claimed_here)
    return len(plan.rows)


def _take_events(state: AppState, event_ids: Sequence[int]) -> list[PublishedEvent]:
    """The untriggered events to fan out, locked: these (where the database has no row locks), or
    up to a batch of any (where it has; a full batch asks for another job, as there may be more)."""
    session = state.db.session
    sweep = has_row_locks(session)
    if sweep:
        _take_trigger_request(state)
    batch = max(state.settings.batch_size, len(event_ids))
    chosen = {"b_limit": batch} if sweep else {"b_limit": batch, "b_ids": list(event_ids)}
    events: list[PublishedEvent] = list(session.execute(_UNTRIGGERED if sweep else _UNTRIGGERED_AMONG, chosen))
    if sweep and len(events) == batch:
        state.queues.enqueue_trigger([])  # there may be more: another worker can take the next batch
    return events


def _recipients_of(state: AppState, events: list[PublishedEvent]) -> dict[int, list[Any]]:
    """For each event, the enabled subscriptions it reaches (filters aside)."""
    session = state.db.session
    names = {event.event_name for event in events}
    candidates = session.execute(_CANDIDATES, {"b_names": sorted(names)}).all()
    grants = owner_resources(session, {candidate.owner for candidate in candidates if candidate.owner})
    return {event.id: recipients(state, event, candidates, grants) for event in events}


def _plan(
    state: AppState,
    events: list[PublishedEvent],
    matches: dict[int, list[Any]],
    bodies: dict[int, str | Exception],
    now: datetime,
) -> _Plan:
    """The rows to write. A lease covers one wait for room and one send: senders that are full
    claim nothing (the event's rows are not held back waiting here), and deliver jobs take the
    batch where there is room."""
    dispatcher = dispatcher_of(state)
    plan = _Plan(dispatcher.journal.claim_token())
    lease = lease_end(state, now)
    to_claim = state.settings.batch_size if dispatcher.sender.startable() > 0 else 0
    uuids = new_uuids(sum(len(matched) for matched in matches.values()))
    for event in events:
        body, error = _body_or_error(event, bodies.get(event.id))
        plan.marks.append({"b_id": event.id, "b_now": now, "b_body": body, "b_error": error})
        for candidate in matches[event.id]:
            claim = len(plan.sending) < to_claim
            holder = (plan.token, lease) if claim else (None, None)
            row = delivery_row(next(uuids), event.id, candidate.subscription_id, now, *holder)
            if claim:
                plan.sending[row["uuid"]] = (event, candidate, body)
            plan.rows.append(row)
    return plan


def _body_or_error(event: PublishedEvent, resolved: str | Exception | None) -> tuple[str | None, str | None]:
    """An event's body as stored, or why it did not resolve (logged)."""
    if not isinstance(resolved, Exception):
        return resolved, None
    error = describe_error(resolved)
    log.warning("Event %s (%s): %s", event.uuid, event.event_name, error)
    return None, error


def _write(state: AppState, events: list[PublishedEvent], plan: _Plan) -> tuple[list[int], list[Claimed]]:
    """Mark the events triggered and insert their deliveries (not those another trigger of the
    same event made first), in one transaction; the ids to enqueue, and the first batch claimed."""
    session = state.db.session
    update_rows(session, _MARK_TRIGGERED, _MARK_ALL_TRIGGERED, plan.marks)
    made = inserted_rows(
        session,
        _DELIVERY,
        plan.rows,
        ("id", "uuid"),
        key="uuid",
        among=_DELIVERY.c.event_id.in_([e.id for e in events]),
    )
    made.sort(key=lambda delivery: delivery.id)
    pending = [delivery.id for delivery in made if delivery.uuid not in plan.sending]
    claimed_here = [
        _claimed(delivery.id, delivery.uuid, plan.token, *plan.sending[delivery.uuid])
        for delivery in made
        if delivery.uuid in plan.sending
    ]
    session.commit()
    return pending, claimed_here


def _claimed(
    delivery_id: int, uuid: str, token: str, event: PublishedEvent, subscription: Any, body: str | None
) -> Claimed:
    """A delivery the trigger inserted claimed, as a deliver job's claim would have read it."""
    return claimed(
        subscription,
        token,
        id=delivery_id,
        uuid=uuid,
        attempt_count=0,
        round_attempts=0,
        event_id=event.id,
        event_uuid=event.uuid,
        event_name=event.event_name,
        body=body,
        created_at=event.created_at,
        event_store_id=event.store_id,
        event_trace=event.trace_context,
    )


_EVENT = cast(Table, Event.__table__)
_DELIVERY = cast(Table, Delivery.__table__)
# What the trigger reads of an event (a PublishedEvent).
_READ = (Event.id, Event.uuid, Event.event_name, Event.store_id, Event.arguments, Event.created_at, Event.trace_context)


def _untriggered(*terms: ColumnElement[bool]) -> Select[*tuple[Any, ...]]:
    """Up to ``b_limit`` untriggered events that ``terms`` also select, locked, skipping those
    another trigger job holds: the columns the trigger reads, as rows."""
    return (
        select(*_READ)
        .where(Event.triggered_at.is_(None), *terms)
        .limit(bindparam("b_limit"))
        .with_for_update(skip_locked=True)
    )


# The trigger's queries, built once: building them (and their cache keys) per job cost more CPU
# than the database took to answer them.
_UNTRIGGERED = _untriggered()
_UNTRIGGERED_AMONG = _untriggered(Event.id.in_(bindparam("b_ids", expanding=True)))
_CANDIDATES = select(*SENDING_COLUMNS, Subscription.owner).where(
    Subscription.status.is_(True),
    Subscription.deleted_at.is_(None),
    or_(Subscription.event_name.in_(bindparam("b_names", expanding=True)), Subscription.event_name.contains("*")),
)
_MARK_TRIGGERED = (
    _EVENT.update()
    .where(_EVENT.c.id == bindparam("b_id"))
    .values(triggered_at=bindparam("b_now"), body=bindparam("b_body"), resolve_error=bindparam("b_error"))
)
# The same for the whole batch in one statement, on PostgreSQL.
_MARK_ALL_TRIGGERED = text(
    f"""UPDATE {_EVENT.name} AS e SET triggered_at = v.now, body = v.body, resolve_error = v.error
    FROM unnest(CAST(:b_id AS BIGINT[]), CAST(:b_now AS TIMESTAMP[]), CAST(:b_body AS TEXT[]),
        CAST(:b_error AS TEXT[])) AS v(id, now, body, error)
    WHERE e.id = v.id"""
)


def _apply_filters(
    events: list[PublishedEvent], matches: dict[int, list[Any]], bodies: dict[int, str | Exception]
) -> int:
    """Keep, in ``matches``, the subscriptions each event passes the filter of (or
    might, if its payload did not resolve); return how many were filtered out. Each body is
    parsed once, and only for an event a filtered subscription matched."""
    filtered = 0
    for event in events:
        document: dict[str, Any] | None = None
        kept: list[Any] = []
        for candidate in matches[event.id]:
            if candidate.filter:
                body = bodies.get(event.id)
                if document is None and isinstance(body, str):
                    document = json.loads(body)
                if admits(candidate.filter, document, event.event_name, event.store_id) is False:
                    filtered += 1
                    continue
            kept.append(candidate)
        matches[event.id] = kept
    return filtered


def _resolve_all(state: AppState, events: list[PublishedEvent]) -> dict[int, str | Exception]:
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
