"""RQ's scheduler, polling five times a second so delayed retries start close to their due time.

RQ keeps due times in whole seconds and polls once a second, so a retry could start up to two
seconds late; our due times are rounded up (never early) and polled more often (at most ~1.2 s late).
"""

from __future__ import annotations

import os
import time

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.scheduler import RQScheduler

POLL_INTERVAL = 0.2
OUTAGE_PAUSE = 1.0


class PreciseScheduler(RQScheduler):
    """``RQScheduler`` with a sub-second poll; its lock TTLs (``interval + 60``) are unchanged.

    It also stops when its worker dies: RQ forks the scheduler, and an orphan would otherwise go
    on holding the scheduler locks with the dead worker's code and settings.
    """

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
