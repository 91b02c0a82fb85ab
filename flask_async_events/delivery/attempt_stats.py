"""The attempt log and its statistics, written together, in the writer's transaction: each batch of
log rows adds its counts to ``async_event_attempt_totals`` (per subscription and outcome, for the
metrics) and ``async_event_attempt_hourly`` (the same per hour, for charts).

Why they stay right: the counts commit or roll back with the rows they count; several workers add
to the same rows with one atomic upsert each (never read-modify-write); and ``prune`` deletes log
rows without touching the totals (counters only grow) and hourly rows only past the charts' reach.
So reading them costs the same whatever the size of the log.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.orm import Session, scoped_session

from flask_async_events.delivery.dialects import add_counts, insert_rows
from flask_async_events.models import (
    BUCKET_COLUMNS,
    LATENCY_BUCKETS,
    STAT_COUNTERS,
    AttemptHourly,
    AttemptTotals,
    DeliveryAttempt,
)

_BOUNDS_MS = tuple(bound * 1000 for bound in LATENCY_BUCKETS)
_TOTALS = cast(Table, AttemptTotals.__table__)
_HOURLY = cast(Table, AttemptHourly.__table__)
_LOG = cast(Table, DeliveryAttempt.__table__)


def hour_of(moment: datetime) -> datetime:
    """The start of ``moment``'s hour."""
    return moment.replace(minute=0, second=0, microsecond=0)


def bucket_of(duration_ms: int) -> str:
    """The histogram column a duration counts in: the first bound it does not exceed."""
    return BUCKET_COLUMNS[bisect_left(_BOUNDS_MS, duration_ms)]


def tally(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The totals and hourly rows that ``rows`` (attempt log rows) add."""
    totals: dict[tuple[int, bool], dict[str, Any]] = {}
    hourly: dict[tuple[datetime, int, bool], dict[str, Any]] = {}
    for row in rows:
        subscription_id, success = row["subscription_id"], bool(row["success"])
        hour = hour_of(row["created"])
        total = totals.get((subscription_id, success))
        if total is None:
            total = totals[subscription_id, success] = _zero(subscription_id=subscription_id, success=success)
        per_hour = hourly.get((hour, subscription_id, success))
        if per_hour is None:
            per_hour = hourly[hour, subscription_id, success] = _zero(
                hour=hour, subscription_id=subscription_id, success=success
            )
        duration = row.get("duration_ms")
        for counts in (total, per_hour):
            counts["attempts"] += 1
            if duration is not None:
                counts["timed"] += 1
                counts["duration_ms_sum"] += duration
                counts[bucket_of(duration)] += 1
    return list(totals.values()), list(hourly.values())


def _zero(**key: Any) -> dict[str, Any]:
    return {**key, **dict.fromkeys(STAT_COUNTERS, 0)}


def write_attempts(session: Session | scoped_session[Any], rows: Sequence[dict[str, Any]]) -> None:
    """Append ``rows`` to the attempt log and add them to its statistics."""
    if not rows:
        return
    insert_rows(session, _LOG, rows)
    totals, hourly = tally(rows)
    bind = cast(Session, session)
    add_counts(bind, _TOTALS, ("subscription_id", "success"), STAT_COUNTERS, totals)
    add_counts(bind, _HOURLY, ("hour", "subscription_id", "success"), STAT_COUNTERS, hourly)
