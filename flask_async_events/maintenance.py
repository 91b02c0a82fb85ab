"""Maintenance, run by every worker (one at a time, under a Redis lock): put back into Redis
whatever the database says is due but Redis no longer knows about.

- events committed but never triggered (Redis was down at commit, or lost its data);
- deliveries whose claim expired (a worker died mid-batch);
- deliveries overdue while their queues are empty (their job vanished: Redis restarted empty).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, or_, select

from flask_async_events.models import Delivery, DeliveryState, utcnow
from flask_async_events.outbox import relay_untriggered
from flask_async_events.state import AppState

LOCK_KEY = "async_events:maintenance-lock"
SWEEP_LIMIT = 5000

log = logging.getLogger("flask_async_events")


@dataclass(frozen=True)
class SweepReport:
    relayed_events: int = 0
    requeued_deliveries: int = 0


def run_maintenance(state: AppState, owner: str, *, force: bool = False) -> SweepReport | None:
    """Sweep once, unless another worker did within the maintenance interval."""
    interval = state.settings.maintenance_interval
    if not force and not state.queues.connection.set(LOCK_KEY, owner, nx=True, ex=interval):
        return None
    try:
        relayed = relay_untriggered(state) if state.queues.trigger.count == 0 else 0
        requeued = requeue_stalled(state)
    finally:
        state.db.session.remove()
    if relayed or requeued:
        log.info("Maintenance: relayed %d event(s), re-enqueued %d delivery(ies)", relayed, requeued)
    return SweepReport(relayed, requeued)


def requeue_stalled(state: AppState) -> int:
    """Re-enqueue deliveries with an expired claim, and overdue ones when their queues are idle."""
    now = utcnow()
    stalled = and_(Delivery.state == DeliveryState.DELIVERING, Delivery.lease_until < now)
    condition = stalled
    queues_idle = state.queues.delivery.count == 0 and state.queues.retry.count == 0
    if queues_idle:
        overdue = now - timedelta(seconds=state.settings.relay_after)
        condition = or_(stalled, and_(Delivery.state.in_(DeliveryState.CLAIMABLE), Delivery.next_attempt_at <= overdue))
    ids = list(state.db.session.scalars(select(Delivery.id).where(condition).order_by(Delivery.id).limit(SWEEP_LIMIT)))
    state.db.session.rollback()
    state.queues.enqueue_deliveries(ids, retry_queue=True)
    return len(ids)
