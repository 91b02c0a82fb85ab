"""How long Redis has kept its data, by its own clock.

Maintenance sets a marker key holding Redis's time when it finds none: a missing marker means
Redis is new or lost its data (restarted empty, flushed, failed over to an empty replica), and the
marker's age tells whether live workers have had time to write their liveness keys since.
"""

from __future__ import annotations

from redis import Redis

EPOCH_KEY = "async_events:epoch"  # present while Redis keeps what this package put in it


def redis_seconds(connection: Redis) -> int:
    """Redis's own clock, the same for every worker whatever their hosts' clocks say."""
    return int(connection.time()[0])


def mark_epoch(connection: Redis) -> bool:
    """Set the marker if it is missing; True if it was (Redis lost its data, or is new)."""
    return bool(connection.set(EPOCH_KEY, redis_seconds(connection), nx=True))


def epoch_age(connection: Redis) -> float | None:
    """Seconds since the marker was set, or None without one. A marker from before it held a time
    counts as old."""
    epoch = connection.get(EPOCH_KEY)
    if epoch is None:
        return None
    try:
        since = float(epoch)
    except ValueError:
        since = 0.0
    return redis_seconds(connection) - since
