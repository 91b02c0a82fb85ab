"""The outbox: events are written in the host's transaction, and a trigger job is queued once it commits."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from rq import Queue

from flask_async_events.delivery.dialects import has_row_locks
from flask_async_events.models import utcnow
from flask_async_events.queues import TRIGGER_JOB, TRIGGER_JOB_OPTIONS, TRIGGER_JOB_TTL
from flask_async_events.state import get_state
from tests.appfactory import db, events
from tests.conftest import Receiver, run_burst
from tests.helpers import (
    body_json,
    count_events,
    subscribe,
)


def test_rolled_back_transaction_sends_nothing(app: Flask, receiver: Receiver) -> None:
    subscribe(app, receiver.respond())
    with app.app_context():
        events.publish("customer.created", id=1)
        db.session.rollback()
    run_burst(app)
    assert count_events(app) == 0
    assert receiver.requests == []


def test_rolled_back_savepoint_drops_only_its_events(app: Flask, receiver: Receiver) -> None:
    subscribe(app, receiver.respond(), event_name="customer.created")
    with app.app_context():
        events.publish("customer.created", id=1)
        nested = db.session.begin_nested()
        events.publish("customer.created", id=2)
        nested.rollback()
        db.session.commit()
    run_burst(app)
    assert [body_json(r.body)["data"]["id"] for r in receiver.requests] == [1]


def test_released_savepoint_waits_for_the_outer_commit(app: Flask, receiver: Receiver) -> None:
    subscribe(app, receiver.respond(), event_name="customer.created")
    with app.app_context():
        with db.session.begin_nested():
            events.publish("customer.created", id=7)
        # The savepoint is released, but the outer transaction has not committed: nothing queued.
        assert get_state().nudger.flush(5) and get_state().queues.trigger.count == 0
        db.session.commit()
        assert get_state().nudger.flush(5) and get_state().queues.trigger.count == 1
    run_burst(app)
    assert len(receiver.requests) == 1


def test_one_trigger_job_per_transaction(app: Flask, receiver: Receiver) -> None:
    subscribe(app, receiver.respond(), event_name="customer.created")
    with app.app_context():
        for customer in range(5):
            events.publish("customer.created", id=customer)
        db.session.commit()
        assert get_state().nudger.flush(5) and get_state().queues.trigger.count == 1
    run_burst(app)
    assert sorted(body_json(r.body)["data"]["id"] for r in receiver.requests) == [0, 1, 2, 3, 4]


def test_commits_under_load_share_one_trigger_job_where_the_database_has_row_locks(
    app: Flask, receiver: Receiver
) -> None:
    subscribe(app, receiver.respond(), event_name="customer.created")
    with app.app_context():
        state = get_state()
        for customer in range(3):  # three commits while no worker runs
            events.publish("customer.created", id=customer)
            db.session.commit()
        assert state.nudger.flush(5)
        jobs = state.queues.trigger.get_jobs()
        if has_row_locks(db.session):
            # PostgreSQL and MySQL: the waiting job takes every untriggered event (SKIP LOCKED).
            assert len(jobs) == 1
        else:
            # SQLite locks the whole database, so jobs name their events: each commit's events
            # are in exactly one job (the nudger may put commits that came together in one).
            named = sorted(event_id for job in jobs for event_id in job.args[0])
            assert len(named) == 3 and len(set(named)) == 3
    run_burst(app)
    assert sorted(body_json(r.body)["data"]["id"] for r in receiver.requests) == [0, 1, 2]


def test_a_trigger_request_queues_the_job_rqs_own_enqueue_would(app: Flask) -> None:
    """Where the database has row locks, a commit asks for a trigger job in one script, from fields
    RQ made once: it must queue the job RQ's enqueue makes, but for its id and times."""
    queues = get_state(app).queues
    connection = queues.connection
    queues.request_trigger()
    queues.request_trigger()  # one is waiting: nothing more
    queues.take_trigger_request()  # a worker took it
    connection.script_flush()  # and Redis restarted, forgetting the script: it is sent again
    queues.request_trigger()
    ours = queues.trigger.get_jobs()
    theirs = queues.trigger.enqueue(TRIGGER_JOB, [], **TRIGGER_JOB_OPTIONS)
    assert queues.trigger.job_ids == [*(job.id for job in ours), theirs.id] and len(ours) == 2
    saved = [connection.hgetall(job.key) for job in [*ours, theirs]]
    # Each expires if it waits an hour, or if a worker killed as it took the job left its hash.
    assert all(TRIGGER_JOB_TTL - 60 < connection.ttl(job.key) <= TRIGGER_JOB_TTL for job in [*ours, theirs])
    times = {b"created_at", b"enqueued_at"}
    assert all(set(fields) >= times for fields in saved)
    unlike = [{name: value for name, value in fields.items() if name not in times} for fields in saved]
    assert unlike[0] == unlike[1] == unlike[2]
    assert [abs(job.created_at - utcnow()) < timedelta(seconds=10) for job in ours] == [True, True]
    assert connection.smembers(Queue.redis_queues_keys) == {queues.trigger.key.encode()}
