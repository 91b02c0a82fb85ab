"""The data behind the charts: attempts per hour, succeeded and failed, with p50/p95 latency, for the
whole system or some subscriptions, over the last 24 hours or 7 days.

It reads the hourly attempt statistics (see :mod:`~flask_async_events.delivery.attempt_stats`), at
most one row per hour, subscription and outcome, never the attempt log: a chart costs the same
whatever the log's size. Percentiles come from the latency histogram, interpolated inside the
bucket they fall in, as Prometheus' ``histogram_quantile`` does.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from flask_async_events.delivery.attempt_stats import hour_of
from flask_async_events.errors import InvalidValue
from flask_async_events.models import BUCKET_COLUMNS, LATENCY_BUCKETS, AttemptHourly, utcnow
from flask_async_events.state import AppState

WINDOWS = {"24h": 24, "7d": 7 * 24}  # hours drawn
_BOUNDS_MS = tuple(bound * 1000 for bound in LATENCY_BUCKETS)


@dataclass(frozen=True)
class HourPoint:
    """One hour of attempts: how many succeeded and failed, and how long they took (None: no timing)."""

    hour: datetime
    succeeded: int
    failed: int
    p50_ms: float | None
    p95_ms: float | None

    @property
    def attempts(self) -> int:
        return self.succeeded + self.failed


def quantile(buckets: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of durations counted in histogram ``buckets`` (per bucket, not
    cumulative; the last one is open above 30 s), in ms; None when nothing was timed."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            if index == len(_BOUNDS_MS):  # beyond the last bound: say the bound
                return float(_BOUNDS_MS[-1])
            low = _BOUNDS_MS[index - 1] if index else 0.0
            return low + (_BOUNDS_MS[index] - low) * (rank - seen) / count
        seen += count
    return float(_BOUNDS_MS[-1])


def attempt_series(
    state: AppState, window: str, subscription_ids: Collection[int] | None = None, now: datetime | None = None
) -> list[HourPoint]:
    """One point per hour of ``window`` ("24h" or "7d"), the current hour last, for all
    subscriptions or only ``subscription_ids`` (an empty collection: nothing)."""
    if window not in WINDOWS:
        raise InvalidValue(f"window must be one of {', '.join(WINDOWS)}, got {window!r}")
    last = hour_of(now or utcnow())
    hours = [last - timedelta(hours=back) for back in range(WINDOWS[window] - 1, -1, -1)]
    if subscription_ids is not None and not subscription_ids:
        return [HourPoint(hour, 0, 0, None, None) for hour in hours]
    rows = _hourly_rows(state, hours[0], subscription_ids)
    counts: dict[datetime, dict[bool, int]] = {}
    histograms: dict[datetime, list[int]] = {}
    for hour, success, attempts, *buckets in rows:
        counts.setdefault(hour, {})[bool(success)] = int(attempts or 0)
        merged = histograms.setdefault(hour, [0] * len(BUCKET_COLUMNS))
        for index, count in enumerate(buckets):
            merged[index] += int(count or 0)
    return [_point(hour, counts.get(hour, {}), histograms.get(hour, [])) for hour in hours]


def _hourly_rows(state: AppState, first: datetime, subscription_ids: Collection[int] | None) -> list[Any]:
    """The hourly rows from ``first`` on, summed per hour and outcome: attempts, then the buckets."""
    stats = AttemptHourly.__table__.c
    query = (
        select(stats.hour, stats.success, func.sum(stats.attempts), *(func.sum(stats[name]) for name in BUCKET_COLUMNS))
        .where(stats.hour >= first)
        .group_by(stats.hour, stats.success)
    )
    if subscription_ids is not None:
        query = query.where(stats.subscription_id.in_(sorted(subscription_ids)))
    session = state.db.session
    rows = list(session.execute(query).all())
    session.rollback()
    return rows


def _point(hour: datetime, by_outcome: dict[bool, int], histogram: list[int]) -> HourPoint:
    """One hour's point: successes, failures and the durations' median and 95th percentile."""
    median = quantile(histogram, 0.5) if histogram else None
    p95 = quantile(histogram, 0.95) if histogram else None
    return HourPoint(hour, by_outcome.get(True, 0), by_outcome.get(False, 0), median, p95)
