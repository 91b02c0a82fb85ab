"""Replays: deliver a delivery again with the same uuid and the stored body, whatever its state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, literal, select, update

from flask_async_events.errors import ReplayError, UnknownDelivery
from flask_async_events.models import Delivery, DeliveryState, Subscription, utcnow
from flask_async_events.state import AppState


def reset_for_replay(state: AppState, delivery: Delivery) -> None:
    """Make a delivery due now with a fresh retry schedule (the caller commits and enqueues)."""
    if delivery.state == DeliveryState.DELIVERING:
        raise ReplayError(f"delivery {delivery.uuid} is being sent right now; try again when it finishes")
    subscription = state.db.session.get(Subscription, delivery.subscription_id)
    if subscription is None or not subscription.status:
        raise ReplayError(
            f"subscription {delivery.subscription_id} is disabled; enable it before replaying delivery {delivery.uuid}"
        )
    delivery.state = DeliveryState.PENDING
    delivery.round_attempts = 0
    delivery.next_attempt_at = utcnow()
    delivery.claim_token = None
    delivery.lease_until = None


def replay(state: AppState, uuid: str) -> Delivery:
    """Replay one delivery now; raises ``LookupError`` or :class:`ReplayError`."""
    session = state.db.session
    delivery = session.scalar(select(Delivery).where(Delivery.uuid == uuid))
    if delivery is None:
        raise UnknownDelivery(f"no delivery with uuid {uuid}")
    reset_for_replay(state, delivery)
    delivery_id = delivery.id
    session.commit()
    state.queues.forget_dead_letters([uuid])
    state.queues.enqueue_deliveries([delivery_id])
    return delivery


def recover(
    state: AppState, subscription_id: int, since: datetime, *, progress: Callable[[int], None] | None = None
) -> list[str]:
    """Replay every dead delivery of a subscription created since ``since``; return their uuids."""
    check_recoverable(state, subscription_id)
    return retry_dead(state, subscription_id=subscription_id, since=since, progress=progress)


def check_recoverable(state: AppState, subscription_id: int) -> None:
    """:class:`ReplayError` unless the subscription exists and is enabled (a recovery sends to it)."""
    subscription = state.db.session.get(Subscription, subscription_id)
    if subscription is None or not subscription.status:
        state.db.session.rollback()
        if subscription is None:
            raise ReplayError(f"no subscription {subscription_id} (flask async-events subscriptions lists them)")
        raise ReplayError(f"subscription {subscription_id} is disabled; enable it before recovering its deliveries")


def dead_filter(subscription_id: int | None, since: datetime | None) -> list[ColumnElement[bool]]:
    """Dead deliveries (of one subscription, or all), created since ``since``. The state is written
    into the statement, not bound: only then may the database use the dead letters' partial index."""
    conditions = [Delivery.state == literal(DeliveryState.DEAD, literal_execute=True)]
    if subscription_id is not None:
        conditions.append(Delivery.subscription_id == subscription_id)
    if since is not None:
        conditions.append(Delivery.created_at >= since)
    return conditions


def _replayable(subscription_id: int | None, since: datetime | None) -> list[ColumnElement[bool]]:
    """Dead deliveries of enabled subscriptions: those a replay may send."""
    return [*dead_filter(subscription_id, since), Subscription.status.is_(True)]


def count_dead(state: AppState, *, subscription_id: int | None = None, since: datetime | None = None) -> int:
    """How many dead deliveries :func:`retry_dead` would replay now."""
    query = select(func.count()).select_from(Delivery).join(Subscription).where(*_replayable(subscription_id, since))
    count = state.db.session.scalar(query) or 0
    state.db.session.rollback()
    return count


@dataclass(frozen=True)
class Step:
    """What one batch of a bulk operation did: the uuids it sent (or would send), how many rows it
    went through, and where the next batch starts (None: it was the last)."""

    uuids: list[str]
    examined: int
    after: int | None


def retry_dead_batch(
    state: AppState, *, subscription_id: int | None, since: datetime | None, after: int, batch_size: int
) -> Step:
    """Replay the next ``batch_size`` dead deliveries of enabled subscriptions after id ``after``,
    in id order (one that dies again at once is not picked up twice), in one transaction."""
    session = state.db.session
    rows = session.execute(
        select(Delivery.id, Delivery.uuid)
        .join(Subscription)
        .where(*_replayable(subscription_id, since), Delivery.id > after)
        .order_by(Delivery.id)
        .limit(batch_size)
    ).all()
    if not rows:
        session.rollback()
        return Step([], 0, None)
    ids = [row.id for row in rows]
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids), Delivery.state == DeliveryState.DEAD)
        .values(state=DeliveryState.PENDING, round_attempts=0, next_attempt_at=utcnow(), claim_token=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    state.queues.forget_dead_letters([row.uuid for row in rows])
    state.queues.enqueue_deliveries(ids)
    return Step([row.uuid for row in rows], len(rows), ids[-1])


def retry_dead(
    state: AppState,
    *,
    subscription_id: int | None = None,
    since: datetime | None = None,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Replay dead deliveries of enabled subscriptions in batches, each its own transaction
    (:func:`retry_dead_batch`); return their uuids."""
    replayed: list[str] = []
    after: int | None = 0
    while after is not None:
        step = retry_dead_batch(state, subscription_id=subscription_id, since=since, after=after, batch_size=batch_size)
        replayed.extend(step.uuids)
        after = step.after
        if progress is not None and step.examined:
            progress(step.examined)
    return replayed


def replay_dead(state: AppState, delivery_id: int) -> bool:
    """Replay a delivery that is still dead (requeued from RQ's FailedJobRegistry); else do nothing."""
    delivery = state.db.session.get(Delivery, delivery_id)
    if delivery is None or delivery.state != DeliveryState.DEAD:
        state.db.session.rollback()
        return False
    reset_for_replay(state, delivery)
    state.db.session.commit()
    state.queues.enqueue_deliveries([delivery_id])
    return True
