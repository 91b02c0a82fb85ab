"""Idempotent publish: a repeated idempotency key within the window creates nothing and returns the
first event's id, in one transaction, across transactions, and across processes that race."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select, update

from flask_async_events.models import Event, utcnow
from tests.appfactory import Order, db, events
from tests.conftest import ROOT, AppEnv, Receiver, run_burst
from tests.helpers import count_events, place_order, subscribe


def test_a_repeated_key_returns_the_first_event_and_sends_once(app: Flask, receiver: Receiver) -> None:
    subscribe(app, receiver.respond("/once"))
    first = place_order(app, idempotency_key="order-1")
    again = place_order(app, idempotency_key="order-1")  # another transaction: the host's order is still made
    assert again == first
    with app.app_context():
        same_transaction = [events.publish("sales.order.created", id=1, idempotency_key="order-2") for _ in range(2)]
        db.session.commit()
    assert same_transaction[0] == same_transaction[1] != first
    with app.app_context():
        shipped = events.publish("sales.order.shipped", id=1, idempotency_key="order-1")  # keys are per event name
        db.session.commit()
        assert db.session.scalar(select(db.func.count()).select_from(Order)) == 2  # both orders were made
    assert shipped not in (first, same_transaction[0])
    run_burst(app)
    assert len(receiver.at("/once")) == 2  # order-1 and order-2, once each
    assert count_events(app) == 3


def test_after_the_window_the_same_key_publishes_again(env: AppEnv) -> None:
    app = env.app(ASYNC_EVENTS_IDEMPOTENCY_WINDOW=60)
    first = place_order(app, idempotency_key="k")
    with app.app_context():  # the first event is now older than the window
        db.session.execute(update(Event).values(created_at=utcnow() - timedelta(seconds=61)))
        db.session.commit()
    second = place_order(app, idempotency_key="k")
    assert second != first and count_events(app) == 2
    assert place_order(app, idempotency_key="k") == second  # and the new one holds the key now


def test_a_bad_key_is_refused_by_name(app: Flask) -> None:
    with app.app_context():
        for key in ("", "k" * 256, 42):
            with pytest.raises(ValueError, match="idempotency_key must be text of 1 to 255 characters"):
                events.publish("sales.order.created", id=1, idempotency_key=key)  # type: ignore[arg-type]
        db.session.rollback()
    command = ["async-events", "publish", "sales.order.created", "--arg", "id=1", "--idempotency-key", ""]
    result = app.test_cli_runner().invoke(args=command)
    assert result.exit_code != 0 and "idempotency_key must be text" in result.output
    assert count_events(app) == 0


def test_the_cli_publishes_once_per_key(app: Flask) -> None:
    runner = app.test_cli_runner()
    command = ["async-events", "publish", "sales.order.shipped", "--arg", "id=7", "--idempotency-key", "ship-7"]
    first = runner.invoke(args=command)
    second = runner.invoke(args=command)
    assert first.exit_code == 0 and second.exit_code == 0
    assert first.output.strip().splitlines()[-1] == second.output.strip().splitlines()[-1]
    assert count_events(app) == 1


def test_two_processes_racing_with_one_key_create_one_event(env: AppEnv, receiver: Receiver) -> None:
    app = env.app()
    subscribe(app, receiver.respond("/raced"))
    start_at = time.time() + 3  # both are connected and waiting by then
    racers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.racer", "checkout-77", str(start_at), "0.5"],
            cwd=ROOT,
            env=os.environ.copy(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [racer.communicate(timeout=60) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), outputs
    (event_a, order_a), (event_b, order_b) = (stdout.split() for stdout, _ in outputs)
    assert event_a == event_b  # one event, and both publishers were told its id
    assert order_a != order_b  # the loser's own transaction went on: both orders exist
    assert count_events(app) == 1
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(Order)) == 2
    run_burst(app)
    assert len(receiver.at("/raced")) == 1
