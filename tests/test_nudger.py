"""The nudger: trigger jobs enqueued off the request path, surviving a Redis failure."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from redis.exceptions import ConnectionError as RedisConnectionError

from flask_async_events.nudger import Nudger


def test_the_nudger_enqueues_in_the_background_and_survives_a_redis_failure() -> None:
    sent: list[int] = []
    failing = threading.Event()
    failing.set()

    def enqueue(event_ids: Sequence[int]) -> None:
        if failing.is_set():
            failing.clear()
            raise RedisConnectionError("Redis is down")
        sent.extend(event_ids)

    nudger = Nudger(enqueue)
    nudger.nudge([1, 2])  # lost: the outbox relays these events later
    assert nudger.flush(5)
    nudger.nudge([3])
    nudger.nudge([4])
    assert nudger.flush(5)
    assert sorted(sent) == [3, 4]
