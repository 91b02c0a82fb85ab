"""RQ's scheduler, polling five times a second so delayed retries start close to their due time.

RQ keeps due times in whole seconds and polls once a second, so a retry could start up to two
seconds late; our due times are rounded up (never early) and polled more often (at most ~1.2 s late).
"""

from __future__ import annotations

import os
import time
from typing import Any

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.scheduler import RQScheduler

from flask_async_events import redis_connection

POLL_INTERVAL = 0.2
OUTAGE_PAUSE = 1.0


class PreciseScheduler(RQScheduler):
    """``RQScheduler`` with a sub-second poll; its lock TTLs (``interval + 60``) are unchanged.

    It also stops when its worker dies: RQ forks the scheduler, and an orphan would otherwise go
    on holding the scheduler locks with the dead worker's code and settings.
    """

    def __init__(self, queues: Any, connection: Redis, **kwargs: Any) -> None:
        super().__init__(queues, connection, **kwargs)
        self._source = connection
        self._client: Redis | None = None

    @property
    def connection(self) -> Redis:
        """A client of its own to the worker's Redis: RQ rebuilds one from the pool's arguments, which
        loses a Sentinel service. (After the fork, redis-py's pool opens new connections by itself.)"""
        if self._client is None:
            self._client = redis_connection.clone(self._source)
        return self._client

    def work(self) -> None:
        self._install_signal_handlers()
        self.register_birth()
        parent = os.getppid()
        while True:
            if self._stop_requested or os.getppid() != parent:
                self.stop()
                break
            try:
                if self.should_reacquire_locks:
                    self.acquire_locks()
                self.heartbeat()
                self.enqueue_scheduled_jobs()
            except (RedisConnectionError, RedisTimeoutError) as exc:  # Redis restarting: wait, don't die
                self.log.warning("Scheduler lost Redis (%s); retrying in %ss", exc, OUTAGE_PAUSE)
                time.sleep(OUTAGE_PAUSE)
            time.sleep(POLL_INTERVAL)
