"""Retention: delete what is older than a cutoff, in small batches (the Magento module's log-cleanup cron).

Three kinds of rows go, in this order so no row is left pointing at a deleted one: attempt log
rows created before the cutoff; finished deliveries (delivered, dead, cancelled) last changed
before it, once no log row refers to them; and triggered events from before it with no delivery
left. Open work (pending, retrying, delivering, untriggered) is never touched. Each batch is its
own short transaction, so the tables are never locked for long. The attempt totals stay (they
count every attempt ever made); hourly statistics go once older than both the cutoff and the
charts' reach (:data:`CHART_DAYS`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from redis.exceptions import RedisError
from sqlalchemy import CursorResult, Row, and_, delete, exists, false, select
from sqlalchemy.sql.elements import ColumnElement

from flask_async_events.delivery.attempt_stats import hour_of
from flask_async_events.delivery.dialects import id_in
from flask_async_events.models import AttemptHourly, DbSession, Delivery, DeliveryAttempt, DeliveryState, Event, utcnow
from flask_async_events.operations.status import count_rows
from flask_async_events.state import AppState

FINISHED = (DeliveryState.DELIVERED, DeliveryState.DEAD, DeliveryState.CANCELLED)
# Rows per batch, each its own transaction: larger batches cost fewer round trips and scans (at 5
# million attempts, 10,000 a batch pruned 3.6x faster than 1,000), and an old, finished row's lock
# never stands in a delivery's way.
DEFAULT_BATCH = 10_000
CHART_DAYS = 8  # the hourly statistics a 7-day chart needs, and a day to spare


@dataclass
class PruneReport:
    attempts: int = 0
    deliveries: int = 0
    events: int = 0

    @property
    def total(self) -> int:
        return self.attempts + self.deliveries + self.events


@dataclass(frozen=True)
class Kind:
    """One kind of row prune deletes: its id column, what makes a row old enough (on the row
    itself), and what keeps it all the same (a row elsewhere that refers to it, given its id)."""

    name: str
    column: Any
    old: tuple[ColumnElement[bool], ...]
    referred: Callable[[Any], ColumnElement[bool]] | None = None
    dead_letters: bool = False  # whose dead rows leave RQ's failed-job registry too


def _kinds(cutoff: datetime) -> list[Kind]:
    """The three kinds, children first, so no row is left pointing at a deleted one."""
    return [
        Kind("attempts", DeliveryAttempt.log_id, (DeliveryAttempt.created < cutoff,)),
        Kind(
            "deliveries",
            Delivery.id,
            (Delivery.state.in_(FINISHED), Delivery.updated_at < cutoff),
            lambda delivery_id: exists().where(DeliveryAttempt.delivery_id == delivery_id),
            dead_letters=True,
        ),
        Kind(
            "events",
            Event.id,
            (Event.triggered_at.is_not(None), Event.created_at < cutoff),
            lambda event_id: exists().where(Delivery.event_id == event_id),
        ),
    ]


def count_prunable(state: AppState, older_than: timedelta) -> PruneReport:
    """What :func:`prune` would delete now: the deliveries and events that go once their old log
    rows (and deliveries) have gone before them."""
    session = state.db.session
    cutoff = utcnow() - older_than
    newer_log = exists().where(DeliveryAttempt.delivery_id == Delivery.id, DeliveryAttempt.created >= cutoff)
    going = and_(Delivery.state.in_(FINISHED), Delivery.updated_at < cutoff, ~newer_log)
    staying = exists().where(Delivery.event_id == Event.id, ~going)
    queries = {
        "attempts": select(DeliveryAttempt.log_id).where(DeliveryAttempt.created < cutoff),
        "deliveries": select(Delivery.id).where(going),
        "events": select(Event.id).where(Event.triggered_at.is_not(None), Event.created_at < cutoff, ~staying),
    }
    report = PruneReport()
    for kind, query in queries.items():
        setattr(report, kind, count_rows(session, query))
    session.rollback()
    return report


def prune(
    state: AppState,
    older_than: timedelta,
    *,
    batch_size: int = DEFAULT_BATCH,
    max_batches: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> PruneReport:
    """Delete rows older than ``older_than``, ``batch_size`` candidates at a time (``max_batches``
    caps a periodic run); ``progress`` is told how many rows each batch removed."""
    session = state.db.session
    cutoff = utcnow() - older_than
    report = PruneReport()
    batches = 0
    for kind in _kinds(cutoff):
        after = 0  # keyset: each batch reads on from the last candidate, not again over what went
        while max_batches is None or batches < max_batches:
            batch = _batch(session, kind, after, batch_size)
            if not batch:
                break
            after = batch[-1].id
            going = [row for row in batch if not row.referred]
            deleted = _delete(session, kind, [row.id for row in going])
            session.commit()
            if kind.dead_letters:
                _forget_dead_letters(state, [row.uuid for row in going if row.dead])
            setattr(report, kind.name, getattr(report, kind.name) + deleted)
            batches += 1
            if progress is not None:
                progress(deleted)
    hourly_cutoff = min(cutoff, utcnow() - timedelta(days=CHART_DAYS))
    session.execute(delete(AttemptHourly).where(AttemptHourly.hour < hour_of(hourly_cutoff)))
    session.commit()
    return report


def _batch(session: DbSession, kind: Kind, after: int, size: int) -> list[Row[Any]]:
    """The next ``size`` rows old enough, in id order (a delivery with its uuid and whether it is
    dead), each saying whether a row refers to it. The candidates come first and the references
    are looked up for each (an index probe apiece): asked as one anti-join, PostgreSQL hashed the
    whole referring table for every batch (docs/performance.md)."""
    dead = [Delivery.uuid, (Delivery.state == DeliveryState.DEAD).label("dead")] if kind.dead_letters else []
    candidates = (
        select(kind.column.label("id"), *dead)
        .where(kind.column > after, *kind.old)
        .order_by(kind.column)
        .limit(size)
        .subquery()
    )
    referred = kind.referred(candidates.c.id) if kind.referred is not None else false()
    return list(session.execute(select(*candidates.c, referred.label("referred")).order_by(candidates.c.id)))


def _delete(session: DbSession, kind: Kind, ids: list[int]) -> int:
    """Delete these candidates, asking again whether they are old and unreferred: a dead delivery
    replayed, or an event given a new delivery, since the batch was read stays. How many went."""
    if not ids:
        return 0
    conditions = [*kind.old, ~kind.referred(kind.column)] if kind.referred is not None else list(kind.old)
    statement = delete(kind.column.class_).where(id_in(session, kind.column, ids), *conditions)
    result = cast(CursorResult[Any], session.execute(statement.execution_options(synchronize_session=False)))
    return int(result.rowcount or 0)


def _forget_dead_letters(state: AppState, uuids: list[str]) -> None:
    """Pruned dead deliveries leave RQ's failed-job registry too (best effort: it expires anyway)."""
    if uuids:
        with contextlib.suppress(RedisError):
            state.queues.forget_dead_letters(uuids)
