"""Maintenance, run by every worker (one at a time, under a Redis lock): put back into Redis
whatever the database says is due but Redis no longer knows about.

- events committed but never triggered (Redis was down at commit, or lost its data);
- deliveries claimed by a worker that is gone (its liveness key expired, or its claim's lease
  ended): settled from its attempt journal (:mod:`flask_async_events.worker.recovery`);
- deliveries overdue while their queues are empty (their job vanished).

A marker key tells when Redis itself lost its data (restarted empty, flushed, failed over to an
empty replica): then every open job is rebuilt from the database at once, not trickled back.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, select, update

from flask_async_events.delivery.circuits import Circuits, circuits_of
from flask_async_events.delivery.flow import wake
from flask_async_events.delivery.journal import lost_owners
from flask_async_events.delivery.outbox import relay_untriggered
from flask_async_events.models import Delivery, DeliveryState, Event, utcnow
from flask_async_events.operations.retention import prune
from flask_async_events.state import AppState
from flask_async_events.worker.epoch import mark_epoch
from flask_async_events.worker.recovery import SWEEP_LIMIT, end_lost_leases, take_over

LOCK_KEY = "async_events:maintenance-lock"
PRUNE_BATCHES_PER_SWEEP = 3  # ASYNC_EVENTS_PRUNE_AFTER: a little each sweep (30,000 rows), never a long stall

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
        if mark_epoch(state.queues.connection):
            relayed, requeued = rebuild(state)
        else:
            relayed = relay_untriggered(state) if state.queues.trigger.count == 0 else 0
            requeued = requeue_stalled(state) + wake_probes(state)
        if state.settings.prune_after:
            prune(state, timedelta(seconds=state.settings.prune_after), max_batches=PRUNE_BATCHES_PER_SWEEP)
    finally:
        state.db.session.remove()
    if relayed or requeued:
        log.info("Maintenance: relayed %d event(s), re-enqueued %d delivery(ies)", relayed, requeued)
    return SweepReport(relayed, requeued)


def wake_probes(state: AppState) -> int:
    """For each circuit that has cooled down with no probe out, make one delivery waiting for its
    endpoint due now: the probe, whoever parked what (and whatever was lost on the way). A probe
    whose process was lost (its liveness key expired) is given up first: its endpoint's deliveries
    do not wait out the probe's whole window for an answer that will never come."""
    now, moment = time.time(), utcnow()
    circuits = circuits_of(state)
    woken = []
    for endpoint, circuit in circuits.not_closed().items():
        if circuit.is_half_open(now) and not _probe_out(state, circuits, endpoint):
            delivery_id = wake(state.db.session, endpoint, moment)
            if delivery_id is not None:
                woken.append(delivery_id)
    state.db.session.commit()
    state.queues.enqueue_deliveries(woken, retry_queue=True)
    return len(woken)


def _probe_out(state: AppState, circuits: Circuits, endpoint: str) -> bool:
    """Whether a live process's probe of ``endpoint`` is out; a lost process's is given up."""
    holder = circuits.probe_holder(endpoint)
    if holder is None:
        return False
    if holder in lost_owners(state.queues.connection, [holder]):
        circuits.give_up_probe(endpoint, holder)
        log.warning("Probe of %s by lost worker %s given up; another is sent", endpoint, holder)
        return False
    return True


def rebuild(state: AppState) -> tuple[int, int]:
    """Redis is new or lost its data: enqueue every untriggered event and every open delivery
    (due now, or scheduled for its retry time). Claimed ones are left to their lease. Deliveries
    due further away than ``ASYNC_EVENTS_CIRCUIT_MAX_COOLDOWN`` are held behind circuits Redis
    has forgotten: they are due now (a circuit that is still needed opens again)."""
    session = state.db.session
    now = utcnow()
    relayed = _relay_untriggered(state)
    held = now + timedelta(seconds=state.settings.circuit_max_cooldown)
    due, later = _open_deliveries(state, now, held)
    session.commit()
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


def _relay_untriggered(state: AppState) -> int:
    """Enqueue a trigger for every event not fanned out yet; return how many."""
    relayed = 0
    untriggered = select(Event.id, Event.created_at).where(Event.triggered_at.is_(None))
    for chunk in _id_chunks(state.db.session, untriggered):
        state.queues.enqueue_trigger([event_id for event_id, _ in chunk])
        relayed += len(chunk)
    return relayed


def _open_deliveries(state: AppState, now: datetime, held: datetime) -> tuple[list[int], dict[datetime, list[int]]]:
    """The open deliveries due now, and those due later by due time. Those due after ``held`` (parked
    behind a forgotten circuit) are made due now, in the session's transaction."""
    session = state.db.session
    due: list[int] = []
    forgotten: list[int] = []
    later: dict[datetime, list[int]] = defaultdict(list)
    open_deliveries = select(Delivery.id, Delivery.next_attempt_at).where(Delivery.state.in_(DeliveryState.CLAIMABLE))
    for chunk in _id_chunks(session, open_deliveries):
        for delivery_id, next_attempt_at in chunk:
            if next_attempt_at > held:
                forgotten.append(delivery_id)
            elif next_attempt_at <= now:
                due.append(delivery_id)
            else:
                later[next_attempt_at].append(delivery_id)
    held_back = and_(Delivery.state.in_(DeliveryState.CLAIMABLE), Delivery.next_attempt_at > held)
    for start in range(0, len(forgotten), SWEEP_LIMIT):
        ids = forgotten[start : start + SWEEP_LIMIT]
        session.execute(update(Delivery).where(Delivery.id.in_(ids), held_back).values(next_attempt_at=now))
    return due + forgotten, later


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
    end_lost_leases(state, now)
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
