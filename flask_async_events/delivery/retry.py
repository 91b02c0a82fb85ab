"""When to try a failed delivery again: the schedule, jitter and the receiver's ``Retry-After``."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import datetime, timedelta


def next_delay(
    schedule: Sequence[float],
    attempts_made: int,
    *,
    jitter: float = 0.0,
    retry_after: float | None = None,
    retry_after_max: float = 3600.0,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds until the next attempt after ``attempts_made`` failed ones, or None when spent.

    ``schedule[k]`` is the delay after attempt ``k + 1``; jitter spreads it by up to that fraction
    either way; a ``Retry-After`` (capped at ``retry_after_max``) is a floor, never a shortcut.
    """
    if attempts_made < 1 or attempts_made > len(schedule):
        return None
    delay = float(schedule[attempts_made - 1])
    if jitter:
        delay *= 1 + (rng or random).uniform(-jitter, jitter)
    if retry_after is not None:
        delay = max(delay, min(retry_after, retry_after_max))
    return max(0.0, delay)


def due_at(now: datetime, delay: float) -> datetime:
    """Whole seconds, rounded up: RQ's scheduler keeps whole seconds, and must never run early."""
    if delay <= 0:
        return now
    due = now + timedelta(seconds=delay)
    return datetime.fromtimestamp(math.ceil(due.timestamp()), tz=due.tzinfo)
