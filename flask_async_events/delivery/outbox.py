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
from sqlalchemy.orm import Session, SessionTransaction, scoped_session

from flask_async_events import signals
from flask_async_events.definitions import check_store_id
from flask_async_events.models import Event, utcnow
from flask_async_events.state import EXTENSION_KEY, AppState

PENDING_KEY = "async_events.pending_event_ids"
INSTALLED_FLAG = "_async_events_outbox_hooks"

log = logging.getLogger("flask_async_events")


def publish_event(state: AppState, name: str, store_id: int, arguments: dict[str, Any]) -> str:
    """Check an event and add it to the current session; return its id (see ``AsyncEvents.publish``)."""
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
    state.db.session.add(event)
    if signals.event_published.receivers:
        signals.event_published.send(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            event_id=event.uuid,
            event_name=event.event_name,
            store_id=store_id,
        )
    return event.uuid


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
