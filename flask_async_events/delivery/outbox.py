"""The transactional outbox: a published event is a row in the publisher's own transaction, and
it is handed to the workers only after the outermost commit.

A commit hands its events' ids to the process's nudger thread (:mod:`flask_async_events.nudger`),
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
from typing import Any, cast

from flask import current_app
from sqlalchemy import CursorResult, Table, insert, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, SessionTransaction, scoped_session

from flask_async_events import signals, tracing
from flask_async_events.definitions import check_store_id
from flask_async_events.delivery.dialects import has_row_locks
from flask_async_events.errors import InvalidArguments, InvalidEvent, InvalidValue
from flask_async_events.models import Event, utcnow
from flask_async_events.state import EXTENSION_KEY, AppState

PENDING_KEY = "async_events.pending_event_ids"
MAX_IDEMPOTENCY_KEY = 255
INSTALLED_FLAG = "_async_events_outbox_hooks"

log = logging.getLogger("flask_async_events")
_EVENT = cast(Table, Event.__table__)
_INSERT_EVENT = insert(_EVENT)


def publish_event(
    state: AppState, name: str, store_id: int, arguments: dict[str, Any], idempotency_key: str | None = None
) -> str:
    """Check an event and add it to the current session; return its id (see ``AsyncEvents.publish``).
    With an ``idempotency_key`` already used for this event within the idempotency window, add
    nothing and return the first event's id."""
    definition = state.definitions.get(name)
    if definition is None:
        defined = ", ".join(d.name for d in state.definitions) or "none"
        raise InvalidEvent(f"event {name!r} is not defined (defined events: {defined})")
    check_store_id(store_id)
    definition.bind(arguments)
    try:
        encoded = json.dumps(arguments, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArguments(f"the arguments of event {definition.name!r} must be JSON-serialisable: {exc}") from None
    event_uuid = str(uuid.uuid4())
    row: dict[str, Any] = {
        "uuid": event_uuid,
        "event_name": definition.name,
        "store_id": store_id,
        "arguments": encoded,
        "created_at": utcnow(),
    }
    attributes = {"async_events.event": definition.name, "async_events.event_uuid": event_uuid}
    with tracing.span("async_events.publish", attributes, kind="PRODUCER"):
        row["trace_context"] = tracing.current_context()
        if idempotency_key is None:
            _insert(state.db.session, row)
        else:
            first = _insert_once(state, row, _check_key(idempotency_key))
            if first is not None:
                return first
    if signals.event_published.receivers:
        signals.event_published.send(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            event_id=event_uuid,
            event_name=definition.name,
            store_id=store_id,
        )
    return event_uuid


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidValue(f"idempotency_key must be text of 1 to {MAX_IDEMPOTENCY_KEY} characters, got {key!r}")
    return key


def _insert(session: scoped_session[Any], row: dict[str, Any]) -> None:
    """Insert the event's row now, in the publisher's transaction (a Core statement on the
    session's connection: the ORM's unit of work, or even its execution of a Core statement, would
    cost the request more than the INSERT itself), and note its id for the nudge after the commit."""
    connection = session.connection(bind_arguments={"clause": _INSERT_EVENT})
    result = cast(CursorResult[Any], connection.execute(_INSERT_EVENT, row))
    event_id = result.inserted_primary_key[0]  # type: ignore[index]  # one row: never None
    session.info.setdefault(PENDING_KEY, []).append(event_id)


def _insert_once(state: AppState, row: dict[str, Any], key: str) -> str | None:
    """Insert the event under ``key`` unless an event of its name holds that key within the window:
    then return that event's id. The unique index on (name, key) decides a race, inside a
    savepoint, so a losing publisher's transaction goes on; only then is the winner read with a
    locking read, which sees it committed whatever the isolation level (a locking read of a key
    nobody holds yet would take a gap lock in MySQL, and two racers would deadlock)."""
    session = state.db.session
    first = _holder(session, row["event_name"], key, lock=False)
    if first is not None:
        if first.created_at > utcnow() - timedelta(seconds=state.settings.idempotency_window):
            return str(first.uuid)
        # Its window has passed: the key may be used again.
        session.execute(update(_EVENT).where(_EVENT.c.id == first.id).values(idempotency_key=None))
    try:
        with session.begin_nested():
            _insert(session, {**row, "idempotency_key": key})
    except IntegrityError:
        winner = _holder(session, row["event_name"], key, lock=True)
        if winner is None:  # it was rolled back meanwhile: ours may take the key after all
            raise
        return str(winner.uuid)
    return None


def _holder(session: scoped_session[Any], event_name: str, key: str, *, lock: bool) -> Any:
    """The id, uuid and creation time of the event holding ``key`` for ``event_name``; with
    ``lock``, a locking read where the database has them."""
    query = select(_EVENT.c.id, _EVENT.c.uuid, _EVENT.c.created_at).where(
        _EVENT.c.event_name == event_name, _EVENT.c.idempotency_key == key
    )
    if lock and has_row_locks(session):
        query = query.with_for_update(read=True)
    return session.execute(query).first()


def install_session_hooks(session: scoped_session[Any]) -> None:
    """Listen on the host's session once, however many apps share it."""
    if getattr(session, INSTALLED_FLAG, False):
        return
    sa_event.listen(session, "after_commit", _enqueue_after_commit)
    sa_event.listen(session, "after_soft_rollback", _forget_on_rollback)
    setattr(session, INSTALLED_FLAG, True)


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
