"""Maintenance, run by every worker (one at a time, under a Redis lock): put back into Redis
whatever the database says is due but Redis no longer knows about.

- events committed but never triggered (Redis was down at commit, or lost its data);
- deliveries claimed by a worker that is gone (its liveness key expired, or its claim's lease
  ended): settled from its attempt journal;
- deliveries overdue while their queues are empty (their job vanished).

A marker key tells when Redis itself lost its data (restarted empty, flushed, failed over to an
empty replica): then every open job is rebuilt from the database at once, not trickled back.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from redis import Redis
from sqlalchemy import Select, and_, or_, select, update

from flask_async_events.deliver import take_over
from flask_async_events.journal import ALIVE_TTL, OWNER_MARK, claim_owner, lost_owners
from flask_async_events.models import Delivery, DeliveryState, Event, utcnow
from flask_async_events.outbox import relay_untriggered
from flask_async_events.retention import prune
from flask_async_events.state import AppState

LOCK_KEY = "async_events:maintenance-lock"
EPOCH_KEY = "async_events:epoch"  # present while Redis keeps what this package put in it
PRUNE_BATCHES_PER_SWEEP = 10  # ASYNC_EVENTS_PRUNE_AFTER: a little each sweep, never a long stall
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
        connection = state.queues.connection
        if connection.set(EPOCH_KEY, _redis_seconds(connection), nx=True):
            relayed, requeued = rebuild(state)
        else:
            relayed = relay_untriggered(state) if state.queues.trigger.count == 0 else 0
            requeued = requeue_stalled(state)
        if state.settings.prune_after:
            prune(state, timedelta(seconds=state.settings.prune_after), max_batches=PRUNE_BATCHES_PER_SWEEP)
    finally:
        state.db.session.remove()
    if relayed or requeued:
        log.info("Maintenance: relayed %d event(s), re-enqueued %d delivery(ies)", relayed, requeued)
    return SweepReport(relayed, requeued)


def rebuild(state: AppState) -> tuple[int, int]:
    """Redis is new or lost its data: enqueue every untriggered event and every open delivery
    (due now, or scheduled for its retry time). Claimed ones are left to their lease."""
    session = state.db.session
    now = utcnow()
    relayed = 0
    for chunk in _id_chunks(session, select(Event.id, Event.created_at).where(Event.triggered_at.is_(None))):
        state.queues.enqueue_trigger([event_id for event_id, _ in chunk])
        relayed += len(chunk)
    due: list[int] = []
    later: dict[datetime, list[int]] = defaultdict(list)
    open_deliveries = select(Delivery.id, Delivery.next_attempt_at).where(Delivery.state.in_(DeliveryState.CLAIMABLE))
    for chunk in _id_chunks(session, open_deliveries):
        for delivery_id, next_attempt_at in chunk:
            if next_attempt_at <= now:
                due.append(delivery_id)
            else:
                later[next_attempt_at].append(delivery_id)
    session.rollback()
    state.queues.enqueue_deliveries(due, retry_queue=True)
    state.queues.schedule_deliveries(later, now)
    scheduled = sum(len(ids) for ids in later.values())
    if relayed or due or scheduled:
        log.warning(
            "Redis lost its data: rebuilt %d trigger(s), %d due and %d scheduled delivery(ies) from the database",
            relayed,
            len(due),
            scheduled,
        )
    return relayed, len(due) + scheduled


def _end_lost_leases(state: AppState, now: datetime) -> None:
    """End the lease of claims whose worker process is gone (its liveness key expired), so they are
    settled now, while its attempt journal is fresh. Skipped while Redis is younger than a
    liveness key's lifetime: after a restart, live workers have not written theirs yet."""
    connection = state.queues.connection
    epoch = connection.get(EPOCH_KEY)
    if epoch is None or _redis_seconds(connection) - _number(epoch) < ALIVE_TTL:
        return
    session = state.db.session
    claimed_long_enough = and_(
        Delivery.state == DeliveryState.DELIVERING,
        Delivery.lease_until >= now,
        Delivery.lease_until <= now + timedelta(seconds=state.settings.claim_lease - ALIVE_TTL),
    )
    tokens = session.scalars(select(Delivery.claim_token).where(claimed_long_enough).distinct()).all()
    lost = lost_owners(connection, {owner for token in tokens if token and (owner := claim_owner(token))})
    if not lost:
        session.rollback()
        return
    theirs = and_(claimed_long_enough, or_(*[Delivery.claim_token.startswith(owner + OWNER_MARK) for owner in lost]))
    ids = list(session.scalars(select(Delivery.id).where(theirs).order_by(Delivery.id).limit(SWEEP_LIMIT)))
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids), theirs)
        .values(lease_until=now - timedelta(seconds=1))
        .execution_options(synchronize_session=False)
    )
    session.commit()
    log.warning("Worker(s) %s are gone: taking over %d claimed delivery(ies)", ", ".join(sorted(lost)), len(ids))


def _redis_seconds(connection: Redis) -> int:
    """Redis's own clock, the same for every worker whatever their hosts' clocks say."""
    return int(connection.time()[0])


def _number(value: bytes | str) -> float:
    """An epoch marker's time; a marker from before it held one counts as old."""
    try:
        return float(value)
    except ValueError:
        return 0.0


def _id_chunks(session: Any, query: Select[int, datetime]) -> Iterator[list[tuple[int, datetime]]]:
    """The ``(id, time)`` rows of ``query``, ``SWEEP_LIMIT`` at a time, in id order."""
    id_column = query.selected_columns[0]
    last_id = 0
    while True:
        page = query.where(id_column > last_id).order_by(id_column).limit(SWEEP_LIMIT)
        rows = [(row[0], row[1]) for row in session.execute(page)]
        if not rows:
            return
        yield rows
        last_id = rows[-1][0]


def requeue_stalled(state: AppState) -> int:
    """Settle deliveries whose claim's lease ended or whose worker is gone (from the attempt
    journal), and re-enqueue overdue ones when their queues are idle; return how many."""
    now = utcnow()
    _end_lost_leases(state, now)
    session = state.db.session
    lease_ended = and_(Delivery.state == DeliveryState.DELIVERING, Delivery.lease_until < now)
    stalled = list(session.scalars(select(Delivery.id).where(lease_ended).order_by(Delivery.id).limit(SWEEP_LIMIT)))
    overdue: list[int] = []
    if state.queues.delivery.count == 0 and state.queues.retry.count == 0:
        late = now - timedelta(seconds=state.settings.relay_after)
        waiting = and_(Delivery.state.in_(DeliveryState.CLAIMABLE), Delivery.next_attempt_at <= late)
        overdue = list(session.scalars(select(Delivery.id).where(waiting).order_by(Delivery.id).limit(SWEEP_LIMIT)))
    session.rollback()
    state.queues.enqueue_deliveries(overdue, retry_queue=True)
    return take_over(state, stalled) + len(overdue)
