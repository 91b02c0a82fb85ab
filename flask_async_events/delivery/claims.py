"""Claims: a delivery a worker takes is marked ``delivering`` with the worker's token and a lease,
and read with what sending it needs (its event, and its subscription's :data:`SENDING_COLUMNS`).

A deliver job claims due rows (:func:`claim`); the trigger job inserts its first batch already
claimed, building the same :class:`~flask_async_events.delivery.types.Claimed` values
(:func:`claimed`) from what it read; maintenance takes over the claims of lost workers
(``expired``). The claim token fences each delivery's result to the claim that took it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, select, update

from flask_async_events.delivery.types import Claimed
from flask_async_events.models import Delivery, DeliveryState, Event, Subscription, utcnow
from flask_async_events.state import AppState

CLOCK_SLACK = timedelta(seconds=1)


def lease_end(state: AppState, now: datetime) -> datetime:
    """When a claim made ``now`` ends, if its worker has not recorded it by then."""
    return now + timedelta(seconds=state.settings.claim_lease)


# What sending needs of a delivery's subscription, read with the claim.
SENDING_COLUMNS = (
    Subscription.subscription_id,
    Subscription.event_name.label("pattern"),
    Subscription.recipient_url,
    Subscription.verification_token,
    Subscription.previous_tokens,
    Subscription.headers,
    Subscription.notifier,
    Subscription.store_id,
    Subscription.status,
    Subscription.rate_limit,
    Subscription.filter,
)


def claim(
    state: AppState, delivery_ids: list[int], token: str, *, skip: set[int], expired: bool = False
) -> list[Claimed]:
    """Claim the job's deliveries that are due, and other due ones up to a full batch, except for
    the subscriptions in ``skip``; or, if ``expired``, those whose claim's lease has ended."""
    session = state.db.session
    now = utcnow()
    due = and_(Delivery.state.in_(DeliveryState.CLAIMABLE), Delivery.next_attempt_at <= now + CLOCK_SLACK)
    lease_ended = and_(Delivery.state == DeliveryState.DELIVERING, Delivery.lease_until < now)
    room = state.settings.batch_size - len(delivery_ids)
    if not expired and room > 0:
        others = session.scalars(
            select(Delivery.id)
            .where(due, Delivery.id.not_in(delivery_ids), Delivery.subscription_id.not_in(skip))
            .order_by(Delivery.next_attempt_at)
            .limit(room)
        ).all()
        delivery_ids = [*delivery_ids, *others]
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(delivery_ids), lease_ended if expired else due)
        .values(
            state=DeliveryState.DELIVERING,
            claim_token=token,
            lease_until=lease_end(state, now),
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
            *SENDING_COLUMNS,
            Event.store_id.label("event_store_id"),
            Event.trace_context,
        )
        .join(Event, Delivery.event_id == Event.id)
        .join(Subscription, Delivery.subscription_id == Subscription.subscription_id)
        .where(Delivery.claim_token == token)
        .order_by(Delivery.id)
    ).all()
    session.commit()
    return [_claimed(row, token) for row in rows]


def _claimed(row: Any, token: str) -> Claimed:
    return claimed(
        row,
        token,
        id=row.id,
        uuid=row.uuid,
        attempt_count=row.attempt_count,
        round_attempts=row.round_attempts,
        event_id=row.event_id,
        event_uuid=row.event_uuid,
        event_name=row.event_name,
        body=row.body,
        created_at=row.created_at,
        event_store_id=row.event_store_id,
        event_trace=row.trace_context,
    )


def claimed(subscription: Any, token: str, **delivery_and_event: Any) -> Claimed:
    """A claimed delivery: its own and its event's fields, and its subscription's
    :data:`SENDING_COLUMNS` from ``subscription``."""
    return Claimed(
        **delivery_and_event,
        claim_token=token,
        subscription_id=subscription.subscription_id,
        pattern=subscription.pattern,
        recipient_url=subscription.recipient_url,
        verification_token=subscription.verification_token,
        previous_tokens=subscription.previous_tokens,
        headers=subscription.headers,
        notifier=subscription.notifier,
        store_id=subscription.store_id,
        enabled=subscription.status,
        rate_limit=subscription.rate_limit,
        filter=subscription.filter,
    )
