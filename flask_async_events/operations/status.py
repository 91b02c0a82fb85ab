"""Read-only views for operators: system status and dead letters.

RQ registries are read with ``cleanup=False``: counting with cleanup on would run abandoned-job
callbacks inside whatever process asked (a web request, a metrics scrape).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.worker import Worker
from sqlalchemy import Select, func, select

from flask_async_events.delivery.circuits import circuits_of, describe, endpoint_key
from flask_async_events.models import DbSession, Delivery, DeliveryAttempt, DeliveryState, Event, utcnow
from flask_async_events.operations.replay import dead_filter
from flask_async_events.state import AppState

# A log search counts its matches up to here: a count costs a pass over what it counts, and past
# this many a person pages or narrows the search rather than reads a number.
COUNT_CAP = 10_000


def count_rows(session: DbSession, query: Select[*tuple[Any, ...]], cap: int | None = None) -> int:
    """How many rows a query would return, before paging; with a ``cap``, counting stops at
    ``cap + 1`` (more than the cap)."""
    counted = query.order_by(None)
    if cap is not None:
        counted = counted.limit(cap + 1)
    return session.scalar(select(func.count()).select_from(counted.subquery())) or 0


# The states that are work to do or to look at: few rows, found through the state index, however
# long the history of delivered and cancelled ones (which only a count of all of them could give).
BACKLOG = (*DeliveryState.OPEN, DeliveryState.DEAD)
HISTORY = (DeliveryState.DELIVERED, DeliveryState.CANCELLED)


def system_status(state: AppState, *, history: bool = True) -> dict[str, Any]:
    """Queue depths, registries, workers, outbox backlog, deliveries by state, oldest undelivered
    age, events left out by subscriptions' filters, and the endpoints whose circuit is open.
    Without ``history`` the delivered and cancelled deliveries are not counted: what is left
    costs what the backlog holds, not what the log has kept (a metrics scrape)."""
    session = state.db.session
    queues = {}
    for queue in state.queues.all():
        queues[queue.name] = {
            "queued": queue.count,
            "started": StartedJobRegistry(queue=queue).get_job_count(cleanup=False),
            "scheduled": ScheduledJobRegistry(queue=queue).get_job_count(cleanup=False),
            "failed": FailedJobRegistry(queue=queue).get_job_count(cleanup=False),
        }
    counted = select(Delivery.state, func.count()).group_by(Delivery.state)
    if not history:
        counted = counted.where(Delivery.state.in_(BACKLOG))
    by_state = dict(session.execute(counted).all())
    untriggered = session.scalar(select(func.count()).where(Event.triggered_at.is_(None))) or 0
    oldest = session.scalar(select(func.min(Delivery.created_at)).where(Delivery.state.in_(DeliveryState.OPEN)))
    oldest_event = session.scalar(select(func.min(Event.created_at)).where(Event.triggered_at.is_(None)))
    candidates = [when for when in (oldest, oldest_event) if when is not None]
    now = utcnow()
    session.rollback()
    circuits = circuits_of(state).not_closed()
    return {
        "queues": queues,
        "workers": Worker.count(connection=state.queues.connection),
        "pending_events": untriggered,
        "filtered": state.queues.filtered_total(),
        "deliveries": {name: by_state.get(name, 0) for name in (*BACKLOG, *(HISTORY if history else ()))},
        "oldest_undelivered_seconds": round((now - min(candidates)).total_seconds(), 1) if candidates else 0,
        "circuits": {endpoint: describe(circuit, now.timestamp()) for endpoint, circuit in circuits.items()},
    }


def dead_letters(
    state: AppState, *, limit: int = 50, subscription_id: int | None = None, since: datetime | None = None
) -> list[dict[str, Any]]:
    """Dead deliveries (of one subscription, created since a time), newest first, each with its
    last logged response."""
    session = state.db.session
    rows = session.execute(
        select(
            Delivery.id,
            Delivery.uuid,
            Delivery.subscription_id,
            Delivery.attempt_count,
            Delivery.updated_at,
            Event.event_name,
        )
        .join(Event, Delivery.event_id == Event.id)
        .where(*dead_filter(subscription_id, since))
        .order_by(Delivery.updated_at.desc(), Delivery.id.desc())
        .limit(limit)
    ).all()
    last_logs = {}
    if rows:
        newest = (
            select(DeliveryAttempt.delivery_id, func.max(DeliveryAttempt.log_id).label("log_id"))
            .where(DeliveryAttempt.delivery_id.in_([row.id for row in rows]))
            .group_by(DeliveryAttempt.delivery_id)
            .subquery()
        )
        last_logs = dict(
            session.execute(
                select(DeliveryAttempt.delivery_id, DeliveryAttempt.response_data).join(
                    newest, DeliveryAttempt.log_id == newest.c.log_id
                )
            ).all()
        )
    session.rollback()
    return [
        {
            "uuid": row.uuid,
            "event_name": row.event_name,
            "subscription_id": row.subscription_id,
            "attempts": row.attempt_count,
            "dead_since": row.updated_at.isoformat(),
            "last_response": last_logs.get(row.id, ""),
        }
        for row in rows
    ]


def circuit_words(state: AppState, recipient_urls: Iterable[str]) -> dict[str, str]:
    """Each URL's circuit as a page shows it: "closed", "open until T" or "half-open" (closed
    when Redis cannot be read, as delivery then treats it)."""
    keys = {url: endpoint_key(url) for url in recipient_urls}
    circuits = circuits_of(state).read({key for key in keys.values() if key})
    now = utcnow().timestamp()
    words = {}
    for url, key in keys.items():
        circuit = circuits.get(key) if key else None
        if circuit is None or circuit.open_until is None:
            words[url] = "closed" if key else "no circuit (not an HTTP endpoint)"
        elif circuit.is_open(now):
            until = datetime.fromtimestamp(circuit.open_until, UTC).strftime("%H:%M:%S")
            words[url] = f"open until {until} UTC after {circuit.failures} failures"
        else:
            words[url] = "half-open: the next delivery probes the endpoint"
    return words
