"""The RQ worker: in-process jobs (no fork per job, HTTP connections kept), each in the app context,
with this package's maintenance added to RQ's own."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask
from redis.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.exceptions import StopRequested
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException
from rq.worker import SimpleWorker, WorkerStatus

from flask_async_events.delivery.dispatcher import drain, running_dispatcher
from flask_async_events.queues import TRIGGER_JOB
from flask_async_events.state import AppState, get_state
from flask_async_events.worker.maintenance import run_maintenance
from flask_async_events.worker.scheduler import PreciseScheduler, scheduled_deliveries

SCHEDULER_STOP_TRIES = 5
SCHEDULER_STOP_WAIT = 1.0  # seconds for the scheduler to stop after each SIGTERM
COMMAND_LISTENER_WAKE = 1.0  # seconds between the command listener's looks at whether to stop
HEARTBEAT_EVERY = 1.0  # seconds: RQ's beats between jobs come at most this often (they last minutes)
SCHEDULER_WATCH = 1.0  # seconds between a worker's offers to take over a scheduler nobody runs
IDLE_WAKE = 1  # seconds an idle worker waits for a job before it looks around (maintenance, the scheduler)
SCHEDULER_HOLDER = "async_events:scheduler-holder"  # the worker that last started the scheduler
log = logging.getLogger("flask_async_events")


def run_worker(
    app: Flask,
    queues: list[Queue] | None = None,
    *,
    name: str | None = None,
    burst: bool = False,
    max_jobs: int | None = None,
    with_scheduler: bool = True,
    logging_level: str = "INFO",
) -> None:
    """Work ``queues`` (default: all three) until asked to stop, or, with ``burst``, until they are
    empty. RQ's loop quits when Redis goes away in the middle of a job, or loses track of it after
    Redis restarted empty; this starts a new one (backing off up to 30 s), so a Redis outage does
    not take the workers down."""
    if queues is None:
        queues = get_state(app).queues.all()
    backoff = 1.0
    options = {"burst": burst, "max_jobs": max_jobs, "with_scheduler": with_scheduler, "logging_level": logging_level}
    while True:
        stopped = _work_once(app, queues, name, options)
        if burst or max_jobs is not None or stopped:
            return
        log.warning("Worker stopped unexpectedly; starting again in %.0fs", backoff)
        try:
            time.sleep(backoff)
        except StopRequested:  # SIGTERM while waiting: RQ's handler is still installed
            return
        backoff = min(backoff * 2, 30.0)


def _work_once(app: Flask, queues: list[Queue], name: str | None, options: dict[str, Any]) -> bool:
    """One RQ worker loop, until it ends; whether it was asked to stop (rather than failing)."""
    worker: AsyncEventsWorker | None = None
    try:
        worker = AsyncEventsWorker(queues, app=app, name=name)  # talks to Redis already
        log.info("Worker %s: serving %s", worker.name, ", ".join(queue.name for queue in queues))
        worker.work(**options)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        log.warning("Worker lost Redis: %s", exc)
    except Exception:  # RQ's own bookkeeping can fail after Redis lost its data
        log.exception("Worker failed")
    return worker is not None and worker.stop_requested


class AsyncEventsWorker(SimpleWorker):
    """A ``SimpleWorker`` bound to one Flask app. Run several processes for parallelism."""

    def __init__(self, queues: list[Queue], *, app: Flask, **kwargs: Any) -> None:
        self.flask_app = app
        self.events_state: AppState = get_state(app)
        kwargs.setdefault("serializer", JSONSerializer)
        kwargs.setdefault("maintenance_interval", self.events_state.settings.maintenance_interval)
        self._last_beat = self._last_watch = -HEARTBEAT_EVERY
        self._scheduler_standby = False  # set once it may take the scheduler over (not a burst worker)
        super().__init__(queues, connection=self.events_state.queues.connection, **kwargs)

    @property
    def stop_requested(self) -> bool:
        """Whether the worker was asked to stop (SIGTERM, SIGINT), as opposed to failing."""
        return bool(self._stop_requested)

    def request_stop(self, signum: Any, frame: Any) -> None:
        """SIGTERM or SIGINT: RQ marks the stop only if a job runs; mark it always, so
        :func:`run_worker` does not take an idle worker's stop for a failure and start again."""
        self._stop_requested = True
        super().request_stop(signum, frame)

    @contextlib.contextmanager
    def _busy(self) -> Iterator[None]:
        """Mark the worker busy, in this process only, while it does work RQ does not count as a
        job (a trigger job run at once, maintenance). RQ's SIGTERM handler lets a busy worker finish
        its job but stops an idle one by raising ``StopRequested`` wherever it is: here, inside the
        host's event service (taken for its error) or between a query and its result (leaving the
        driver's connection unusable). Redis is not told: its copy of the state is for ``rq info``,
        and two round trips per trigger job would cost a tenth of one."""
        before = self._state
        self._state = WorkerStatus.BUSY
        try:
            yield
        finally:
            self._state = before

    def subscribe(self) -> None:
        """RQ's listener for commands sent to this worker (``rq`` suspend, kill-horse), waking every
        second instead of every minute: redis-py (from 8.2) waits for that thread when it is
        stopped, and a listener that saw its unsubscription before the stop would hold a stopping
        worker up to a minute, past a platform's kill deadline."""
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]  # RQ annotates it None
            sleep_time=COMMAND_LISTENER_WAKE, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        """RQ's, in one round trip instead of two; the beats it sends before and after taking
        each job (two each) at most once a second, since the worker's key lives for minutes."""
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        beat = time.monotonic()
        if beat - self._last_watch >= SCHEDULER_WATCH:
            self._last_watch = beat
            self.watch_scheduler()
        if timeout is None and beat - self._last_beat < HEARTBEAT_EVERY:
            return
        self._last_beat = beat
        with self.connection.pipeline(transaction=False) as pipe:
            super().heartbeat(timeout, pipe)
            pipe.execute()

    def watch_scheduler(self) -> None:
        """If this worker runs no scheduler, take it over when its locks are free: released by a
        worker that stopped, or expired a few seconds after the worker that ran it was lost. RQ asks
        only at its maintenance, and its locks lived a minute: every delayed retry waited that long."""
        scheduler = self.scheduler
        if not self._scheduler_standby or scheduler is None or self._stop_requested:
            return  # a stopping worker starts nothing: a scheduler forked now would outlive its stop
        if scheduler._process is not None and scheduler._process.is_alive():
            return
        if scheduler.acquire_locks(auto_start=True):
            self._took_over_scheduler()

    def _took_over_scheduler(self) -> None:
        """Say in delivery terms that this worker runs the scheduler now, after whom, and how many
        deliveries were waiting for it."""
        previous = self.connection.getset(SCHEDULER_HOLDER, self.name)
        name = previous.decode() if isinstance(previous, bytes) else previous
        if name is None or name == self.name:
            return
        lost = bool(self.connection.exists(self.redis_worker_namespace_prefix + name))
        due, later = scheduled_deliveries(self.queues)
        if lost:
            log.warning("Scheduler of lost worker %s released; %d scheduled deliveries due, %d later", name, due, later)
        else:
            log.info(
                "Scheduler taken over from stopped worker %s; %d scheduled deliveries due, %d later", name, due, later
            )

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        """RQ's, but not sent again when unchanged (RQ sets "idle" before taking every job)."""
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline)

    @property
    def dequeue_timeout(self) -> int:
        """Wake up every few seconds even when idle: for maintenance, and to take over a scheduler
        a lost worker left."""
        return min(self.events_state.settings.maintenance_interval, IDLE_WAKE)

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        """RQ's own start-up, with :class:`PreciseScheduler` in place of ``RQScheduler``."""
        self._scheduler_standby = not burst
        self.scheduler = PreciseScheduler(
            self.queues,
            name=self.name,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        self.scheduler.acquire_locks()
        if not self.scheduler.acquired_locks:
            return
        if not burst:
            self.scheduler.start()
            self._took_over_scheduler()
            return
        try:
            self.scheduler.register_birth()
            self.scheduler.enqueue_scheduled_jobs()
        finally:
            self.scheduler.release_locks()
            self.scheduler.register_death()

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        """RQ's dequeue; a burst worker (``timeout`` None) that finds its queues empty first lets
        its sends end, since recording them can enqueue more (a retry due at once)."""
        result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        dispatcher = running_dispatcher(self.flask_app)
        while result is None and timeout is None and dispatcher is not None and dispatcher.busy():
            settings = self.events_state.settings
            drain(self.flask_app, settings.send_budget + settings.connect_timeout + settings.timeout)
            result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        return result

    def teardown(self) -> None:
        """At the end of RQ's loop, let the sends in flight end and be recorded first. A worker
        asked to stop hands back what has not started yet; a burst worker sends it."""
        settings = self.events_state.settings
        stopping = bool(self._stop_requested)
        wait = settings.connect_timeout + settings.timeout + (0 if stopping else settings.send_budget)
        drain(self.flask_app, wait, release_waiting=stopping)
        try:
            super().teardown()
        except BaseException:
            self._stop_listening()
            raise

    def _stop_listening(self) -> None:
        """Stop the command listener's thread. RQ unsubscribes only after recording the worker's
        death, so with Redis gone it left the thread retrying to connect forever, one more with each
        restart of a worker in this process (:func:`run_worker`)."""
        thread = self.pubsub_thread
        if thread is not None and thread.is_alive():
            thread.stop()
            thread.join(COMMAND_LISTENER_WAKE * 2)
        if self.pubsub is not None:
            self.pubsub.close()

    def stop_scheduler(self) -> None:
        """RQ's, made sure of. A SIGTERM that reaches the forked scheduler before it has installed its
        own handlers runs the worker's inherited one instead and is lost (a burst worker can stop
        right after starting it), and RQ would then wait for it forever: ask again, then kill it."""
        self._scheduler_standby = False  # stopped for good: never taken over again by this worker
        process = self.scheduler._process if self.scheduler is not None else None
        if process is None or not process.pid:
            return
        for _ in range(SCHEDULER_STOP_TRIES):
            with contextlib.suppress(OSError):
                os.kill(process.pid, signal.SIGTERM)
            process.join(SCHEDULER_STOP_WAIT)
            if not process.is_alive():
                return
        process.kill()
        process.join()

    def execute_job(self, job: Job, queue: Queue) -> None:
        if job.func_name == TRIGGER_JOB and self._trigger_at_once(job, queue):
            return
        with self.flask_app.app_context():
            super().execute_job(job, queue)

    def _trigger_at_once(self, job: Job, queue: Queue) -> bool:
        """Run a trigger job without RQ's bookkeeping around it; False if it raised.

        RQ spends about ten round trips on a job besides taking it (states, heartbeats, registries,
        its result): under load, more time than the trigger itself. A trigger job needs none of
        them: it is only a nudge, the events wait in the database, and one the worker dies in is
        relayed by maintenance like a lost nudge. So its hash is dropped as it is taken, and it
        runs. If it raises, its hash is saved again and RQ runs it as any job, which retries it.
        """
        with self.connection.pipeline() as pipe:
            pipe.delete(job.key)
            if len(self.queues) == 1:  # RQ moved it to the queue's intermediate list as it took it
                pipe.lrem(queue.intermediate_queue_key, 1, job.id)
            pipe.execute()
        try:
            with self._busy(), self.flask_app.app_context():
                timeout = job.timeout or queue.DEFAULT_TIMEOUT
                with self.death_penalty_class(timeout, JobTimeoutException, job_id=job.id):
                    job.func(*job.args, **job.kwargs)
        except Exception as exc:
            log.warning("Trigger job %s failed (%s); RQ runs it again and retries it", job.id, exc)
            job.save()
            return False
        self.log.info("Worker %s: %s: Job OK (%s)", self.name, queue.name, job.id)  # as RQ's --verbose lines
        return True

    def run_maintenance_tasks(self) -> None:
        with self._busy():
            super().run_maintenance_tasks()
            with self.flask_app.app_context():
                try:
                    run_maintenance(self.events_state, self.name)
                except Exception:  # the database or Redis may be down; the next interval tries again
                    interval = self.events_state.settings.maintenance_interval
                    log.exception("Maintenance failed; retrying in %ss", interval)
