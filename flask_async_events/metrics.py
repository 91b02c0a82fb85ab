"""Metrics in Prometheus' text format, served at ``ASYNC_EVENTS_METRICS_URL`` to admin tokens.

Every value is read from the database and Redis at scrape time, never from one process's memory,
so any web process answers for all workers. Attempt counts and the latency histogram come from the
attempt totals, counted as attempts are logged: a scrape reads a row or two per subscription,
however long the log, and ``prune`` does not lower them. Deliveries are counted by state for the
backlog only (waiting, delivering, retrying, dead), through the state index: the delivered and
cancelled ones are history, as long as the log, and successes are already counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import accumulate
from typing import Any

from flask import Response, request
from sqlalchemy import func, select

from flask_async_events.auth import authenticate
from flask_async_events.errors import AuthError
from flask_async_events.models import BUCKET_COLUMNS, LATENCY_BUCKETS, AttemptTotals, Subscription
from flask_async_events.operations.status import system_status
from flask_async_events.state import AppState, get_state

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample(name: str, value: float, **labels: str) -> str:
    rendered = ",".join(f'{key}="{_escape(text)}"' for key, text in labels.items())
    return f"{name}{{{rendered}}} {value:g}" if labels else f"{name} {value:g}"


def _family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]


def render(state: AppState) -> str:
    """The metrics of ``state``'s database and Redis, one scrape's worth."""
    lines = [*_attempt_families(state), *_status_families(system_status(state, history=False))]
    return "\n".join(lines) + "\n"


def _attempt_families(state: AppState) -> list[str]:
    """Attempts by notifier and outcome, and their durations' histogram, from the log's totals."""
    session = state.db.session
    totals = AttemptTotals.__table__.c
    attempts = session.execute(
        select(Subscription.notifier, totals.success, func.sum(totals.attempts))
        .join(Subscription, totals.subscription_id == Subscription.subscription_id)
        .group_by(Subscription.notifier, totals.success)
    ).all()
    histogram = session.execute(
        select(
            *(func.coalesce(func.sum(totals[name]), 0) for name in BUCKET_COLUMNS),
            func.coalesce(func.sum(totals.duration_ms_sum), 0),
        )
    ).one()
    session.rollback()
    *per_bucket, total_ms = (int(value or 0) for value in histogram)
    buckets = list(accumulate(per_bucket))  # Prometheus' buckets count everything up to their bound
    count = buckets.pop()
    return [
        *_family(
            "async_events_attempts_total",
            "counter",
            "Delivery attempts in the log, by notifier and outcome.",
            (
                _sample("async_events_attempts_total", n, notifier=notifier, outcome="success" if ok else "failure")
                for notifier, ok, n in attempts
                if n
            ),
        ),
        *_family(
            "async_events_attempt_duration_seconds",
            "histogram",
            "How long delivery attempts took.",
            [
                *(
                    _sample("async_events_attempt_duration_seconds_bucket", n, le=f"{bound:g}")
                    for bound, n in zip(LATENCY_BUCKETS, buckets, strict=True)
                ),
                _sample("async_events_attempt_duration_seconds_bucket", count, le="+Inf"),
                _sample("async_events_attempt_duration_seconds_count", count),
                _sample("async_events_attempt_duration_seconds_sum", total_ms / 1000),
            ],
        ),
    ]


def _status_families(status: dict[str, Any]) -> list[str]:
    """Deliveries, dead letters, queues, pending events, filtered events, the oldest open one,
    workers and circuits, from the system's status."""
    return [
        *_family(
            "async_events_deliveries",
            "gauge",
            "Deliveries waiting, being sent, retrying or dead, by state (the delivered ones are counted by"
            " async_events_attempts_total).",
            (_sample("async_events_deliveries", n, state=name) for name, n in status["deliveries"].items()),
        ),
        *_family(
            "async_events_dead_letters",
            "gauge",
            "Deliveries that failed for good and wait for a replay.",
            [_sample("async_events_dead_letters", status["deliveries"]["dead"])],
        ),
        *_family(
            "async_events_queue_jobs",
            "gauge",
            "RQ jobs by queue and registry.",
            (
                _sample("async_events_queue_jobs", n, queue=queue, registry=registry)
                for queue, registries in status["queues"].items()
                for registry, n in registries.items()
            ),
        ),
        *_family(
            "async_events_pending_events",
            "gauge",
            "Committed events not yet fanned out.",
            [_sample("async_events_pending_events", status["pending_events"])],
        ),
        *_family(
            "async_events_filtered_total",
            "counter",
            "Events a matching subscription's filter left out (no delivery was made).",
            [_sample("async_events_filtered_total", status["filtered"])],
        ),
        *_family(
            "async_events_oldest_undelivered_seconds",
            "gauge",
            "Age of the oldest event or delivery still open.",
            [_sample("async_events_oldest_undelivered_seconds", status["oldest_undelivered_seconds"])],
        ),
        *_family(
            "async_events_workers", "gauge", "Workers alive.", [_sample("async_events_workers", status["workers"])]
        ),
        *_family(
            "async_events_circuit_open",
            "gauge",
            "Endpoints whose circuit is open (1) or cooled down, waiting for its probe (0.5).",
            (
                _sample("async_events_circuit_open", 1 if circuit["state"] == "open" else 0.5, endpoint=endpoint)
                for endpoint, circuit in status["circuits"].items()
            ),
        ),
    ]


def metrics_view() -> Response:
    """``GET`` the metrics: an admin bearer token, or the host's ``events.authorize`` hook."""
    state = get_state()
    try:
        principal = authenticate(state.db.session, request, state.authorizer())
    except AuthError as exc:
        state.db.session.rollback()
        return Response(f"{exc}\n", 401, {"WWW-Authenticate": 'Bearer realm="async-events"'}, content_type=CONTENT_TYPE)
    if not principal.is_admin:
        return Response("Metrics need an admin token.\n", 403, content_type=CONTENT_TYPE)
    return Response(render(state), content_type=CONTENT_TYPE)
