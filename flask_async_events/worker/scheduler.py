"""RQ's scheduler, polling five times a second so delayed retries start close to their due time,
under locks that outlive a lost holder by seconds.

RQ keeps due times in whole seconds and polls once a second, so a retry could start up to two
seconds late; our due times are rounded up (never early) and polled more often (at most ~1.2 s late).

RQ's scheduler locks (one per queue) live ``interval + 60`` seconds past their last renewal: a
worker killed with its scheduler left them to block every other worker's scheduler for a minute,
and every delayed retry of every subscription with them. Here they live :data:`LOCK_TTL` seconds,
renewed at every poll; a scheduler that lacks some of its queues' locks asks for them every
:data:`LOCK_RETRY` seconds (RQ: every ten minutes), and a worker running no scheduler offers to
take it over as often (:meth:`~flask_async_events.worker.rq_worker.AsyncEventsWorker.watch_scheduler`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler
from rq.scripts import ACQUIRE_OR_REFRESH_LOCK_SCRIPT, acquire_or_refresh_lock
from rq.utils import current_timestamp, now, utcformat

from flask_async_events import redis_connection
from flask_async_events.queues import DELIVER_JOB

POLL_INTERVAL = 0.2
OUTAGE_PAUSE = 1.0
LOCK_TTL = 4  # seconds a scheduler lock outlives its holder's last poll (RQ: interval + 60)
LOCK_RETRY = 1.0  # seconds between asks for the locks a scheduler lacks (RQ: ten minutes)


class PreciseScheduler(RQScheduler):
    """``RQScheduler`` with a sub-second poll and short locks renewed at every poll.

    It also stops when its worker dies: RQ forks the scheduler, and an orphan would otherwise go
    on holding the scheduler locks with the dead worker's code and settings.
    """

    def __init__(self, queues: Any, connection: Redis, **kwargs: Any) -> None:
        super().__init__(queues, connection, **kwargs)
        self._source = connection
        self._client: Redis | None = None
        self._asked_at = -LOCK_RETRY

    @property
    def connection(self) -> Redis:
        """A client of its own to the worker's Redis: RQ rebuilds one from the pool's arguments, which
        loses a Sentinel service. (After the fork, redis-py's pool opens new connections by itself.)"""
        if self._client is None:
            self._client = redis_connection.clone(self._source)
        return self._client

    @property
    def should_reacquire_locks(self) -> bool:
        """Whether to ask again for the locks it lacks (one a lost scheduler let expire, say)."""
        return self._queue_names != self._acquired_locks and time.monotonic() - self._asked_at >= LOCK_RETRY

    def acquire_locks(self, auto_start: bool = False) -> set[str]:
        """RQ's, with locks of :data:`LOCK_TTL` seconds: take or renew each queue's lock, and with
        ``auto_start`` start the scheduler's process once it holds one."""
        held = set()
        for name in self._queue_names:
            if acquire_or_refresh_lock(self.connection, self.get_locking_key(name), self.name, LOCK_TTL) != "taken":
                held.add(name)
        self._scheduled_job_registries = []
        self._acquired_locks = held
        self._asked_at = time.monotonic()
        if held and auto_start and (not self._process or not self._process.is_alive()):
            self.start()
        return held

    def heartbeat(self) -> None:
        """RQ's, renewing the locks for :data:`LOCK_TTL` seconds: one it lost to another
        scheduler (it expired while this one stalled) is no longer scheduled here."""
        self.last_heartbeat = now()
        names = sorted(self._acquired_locks)
        renew = self.connection.register_script(ACQUIRE_OR_REFRESH_LOCK_SCRIPT)
        with self.connection.pipeline() as pipeline:
            pipeline.hset(self.key, "last_heartbeat", utcformat(self.last_heartbeat))
            pipeline.expire(self.key, self.interval + 60)
            for name in names:
                renew(keys=[self.get_locking_key(name)], args=[self.name, LOCK_TTL], client=pipeline)
            outcomes = pipeline.execute()[2:]
        lost = {name for name, outcome in zip(names, outcomes, strict=True) if outcome == 0}
        if lost:
            self.log.warning("Scheduler locks for %s were taken over by another scheduler", ", ".join(sorted(lost)))
            self._acquired_locks -= lost
            self._scheduled_job_registries = []

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


def scheduled_deliveries(queues: Sequence[Queue]) -> tuple[int, int]:
    """How many deliveries the scheduled jobs of ``queues`` hold: those past their time, waiting
    for a scheduler to promote them, and those due later."""
    due = later = 0
    moment = current_timestamp()
    for queue in queues:
        registry = ScheduledJobRegistry(queue=queue)
        past = set(registry.get_jobs_to_schedule(moment))
        ids = registry.get_job_ids()
        for job_id, job in zip(
            ids, Job.fetch_many(ids, connection=queue.connection, serializer=queue.serializer), strict=True
        ):
            if job is not None and job.func_name == DELIVER_JOB and job.args:
                if job_id in past:
                    due += len(job.args[0])
                else:
                    later += len(job.args[0])
    return due, later
