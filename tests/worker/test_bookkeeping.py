"""The RQ bookkeeping a worker leaves out, and that leaving it out loses nothing: a trigger job runs
without RQ's states, heartbeats and registries around it (it is only a nudge; the events wait in the
database), and RQ's beats between jobs come at most once a second."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from rq.job import Job
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from flask_async_events.delivery import fanout
from flask_async_events.models import Event
from flask_async_events.queues import TRIGGER_JOB_TTL
from flask_async_events.state import AppState, get_state
from flask_async_events.worker import rq_worker
from flask_async_events.worker.maintenance import run_maintenance
from flask_async_events.worker.rq_worker import AsyncEventsWorker, run_worker
from tests.appfactory import db, events
from tests.conftest import AppEnv, Receiver, WorkerProcess, drain, run_burst, wait_for
from tests.helpers import place_order, states, subscribe


def untriggered(app: Flask) -> int:
    with app.app_context():
        return len(get_state().db.session.scalars(select(Event.id).where(Event.triggered_at.is_(None))).all())


def one_order_nudged(app: Flask, receiver: Receiver) -> AppState:
    """A subscription and one order's event, its trigger job queued; the app's state."""
    subscribe(app, receiver.respond())
    place_order(app)
    state = get_state(app)
    state.nudger.flush(5)
    return state


def test_trigger_jobs_leave_nothing_in_redis_and_deliver_jobs_leave_within_seconds(
    env: AppEnv, receiver: Receiver
) -> None:
    app = env.app(ASYNC_EVENTS_BATCH_SIZE=1)
    subscribe(app, receiver.respond("/first"))
    subscribe(app, receiver.respond("/second"))  # past the trigger's first batch of one: a deliver job
    place_order(app)
    run_burst(app)
    assert len(receiver.requests) == 2
    queues = get_state(app).queues
    connection = queues.connection
    assert connection.zcard(queues.trigger.finished_job_registry.key) == 0
    assert connection.zcard(queues.delivery.finished_job_registry.key) == 1, "the deliver job ran as RQ runs jobs"
    wait_for(lambda: connection.keys("rq:job:*") == [] and connection.keys("rq:results:*") == [], timeout=5)
    run_burst(app)  # a worker's maintenance drops it from RQ's registry of finished jobs too
    assert connection.zcard(queues.delivery.finished_job_registry.key) == 0


def test_a_trigger_job_that_fails_is_run_again_by_rq_at_once(
    app: Flask, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    subscribe(app, receiver.respond())
    real = fanout.trigger
    calls: list[list[int]] = []

    def fails_once(state: AppState, event_ids: list[int]) -> int:
        calls.append(event_ids)
        if len(calls) == 1:
            raise OperationalError("SELECT", {}, Exception("the database went away"))
        return real(state, event_ids)

    monkeypatch.setattr(fanout, "trigger", fails_once)
    place_order(app)
    run_burst(app)
    assert len(receiver.requests) == 1
    (failed,) = [record for record in caplog.records if "RQ runs it again and retries it" in record.getMessage()]
    assert "the database went away" in failed.getMessage()
    # The job that failed, and only it, ran again as RQ runs jobs (the others ran without RQ's registries).
    assert get_state(app).queues.trigger.finished_job_registry.get_job_ids(cleanup=False) == [
        failed.getMessage().split()[2]
    ]


def test_a_trigger_job_that_keeps_failing_is_retried_by_rq_later(
    app: Flask, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    subscribe(app, receiver.respond())

    def fails(state: AppState, event_ids: list[int]) -> int:
        raise OperationalError("SELECT", {}, Exception("the database went away"))

    monkeypatch.setattr(fanout, "trigger", fails)
    place_order(app)
    run_burst(app)
    queues = get_state(app).queues
    waiting = Job.fetch_many(queues.trigger.scheduled_job_registry.get_job_ids(), connection=queues.connection)
    assert waiting and [job.retries_left for job in waiting if job] == [2] * len(waiting)  # CRASH_RETRY: 3, 1 used
    assert untriggered(app) == 1 and receiver.requests == []
    monkeypatch.undo()
    drain(app, lambda: states(app) == ["delivered"], timeout=15)  # RQ's retry, 2 s later


def test_a_trigger_job_that_fails_as_redis_goes_away_loses_nothing(
    env: AppEnv, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Its hash cannot be saved again for RQ to rerun it: the worker stops as it does when Redis
    goes away mid-job (leaving no thread behind), and the event, untriggered in the database, goes
    out once Redis is back."""
    app = env.app()

    def fails_as_redis_goes(state: AppState, event_ids: list[int]) -> int:
        env.redis.stop()
        raise OperationalError("SELECT", {}, Exception("the database went away"))

    monkeypatch.setattr(fanout, "trigger", fails_as_redis_goes)
    state = one_order_nudged(app, receiver)
    before = threading.enumerate()
    run_worker(app, [state.queues.trigger], burst=True, with_scheduler=False, logging_level="WARNING")
    assert "RQ runs it again and retries it" in caplog.text and "Worker lost Redis" in caplog.text
    assert untriggered(app) == 1 and receiver.requests == []
    assert not [thread for thread in threading.enumerate() if thread not in before], "a thread was left behind"
    monkeypatch.undo()
    env.redis.start()  # empty: the next worker's maintenance rebuilds the queues from the database
    drain(app, lambda: states(app) == ["delivered"], timeout=30)
    assert len(receiver.requests) == 1


def test_a_worker_on_the_trigger_queue_alone_leaves_nothing_in_its_intermediate_list(
    app: Flask, receiver: Receiver
) -> None:
    state = one_order_nudged(app, receiver)
    AsyncEventsWorker([state.queues.trigger], app=app).work(burst=True, logging_level="WARNING")
    assert len(receiver.requests) == 1  # the trigger sends its first batch itself
    assert state.queues.connection.llen(state.queues.trigger.intermediate_queue_key) == 0


def slow_trigger_taken(
    app: Flask, receiver: Receiver, worker_process: Callable[..., WorkerProcess], calls: Path | None = None
) -> WorkerProcess:
    """One event whose service takes 4 s (noting each call in ``calls``), its one trigger job
    taken by a worker process that is now running it."""
    subscribe(app, receiver.respond(), event_name="slow.event")
    with app.app_context():
        events.publish("slow.event", id=1, seconds=4, calls=str(calls or ""))
        db.session.commit()
        state = get_state()
        state.nudger.flush(5)
        run_maintenance(state, "test", force=True)  # Redis known: the worker rebuilds no trigger job of its own
        state.queues.trigger.empty()
        state.queues.enqueue_trigger(state.db.session.scalars(select(Event.id)).all())  # exactly one job
    connection = state.queues.connection
    worker = worker_process()
    # Taken, and its hash dropped as the worker began it: its service is sleeping.
    wait_for(lambda: state.queues.trigger.count == 0 and connection.keys("rq:job:*") == [], timeout=20)
    return worker


def test_an_event_whose_worker_dies_in_its_trigger_job_is_relayed(
    env: AppEnv, receiver: Receiver, worker_process: Callable[..., WorkerProcess]
) -> None:
    app = env.app(ASYNC_EVENTS_RELAY_AFTER=0)
    worker = slow_trigger_taken(app, receiver, worker_process)
    worker.kill()
    assert untriggered(app) == 1
    drain(app, lambda: states(app) == ["delivered"], timeout=30)  # a worker's maintenance relays it
    assert len(receiver.requests) == 1


def test_a_sigterm_during_a_trigger_job_stops_the_worker_once_the_job_is_done(
    app: Flask, receiver: Receiver, worker_process: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    calls = tmp_path / "calls"
    worker = slow_trigger_taken(app, receiver, worker_process, calls)
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(30) == 0
    assert untriggered(app) == 0
    drain(app, lambda: states(app) == ["delivered"], timeout=30)
    assert len(receiver.requests) == 1
    # Resolved once: RQ's StopRequested was not raised inside the service, failing it (as the
    # host's error) and making the delivery resolve the payload again.
    assert calls.read_text() == "1\n"


def test_a_trigger_job_whose_hash_expired_in_its_queue_is_skipped_and_its_event_still_delivered(
    app: Flask, receiver: Receiver
) -> None:
    state = one_order_nudged(app, receiver)
    connection = state.queues.connection
    [job_id] = state.queues.trigger.job_ids
    assert 0 < connection.ttl(Job.key_for(job_id)) <= TRIGGER_JOB_TTL  # a killed taker's leftover expires too
    connection.delete(Job.key_for(job_id))  # as its expiry does
    run_burst(app)
    assert len(receiver.requests) == 1 and states(app) == ["delivered"]
    assert state.queues.trigger.count == 0


def test_a_worker_beats_in_one_round_trip_and_at_most_once_a_second_between_jobs(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = AsyncEventsWorker(get_state(app).queues.all(), app=app)
    worker.register_birth()
    connection = worker.connection
    try:
        connection.hdel(worker.key, "last_heartbeat", "state")
        worker.heartbeat()
        assert connection.hget(worker.key, "last_heartbeat") and connection.ttl(worker.key) > 60
        connection.hdel(worker.key, "last_heartbeat")
        worker.heartbeat()  # within the second: nothing is sent
        assert connection.hget(worker.key, "last_heartbeat") is None
        worker.heartbeat(timeout=90)  # a beat with a timeout of its own is always sent
        assert connection.hget(worker.key, "last_heartbeat") and connection.ttl(worker.key) <= 90
        monkeypatch.setattr(rq_worker, "HEARTBEAT_EVERY", 0.05)
        connection.hdel(worker.key, "last_heartbeat")
        time.sleep(0.1)
        worker.heartbeat()
        assert connection.hget(worker.key, "last_heartbeat")

        worker.set_state("busy")
        assert connection.hget(worker.key, "state") == b"busy"
        connection.hdel(worker.key, "state")
        worker.set_state("busy")  # unchanged: not sent again
        assert connection.hget(worker.key, "state") is None
        worker.set_state("idle")
        assert connection.hget(worker.key, "state") == b"idle"
    finally:
        worker.register_death()
