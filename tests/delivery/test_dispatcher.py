"""The dispatcher's recording thread: results are written in batches, and no failure of the
database or of the journal loses them or stops the thread."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy.exc import OperationalError

from flask_async_events.models import DeliveryState
from tests.conftest import Receiver, run_burst
from tests.helpers import attempts, place_order, states, subscribe


def test_results_are_recorded_once_the_database_answers_again(
    app: Flask, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from flask_async_events.delivery import dispatcher

    calls: list[int] = []

    def record_after_an_outage(*args: Any) -> set[str]:
        calls.append(len(calls))
        if len(calls) == 1:
            raise OperationalError("INSERT", {}, Exception("the database went away"))
        return dispatcher_record(*args)

    dispatcher_record = dispatcher.record
    monkeypatch.setattr(dispatcher, "record", record_after_an_outage)
    subscribe(app, receiver.respond())
    place_order(app)
    run_burst(app)
    assert states(app) == [DeliveryState.DELIVERED] and len(attempts(app)) == 1
    assert len(receiver.requests) == 1 and len(calls) == 2  # recorded on the second try, not sent again
    assert "Could not record 1 delivery result(s); retrying in 0.2s" in caplog.text


def test_a_connection_that_cannot_be_rolled_back_is_dropped_and_the_results_recorded_with_another(
    app: Flask, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask_async_events.delivery import dispatcher
    from tests.appfactory import db

    with app.app_context():
        dialect = db.engine.dialect
    broken: list[Any] = []
    driver_rollback = dialect.do_rollback

    def refusing_rollback(connection: Any) -> None:  # as psycopg refuses one in the middle of a command
        if getattr(connection, "dbapi_connection", connection) in broken:  # SQLAlchemy passes its pool's proxy
            raise dialect.loaded_dbapi.OperationalError("another command is already in progress")
        driver_rollback(connection)

    def record_failing_once(*args: Any) -> set[str]:
        if not broken:
            broken.append(db.session.connection().connection.dbapi_connection)
            raise OperationalError("INSERT", {}, Exception("the connection is in an unknown state"))
        return dispatcher_record(*args)

    dispatcher_record = dispatcher.record
    monkeypatch.setattr(dispatcher, "record", record_failing_once)
    monkeypatch.setattr(dialect, "do_rollback", refusing_rollback)
    subscribe(app, receiver.respond())
    place_order(app)
    run_burst(app)
    assert broken and states(app) == [DeliveryState.DELIVERED] and len(receiver.requests) == 1


def test_the_recording_thread_outlives_an_unexpected_error_and_the_worker_stops_without_waiting(
    app: Flask, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from flask_async_events.delivery.journal import AttemptJournal

    def forget_failing(journal: AttemptJournal, attempts: Any) -> None:  # after the results are in the database
        raise RuntimeError("the journal is broken")

    monkeypatch.setattr(AttemptJournal, "forget", forget_failing)
    subscribe(app, receiver.respond())
    place_order(app)
    run_burst(app)
    assert states(app) == [DeliveryState.DELIVERED] and len(receiver.requests) == 1
    assert "Recording 1 delivery result(s) failed unexpectedly" in caplog.text
    assert "still in flight" not in caplog.text  # the stop did not wait for a result counted as unrecorded
