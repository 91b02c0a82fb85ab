"""Replays: deliver a delivery again with the same uuid and the stored body, whatever its state."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from flask_async_events.models import Delivery, DeliveryState, Subscription, utcnow
from flask_async_events.state import AppState


class ReplayError(ValueError):
    """The delivery cannot be replayed now; the message says why and what to do."""


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
        raise LookupError(f"no delivery with uuid {uuid}")
    reset_for_replay(state, delivery)
    delivery_id = delivery.id
    session.commit()
    state.queues.forget_dead_letters([uuid])
    state.queues.enqueue_deliveries([delivery_id])
    return delivery


def recover(state: AppState, subscription_id: int, since: datetime) -> list[str]:
    """Replay every dead delivery of a subscription created since ``since``; return their uuids."""
    session = state.db.session
    subscription = session.get(Subscription, subscription_id)
    if subscription is None or not subscription.status:
        raise ReplayError(f"subscription {subscription_id} is disabled; enable it before recovering its deliveries")
    rows = session.execute(
        select(Delivery.id, Delivery.uuid).where(
            Delivery.subscription_id == subscription_id,
            Delivery.state == DeliveryState.DEAD,
            Delivery.created_at >= since,
        )
    ).all()
    if not rows:
        session.rollback()
        return []
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_([row.id for row in rows]), Delivery.state == DeliveryState.DEAD)
        .values(state=DeliveryState.PENDING, round_attempts=0, next_attempt_at=utcnow(), claim_token=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    state.queues.forget_dead_letters([row.uuid for row in rows])
    state.queues.enqueue_deliveries([row.id for row in rows])
    return [row.uuid for row in rows]


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
