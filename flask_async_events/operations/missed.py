"""Recovering what a subscription missed: the events published since a time that it would receive
now (by name, store scope, its owner's resources and its filter) but never got a delivery for, say
because it was disabled, or its filter or store changed. Only events still in the outbox (not
pruned) can be recovered, and never one published before the subscription was made: a new
subscription is not a way into what others were sent before it.

Events are read in id order, a batch at a time, each batch its own transaction; the deliveries are
inserted ignoring duplicates (unique per event and subscription), so a fan-out or a second
recovery running at the same time creates nothing twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, select

from flask_async_events.delivery.dialects import insert_ignoring_duplicates
from flask_async_events.delivery.fanout import delivery_row, new_uuids, recipients
from flask_async_events.delivery.filters import admits
from flask_async_events.delivery.payloads import resolve_body
from flask_async_events.models import Delivery, Event, Subscription, utcnow
from flask_async_events.operations.replay import Step
from flask_async_events.owners import owner_resources
from flask_async_events.state import AppState

DEFAULT_BATCH = 1000


def _never_delivered(subscription: Subscription, since: datetime) -> list[Any]:
    """Fanned-out events published since ``since``, and after the subscription was made (strictly:
    a database that keeps whole seconds cannot tell the order of the two within one), with no
    delivery for ``subscription``."""
    since = max(since, subscription.subscribed_at)
    conditions: list[Any] = [
        Event.created_at >= since,
        Event.created_at > subscription.subscribed_at,
        Event.triggered_at >= since,  # indexed, and never earlier than created_at
        ~exists().where(and_(Delivery.event_id == Event.id, Delivery.subscription_id == subscription.subscription_id)),
    ]
    if "*" not in subscription.event_name:
        conditions.append(Event.event_name == subscription.event_name)
    return conditions


def count_unreceived(state: AppState, subscription: Subscription, since: datetime) -> int:
    """How many events since ``since`` (and since the subscription was made) the subscription has
    no delivery for: what a recovery examines; those it would receive now are among them."""
    count = state.db.session.scalar(
        select(func.count()).select_from(Event).where(*_never_delivered(subscription, since))
    )
    return count or 0


def recover_missed(
    state: AppState,
    subscription: Subscription,
    since: datetime,
    *,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Deliver the events since ``since`` the subscription missed; return the uuids of the new
    deliveries (with ``dry_run``, of the events it would deliver, creating nothing)."""
    found: list[str] = []
    after: int | None = 0
    while after is not None:
        step = recover_missed_batch(state, subscription, since, after=after, batch_size=batch_size, dry_run=dry_run)
        found.extend(step.uuids)
        after = step.after
        if progress is not None and step.examined:
            progress(step.examined)
    return found


def recover_missed_batch(
    state: AppState, subscription: Subscription, since: datetime, *, after: int, batch_size: int, dry_run: bool = False
) -> Step:
    """The next ``batch_size`` events after id ``after`` that the subscription has no delivery for,
    since ``since`` but never from before the subscription was made (what was published before it
    is not its to receive); those it would receive now get one, committed and enqueued."""
    session = state.db.session
    events = list(
        session.scalars(
            select(Event)
            .where(Event.id > after, *_never_delivered(subscription, since))
            .order_by(Event.id)
            .limit(batch_size)
        )
    )
    if not events:
        session.rollback()
        return Step([], 0, None)
    grants = owner_resources(session, [subscription.owner] if subscription.owner else [])
    target = _Target(subscription)
    chosen = [
        event
        for event in events
        if recipients(state, event, [target], grants)
        and admits(target.filter, _document(state, event, target.filter), event.event_name, event.store_id) is not False
    ]
    if dry_run:
        session.rollback()
        uuids = [event.uuid for event in chosen]
    else:
        uuids = _deliver(state, target.subscription_id, [event.id for event in chosen])
    return Step(uuids, len(events), events[-1].id)


def _document(state: AppState, event: Event, query: str | None) -> dict[str, Any] | None:
    """An event's parsed body for a filter, resolved now if nobody needed it at fan-out (it then
    reached no subscription); None if it does not resolve."""
    if not query:
        return None
    if event.body is None:
        try:
            with state.db.session.begin_nested():
                event.body = resolve_body(state.definitions, event, state.settings.payload_format)
        except Exception:  # the service is the host's code; the delivery will try again
            return None
    document: dict[str, Any] = json.loads(event.body)
    return document


class _Target:
    """The subscription as fan-out sees a candidate (plain values, read once)."""

    def __init__(self, subscription: Subscription) -> None:
        self.subscription_id = subscription.subscription_id
        self.pattern = subscription.event_name
        self.store_id = subscription.store_id
        self.owner = subscription.owner
        self.filter = subscription.filter


def _deliver(state: AppState, subscription_id: int, event_ids: list[int]) -> list[str]:
    """New deliveries of ``event_ids`` to the subscription, committed and enqueued; their uuids."""
    session = state.db.session
    if not event_ids:
        session.rollback()
        return []
    now = utcnow()
    rows = [
        delivery_row(delivery_uuid, event_id, subscription_id, now)
        for delivery_uuid, event_id in zip(new_uuids(len(event_ids)), event_ids, strict=True)
    ]
    insert_ignoring_duplicates(session, Delivery.__table__, rows)  # type: ignore[arg-type]
    made = session.execute(
        select(Delivery.id, Delivery.uuid).where(
            Delivery.subscription_id == subscription_id,
            Delivery.event_id.in_(event_ids),
            Delivery.uuid.in_([row["uuid"] for row in rows]),
        )
    ).all()
    session.commit()
    state.queues.enqueue_deliveries([row.id for row in made])
    return [row.uuid for row in made]
