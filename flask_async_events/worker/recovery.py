"""Recovering the claims of a worker that is gone, from what it wrote in its attempt journal.

A claim's worker is gone when its liveness key has expired (seconds after a kill) or, failing that,
when the claim's lease has ended. Maintenance ends the leases of lost workers at once
(:func:`end_lost_leases`), then settles every claim whose lease ended (:func:`take_over`): an
answer the lost worker journaled is recorded as it was, not sent again; an attempt it started
but never finished is logged as interrupted and retried on the schedule; the rest is handed back,
due now. A claim of a live worker is never taken: not while Redis is too young for live workers to
have written their liveness keys, never for tokens that name no worker, never for claims younger
than a liveness key's lifetime. A claim taken over keeps naming the lost worker, so that if the
worker taking it over is lost too, the next one still reads the first one's journal.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update

from flask_async_events.delivery.claims import claim
from flask_async_events.delivery.journal import (
    ALIVE_TTL,
    OWNER_MARK,
    Staged,
    claim_owner,
    claim_token_of,
    forget,
    lost_owners,
    recall,
    revive,
)
from flask_async_events.delivery.recording import record
from flask_async_events.delivery.spool import spool_directory
from flask_async_events.delivery.types import Claimed, Outcome, Released
from flask_async_events.models import Delivery, DeliveryState
from flask_async_events.notifiers.base import NotifyResult
from flask_async_events.state import AppState
from flask_async_events.worker.epoch import epoch_age

log = logging.getLogger("flask_async_events")

SWEEP_LIMIT = 5000
INTERRUPTED = NotifyResult(
    False,
    retryable=True,
    response_data="The worker was lost during this attempt; whether the recipient got it is unknown",
    error_class="Interrupted",
)


def take_over(state: AppState, delivery_ids: list[int]) -> int:
    """Settle claims whose lease has ended (their worker is gone): record what the attempt journal
    says their attempts did, and hand back the rest, due now. Return how many were settled."""
    settled = 0
    connection = state.queues.connection
    folder = spool_directory(state.settings)
    if delivery_ids and folder is not None:  # lost workers of this host: their notes first
        revive(connection, folder)
    for start in range(0, len(delivery_ids), state.settings.batch_size):
        chunk = delivery_ids[start : start + state.settings.batch_size]
        holders = _holders(state, chunk)
        by_owner: dict[str | None, list[int]] = defaultdict(list)
        for delivery_id in chunk:
            by_owner[holders.get(delivery_id)].append(delivery_id)
        for owner, ids in by_owner.items():
            settled += _settle(state, owner, ids)
    return settled


def _settle(state: AppState, owner: str | None, delivery_ids: list[int]) -> int:
    """Take over claims of one lost ``owner`` and settle them from its journal. The new claim
    names the same owner: if this worker is lost too before it records them, the next one to take
    them over still knows whose journal to read."""
    connection = state.queues.connection
    token = uuid.uuid4().hex if owner is None else claim_token_of(owner)
    claimed = claim(state, delivery_ids, token, skip=set(), expired=True)
    journaled = {} if owner is None else recall(connection, owner, claimed)
    record(state, [_ended(item, journaled.get(item.attempt_key)) for item in claimed])
    if owner is not None:
        forget(connection, owner, [item.attempt_key for item in claimed])
    return len(claimed)


def _holders(state: AppState, delivery_ids: list[int]) -> dict[int, str]:
    """The process each delivery's claim names (where its attempt journal is), read before the
    claim is taken."""
    session = state.db.session
    rows = session.execute(select(Delivery.id, Delivery.claim_token).where(Delivery.id.in_(delivery_ids))).all()
    session.rollback()
    return {row.id: owner for row in rows if row.claim_token and (owner := claim_owner(row.claim_token))}


def _ended(item: Claimed, entry: Staged | None) -> Outcome | Released:
    """How a lost worker's claim ended, by its journal: the outcome it journaled is recorded
    instead of sending again; an attempt it never finished is logged as interrupted; a claim it
    never started is released."""
    if entry is None:
        return Released(item)
    if entry.result is None:
        return Outcome(item, INTERRUPTED, interrupted=True)
    return Outcome(item, entry.result, entry.duration_ms)


def end_lost_leases(state: AppState, now: datetime) -> None:
    """End the lease of claims whose worker process is gone (its liveness key expired), so they are
    settled now, while its attempt journal is fresh. Skipped while Redis is younger than a
    liveness key's lifetime: after a restart, live workers have not written theirs yet."""
    connection = state.queues.connection
    age = epoch_age(connection)
    if age is None or age < ALIVE_TTL:
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
