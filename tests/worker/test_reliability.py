"""Nothing is lost when Redis or a worker dies: the database is the source of truth."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from flask_async_events.models import Delivery, DeliveryState, utcnow
from flask_async_events.state import get_state
from flask_async_events.worker.maintenance import SweepReport
from tests.conftest import AppEnv, Receiver, WorkerProcess, drain, run_burst, wait_for
from tests.helpers import Try, attempts, deliveries, place_order, states, subscribe


def test_an_event_published_while_redis_is_down_is_delivered_when_it_is_back(env: AppEnv, receiver: Receiver) -> None:
    app = env.app()
    subscribe(app, receiver.respond())
    env.redis.stop()
    try:
        event_id = place_order(app)  # commits; the enqueue fails quietly
        assert get_state(app).nudger.flush(5)
    finally:
        env.redis.start()  # back, and empty
    with app.app_context():
        assert get_state().queues.trigger.count == 0
    drain(app, lambda: states(app) == ["delivered"])  # the worker's maintenance relays the event
    [request] = receiver.requests
    assert request.headers["Webhook-Id"] == deliveries(app)[0].uuid
    assert event_id


def test_scheduled_retries_survive_redis_restarting_empty(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[3])  # later than the burst ends, even on a loaded machine
    subscribe(app, receiver.respond("/flaky", [503, 200]))
    place_order(app)
    run_burst(app)
    assert states(app) == [DeliveryState.RETRYING]
    env.redis.client().flushall()  # the scheduled retry job is gone
    drain(app, lambda: states(app) == [DeliveryState.DELIVERED], timeout=20)
    assert len(receiver.at("/flaky")) == 2


def test_a_worker_killed_mid_delivery_is_finished_by_another(
    env: AppEnv, receiver: Receiver, worker_process: Callable[..., WorkerProcess]
) -> None:
    # Short timeouts keep the claim lease (job timeout + 10 s) short enough for a test.
    app = env.app(ASYNC_EVENTS_TIMEOUT=2, ASYNC_EVENTS_CONNECT_TIMEOUT=1)
    settings = get_state(app).settings
    assert settings.timeout < settings.job_timeout < settings.claim_lease
    subscribe(app, receiver.respond("/slow", [200], delay=[1.5, 0]))
    first = worker_process()
    place_order(app)
    wait_for(lambda: len(receiver.at("/slow")) == 1, timeout=20)
    first.kill()  # SIGKILL while the request is in flight
    killed_at = utcnow()
    assert states(app) == [DeliveryState.DELIVERING]

    worker_process()
    wait_for(lambda: states(app) == [DeliveryState.DELIVERED], timeout=settings.claim_lease + 20)
    requests = receiver.at("/slow")
    assert len(requests) == 2
    assert requests[0].headers["Webhook-Id"] == requests[1].headers["Webhook-Id"]  # the receiver can dedupe
    lost, retried = attempts(app)  # the journal told the second worker an attempt was under way
    assert (lost.success, lost.error_class, lost.attempt) == (False, "Interrupted", 1)
    assert (retried.success, retried.attempt) == (True, 2)
    # Taken over once the lost worker's liveness key expired, well before the claim's lease ended.
    assert lost.created < killed_at + timedelta(seconds=settings.claim_lease - 5)
    journal = get_state(app).queues.connection
    wait_for(lambda: journal.keys("async_events:journal:*") == [], timeout=5)  # nothing left behind once recorded


@contextmanager
def holding_up_writes(app: Flask) -> Iterator[None]:
    """While inside, nobody can write the delivery rows (a database too busy to record)."""
    from tests.appfactory import db

    with app.app_context():
        engine = db.engine
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # SQLite: one writer at a time
        else:
            connection.execute(select(Delivery.id).with_for_update())
        yield
        connection.rollback()


def _spooled_answers(folder: Path) -> list[str]:
    """The answers the attempt journal's spools in ``folder`` hold."""
    from flask_async_events.delivery.spool import read_entries

    owners = [path.name.removesuffix(".lock") for path in folder.glob("*.lock")]
    return [entry for owner in owners for entry in read_entries(folder, owner).values() if '"result"' in entry]


@pytest.mark.parametrize("spooled", [True, False], ids=["spool", "redis-only"])
def test_an_answer_survives_its_worker_and_redis_dying_together(
    env: AppEnv, receiver: Receiver, worker_process: Callable[..., WorkerProcess], spooled: bool
) -> None:
    from flask_async_events.delivery.spool import spool_directory

    journal_dir = {} if spooled else {"ASYNC_EVENTS_JOURNAL_DIR": ""}  # "": the journal is in Redis only
    app = env.app(ASYNC_EVENTS_TIMEOUT=4, ASYNC_EVENTS_CONNECT_TIMEOUT=1, **journal_dir)
    settings = get_state(app).settings
    folder = spool_directory(settings)
    subscribe(app, receiver.respond("/slow", [200], delay=[1.0, 0]))
    lost = worker_process()
    place_order(app)
    wait_for(lambda: len(receiver.at("/slow")) == 1, timeout=20)
    with holding_up_writes(app):  # the answer arrives, but cannot be recorded
        if folder is not None:
            wait_for(lambda: len(_spooled_answers(folder)) == 1, timeout=10)
        else:
            time.sleep(2)
        lost.kill()
        env.redis.stop()  # the node that ran the worker and the Redis primary went down together
        env.redis.start()  # back, empty
    assert states(app) == [DeliveryState.DELIVERING]

    worker_process()
    wait_for(lambda: states(app) == [DeliveryState.DELIVERED], timeout=settings.claim_lease + 20)
    if spooled:
        assert len(receiver.at("/slow")) == 1  # recorded from the spool, not sent again
        [attempt] = attempts(app)
        assert (attempt.success, attempt.status_code, attempt.attempt) == (True, 200, 1)
        assert attempt.duration_ms is not None and attempt.duration_ms >= 1000
        journal = get_state(app).queues.connection
        wait_for(lambda: journal.keys("async_events:journal:*") == [], timeout=5)  # revived, then used up
    else:  # without it, at least once: sent again
        assert len(receiver.at("/slow")) == 2


def test_an_answer_the_lost_worker_journaled_is_recorded_not_sent_again(
    app: Flask, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask_async_events.delivery.dispatcher import Dispatcher
    from flask_async_events.worker.maintenance import run_maintenance
    from tests.appfactory import db

    subscribe(app, receiver.respond("/hook", [200]))
    place_order(app)
    with monkeypatch.context() as lost_worker:
        lost_worker.setattr(Dispatcher, "_finished", lambda *args: None)  # answered, then the worker died
        run_burst(app)
    assert len(receiver.requests) == 1 and states(app) == [DeliveryState.DELIVERING]
    with app.app_context():
        db.session.execute(update(Delivery).values(lease_until=utcnow() - timedelta(seconds=1)))
        db.session.commit()
        assert run_maintenance(get_state(), "test", force=True) == SweepReport(0, 1)
    run_burst(app)
    assert states(app) == [DeliveryState.DELIVERED]
    assert len(receiver.requests) == 1  # not sent again
    [attempt] = attempts(app)
    assert (attempt.success, attempt.status_code, attempt.attempt) == (True, 200, 1)
    assert attempt.duration_ms is not None


def test_a_worker_survives_redis_going_away_in_the_middle_of_a_job(
    env: AppEnv, receiver: Receiver, worker_process: Callable[..., WorkerProcess]
) -> None:
    app = env.app()
    subscribe(app, receiver.respond("/slow", [200], delay=[3, 0]))
    worker = worker_process()
    place_order(app)
    wait_for(lambda: len(receiver.at("/slow")) == 1, timeout=20)
    env.redis.stop()  # the job finishes while Redis is gone: RQ's own loop quits on that
    time.sleep(4)
    env.redis.start()
    place_order(app)
    wait_for(lambda: states(app) == [DeliveryState.DELIVERED] * 2, timeout=60)
    assert worker.process.poll() is None  # the same process carried on


def test_a_redis_that_lost_its_data_is_rebuilt_even_while_queues_are_busy(env: AppEnv, receiver: Receiver) -> None:
    # The overdue sweep alone would wait an hour; the trigger sends one delivery itself, two wait in jobs.
    app = env.app(ASYNC_EVENTS_RELAY_AFTER=3600, ASYNC_EVENTS_BATCH_SIZE=1)
    subscribe(app, receiver.respond(), event_name="customer.created")
    with app.app_context():
        from flask_async_events.jobs import trigger
        from flask_async_events.worker.maintenance import run_maintenance
        from tests.appfactory import db, events

        for customer in range(3):
            events.publish("customer.created", id=customer)
        db.session.commit()
        trigger([1, 2, 3])
        state = get_state()
        state.queues.connection.flushall()  # Redis restarted empty: every job is gone
        state.queues.enqueue_deliveries([999_999], retry_queue=True)  # and the queues are not idle
        report = run_maintenance(state, "test", force=True)
        assert report is not None and report.requeued_deliveries == 2
    drain(app, lambda: states(app) == [DeliveryState.DELIVERED] * 3)
    assert len(receiver.requests) == 3


def test_a_worker_started_while_redis_is_down_waits_for_it(
    env: AppEnv, receiver: Receiver, worker_process: Callable[..., WorkerProcess]
) -> None:
    app = env.app()
    subscribe(app, receiver.respond())
    env.redis.stop()
    worker = worker_process()
    time.sleep(3)
    assert worker.process.poll() is None  # waiting, not crashed
    env.redis.start()
    place_order(app)
    wait_for(lambda: states(app) == [DeliveryState.DELIVERED], timeout=60)


def test_an_idle_worker_stops_on_sigterm_and_is_not_restarted(
    env: AppEnv, receiver: Receiver, worker_process: Callable[..., WorkerProcess]
) -> None:
    app = env.app()
    subscribe(app, receiver.respond())
    place_order(app)
    worker = worker_process()
    wait_for(lambda: states(app) == [DeliveryState.DELIVERED], 30)
    worker.process.send_signal(signal.SIGTERM)  # idle now: RQ raises StopRequested without marking a stop
    assert worker.process.wait(15) == 0


def test_a_sigterm_during_maintenance_lets_it_end_and_then_stops_the_worker(
    app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from flask_async_events.worker import rq_worker

    ended: list[bool] = []

    def maintenance_signalled_midway(*args: Any, **kwargs: Any) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # RQ's handler runs here, between two statements
        ended.append(True)

    monkeypatch.setattr(rq_worker, "run_maintenance", maintenance_signalled_midway)
    worker = rq_worker.AsyncEventsWorker(get_state(app).queues.all(), app=app)
    handlers = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        worker._install_signal_handlers()
        worker.run_maintenance_tasks()
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    assert ended == [True] and worker.stop_requested  # RQ raised StopRequested inside it
    assert "Maintenance failed" not in caplog.text


def _claimed_by(app: Flask, token: str, *, alive: bool, redis_age: int) -> None:
    """Make the one delivery look claimed 10 s ago with ``token``, by a process ``alive`` or not,
    on a Redis that started ``redis_age`` seconds ago."""
    from flask_async_events.delivery.journal import ALIVE_KEY
    from flask_async_events.worker.epoch import EPOCH_KEY
    from tests.appfactory import db

    with app.app_context():
        state = get_state()
        lease = timedelta(seconds=state.settings.claim_lease - 10)
        db.session.execute(
            update(Delivery).values(state=DeliveryState.DELIVERING, claim_token=token, lease_until=utcnow() + lease)
        )
        db.session.commit()
        redis = state.queues.connection
        redis.set(EPOCH_KEY, int(redis.time()[0]) - redis_age)
        if alive:
            redis.set(ALIVE_KEY.format(token.split(".")[0]), 1, ex=60)


@pytest.mark.parametrize(
    ("token", "alive", "redis_age", "taken_over"),
    [
        ("0123456789abcd.00000000000000aa", False, 100, True),  # its process is gone
        ("0123456789abcd.00000000000000aa", True, 100, False),  # its process still beats
        ("0123456789abcd.00000000000000aa", False, 2, False),  # Redis just restarted: no one has beaten yet
        ("00000000000000000000000000000aa", False, 100, False),  # a token naming no process: its lease decides
    ],
)
def test_a_lost_workers_claims_are_taken_over_before_their_lease_ends(
    app: Flask, receiver: Receiver, token: str, alive: bool, redis_age: int, taken_over: bool
) -> None:
    from flask_async_events.worker.maintenance import requeue_stalled

    subscribe(app, receiver.respond("/hook", [200, 200]))
    place_order(app)
    run_burst(app)
    _claimed_by(app, token, alive=alive, redis_age=redis_age)
    with app.app_context():
        requeue_stalled(get_state())
    [delivery] = deliveries(app)
    # Nothing in the journal: handed back, due now (it had been delivered once, so a retry).
    assert delivery.state == (DeliveryState.RETRYING if taken_over else DeliveryState.DELIVERING)
    if taken_over:
        run_burst(app)
        assert len(receiver.requests) == 2 and states(app) == [DeliveryState.DELIVERED]


def _lost_with_its_journal(app: Flask, receiver: Receiver, note: Callable[[Any, Try], None]) -> None:
    """One delivery, sent once, then claimed for its second attempt by a worker now lost, whose
    journal has what ``note(journal, attempt)`` wrote."""
    from flask_async_events.delivery.journal import AttemptJournal

    subscribe(app, receiver.respond())
    place_order(app)
    run_burst(app)
    [delivery] = deliveries(app)
    with app.app_context():
        journal = AttemptJournal(get_state().queues.connection)
        note(journal, Try((delivery.id, 2), delivery.uuid))
        assert journal.flush(5)
        journal.close()
    _claimed_by(app, f"{journal.owner}.00000000000000aa", alive=False, redis_age=100)


def test_a_lost_workers_journaled_answer_is_recorded_when_its_claims_are_taken_over(
    app: Flask, receiver: Receiver
) -> None:
    from flask_async_events.notifiers.base import NotifyResult
    from flask_async_events.worker.maintenance import requeue_stalled

    answered = NotifyResult(True, status_code=202, response_data="ok")
    _lost_with_its_journal(app, receiver, lambda journal, attempt: journal.finished([attempt], [(answered, 7)]))
    with app.app_context():
        requeue_stalled(get_state())
    assert states(app) == [DeliveryState.DELIVERED] and len(receiver.requests) == 1  # not sent again
    assert [(a.success, a.status_code, a.duration_ms, a.attempt) for a in attempts(app)][1] == (True, 202, 7, 2)
    with app.app_context():
        assert get_state().queues.connection.keys("async_events:journal:*") == []


def test_a_lost_workers_attempt_is_logged_even_when_the_worker_taking_it_over_is_lost_too(
    app: Flask, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask_async_events.worker import recovery
    from flask_async_events.worker.maintenance import requeue_stalled

    # Under way when its worker was lost.
    _lost_with_its_journal(app, receiver, lambda journal, attempt: journal.started([attempt]))

    def lost_while_recording(*args: Any) -> None:
        raise SystemExit("the worker taking the claims over was killed too")

    with app.app_context(), monkeypatch.context() as patch:
        patch.setattr(recovery, "record", lost_while_recording)
        with pytest.raises(SystemExit):
            requeue_stalled(get_state())
        get_state().db.session.rollback()
    with app.app_context():  # its lease ends; the next worker takes the claim over
        get_state().db.session.execute(update(Delivery).values(lease_until=utcnow() - timedelta(seconds=1)))
        get_state().db.session.commit()
        requeue_stalled(get_state())
    [interrupted] = [a for a in attempts(app) if a.attempt == 2]
    assert interrupted.error_class == "Interrupted"  # logged from the first worker's journal, not lost


def test_a_worker_stops_a_scheduler_that_missed_its_sigterm(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    from flask_async_events.worker import rq_worker
    from flask_async_events.worker.scheduler import PreciseScheduler

    # The forked scheduler deaf to SIGTERM, as one is when the signal beats its own handlers.
    monkeypatch.setattr(
        PreciseScheduler, "_install_signal_handlers", lambda self: signal.signal(signal.SIGTERM, signal.SIG_IGN)
    )
    monkeypatch.setattr(rq_worker, "SCHEDULER_STOP_WAIT", 0.2)
    worker = rq_worker.AsyncEventsWorker(get_state(app).queues.all(), app=app)
    worker.scheduler = scheduler = PreciseScheduler(worker.queues, connection=worker.connection)
    process = scheduler.start()
    try:
        wait_for(lambda: bool(worker.connection.exists(scheduler.key)), 10)  # deaf from here on
        stopper = threading.Thread(target=worker.stop_scheduler, daemon=True)
        stopper.start()
        stopper.join(15)
        assert not stopper.is_alive(), "the worker waited for a scheduler that will never stop"
        assert not process.is_alive()
    finally:
        process.kill()
        process.join(5)


def test_a_worker_whose_command_listener_saw_its_unsubscription_first_stops_at_once(app: Flask) -> None:
    from flask_async_events.worker.rq_worker import AsyncEventsWorker

    worker = AsyncEventsWorker(get_state(app).queues.all(), app=app)
    worker.subscribe()
    assert worker.pubsub is not None and worker.pubsub_thread is not None
    # The listener reads the unsubscription before it is told to stop, as it can while a worker stops.
    worker.pubsub.unsubscribe()
    wait_for(lambda: not worker.pubsub.subscribed, 5)
    stopper = threading.Thread(target=worker.unsubscribe, daemon=True)
    stopper.start()
    stopper.join(10)
    assert not stopper.is_alive(), "stopping the worker waited for its command listener's minute-long sleep"
    assert not worker.pubsub_thread.is_alive()
