"""The transactional outbox: a published event is a row in the publisher's own transaction, and
it is handed to the workers only after the outermost commit.

A commit hands its events' ids to the process's nudger thread (:mod:`flask_async_events.delivery.nudger`),
which enqueues a trigger job for them (or, where the database has row locks, only if no trigger
job is waiting: that one takes them too); the publisher never waits for Redis. If Redis is down,
or the process dies first, the rows stay untriggered and the workers' maintenance relays them
later: a lost nudge, never a lost event.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, SessionTransaction, scoped_session

from flask_async_events import signals, tracing
from flask_async_events.definitions import check_store_id
from flask_async_events.delivery.dialects import has_row_locks
from flask_async_events.models import Event, utcnow
from flask_async_events.state import EXTENSION_KEY, AppState

PENDING_KEY = "async_events.pending_event_ids"
MAX_IDEMPOTENCY_KEY = 255
INSTALLED_FLAG = "_async_events_outbox_hooks"

log = logging.getLogger("flask_async_events")


def publish_event(
    state: AppState, name: str, store_id: int, arguments: dict[str, Any], idempotency_key: str | None = None
) -> str:
    """Check an event and add it to the current session; return its id (see ``AsyncEvents.publish``).
    With an ``idempotency_key`` already used for this event within the idempotency window, add
    nothing and return the first event's id."""
    definition = state.definitions.get(name)
    if definition is None:
        defined = ", ".join(d.name for d in state.definitions) or "none"
        raise ValueError(f"event {name!r} is not defined (defined events: {defined})")
    check_store_id(store_id)
    definition.bind(arguments)
    try:
        encoded = json.dumps(arguments, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the arguments of event {definition.name!r} must be JSON-serialisable: {exc}") from None
    event = Event(uuid=str(uuid.uuid4()), event_name=definition.name, store_id=store_id, arguments=encoded)
    attributes = {"async_events.event": definition.name, "async_events.event_uuid": event.uuid}
    with tracing.span("async_events.publish", attributes, kind="PRODUCER"):
        event.trace_context = tracing.current_context()
        if idempotency_key is None:
            state.db.session.add(event)
        else:
            first = _add_once(state, event, _check_key(idempotency_key))
            if first is not None:
                return first
    if signals.event_published.receivers:
        signals.event_published.send(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            event_id=event.uuid,
            event_name=event.event_name,
            store_id=store_id,
        )
    return event.uuid


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise ValueError(f"idempotency_key must be text of 1 to {MAX_IDEMPOTENCY_KEY} characters, got {key!r}")
    return key


def _add_once(state: AppState, event: Event, key: str) -> str | None:
    """Add ``event`` under ``key`` unless an event of its name holds that key within the window:
    then return that event's id. The unique index on (name, key) decides a race, inside a
    savepoint, so a losing publisher's transaction goes on; only then is the winner read with a
    locking read, which sees it committed whatever the isolation level (a locking read of a key
    nobody holds yet would take a gap lock in MySQL, and two racers would deadlock)."""
    session = state.db.session
    first = _holder(session, event.event_name, key, lock=False)
    if first is not None:
        if first.created_at > utcnow() - timedelta(seconds=state.settings.idempotency_window):
            return first.uuid
        first.idempotency_key = None  # its window has passed: the key may be used again
    event.idempotency_key = key
    try:
        with session.begin_nested():
            session.add(event)
    except IntegrityError:
        winner = _holder(session, event.event_name, key, lock=True)
        if winner is None:  # it was rolled back meanwhile: ours may take the key after all
            raise
        return winner.uuid
    return None


def _holder(session: Any, event_name: str, key: str, *, lock: bool) -> Event | None:
    """The event holding ``key`` for ``event_name``; with ``lock``, a locking read where the
    database has them."""
    query = select(Event).where(Event.event_name == event_name, Event.idempotency_key == key)
    if lock and has_row_locks(session):
        query = query.with_for_update(read=True)
    return session.scalar(query.execution_options(populate_existing=True))


def install_session_hooks(session: scoped_session[Any]) -> None:
    """Listen on the host's session once, however many apps share it."""
    if getattr(session, INSTALLED_FLAG, False):
        return
    sa_event.listen(session, "after_flush", _collect_event_ids)
    sa_event.listen(session, "after_commit", _enqueue_after_commit)
    sa_event.listen(session, "after_soft_rollback", _forget_on_rollback)
    setattr(session, INSTALLED_FLAG, True)


def _collect_event_ids(session: Session, flush_context: Any) -> None:
    ids = [obj.id for obj in session.new if isinstance(obj, Event)]
    if ids:
        session.info.setdefault(PENDING_KEY, []).extend(ids)


def _enqueue_after_commit(session: Session) -> None:
    # A released SAVEPOINT fires after_commit too; only the outermost commit counts.
    if session.in_nested_transaction():
        return
    ids: list[int] = session.info.pop(PENDING_KEY, [])
    if not ids:
        return
    state: AppState | None = current_app.extensions.get(EXTENSION_KEY)
    if state is None:
        return
    state.nudger.nudge(ids)


def _forget_on_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop(PENDING_KEY, None)


def relay_untriggered(state: AppState, *, limit: int = 5000) -> int:
    """Enqueue trigger jobs for events committed but never triggered (e.g. Redis was down)."""
    cutoff = utcnow() - timedelta(seconds=state.settings.relay_after)
    ids = list(
        state.db.session.scalars(
            select(Event.id)
            .where(Event.triggered_at.is_(None), Event.created_at <= cutoff)
            .order_by(Event.id)
            .limit(limit)
        )
    )
    if ids:
        state.queues.enqueue_trigger(ids)
        log.info("Relayed %d untriggered event(s)", len(ids))
    return len(ids)
