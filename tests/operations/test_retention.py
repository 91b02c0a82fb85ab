"""Retention: prune deletes old finished work in batches and keeps recent and open rows."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, insert, select, update

from flask_async_events.models import Delivery, DeliveryAttempt, Event, utcnow
from flask_async_events.operations import retention
from flask_async_events.state import get_state
from flask_async_events.worker.maintenance import run_maintenance
from tests.appfactory import db
from tests.conftest import AppEnv, Receiver, run_burst
from tests.helpers import place_order, subscribe


def age_first_events(app: Flask, count: int, days: int = 40) -> None:
    """Make the first ``count`` events, their deliveries and attempts ``days`` old."""
    old = utcnow() - timedelta(days=days)
    with app.app_context():
        event_ids = list(db.session.scalars(select(Event.id).order_by(Event.id).limit(count)))
        delivery_ids = list(db.session.scalars(select(Delivery.id).where(Delivery.event_id.in_(event_ids))))
        db.session.execute(update(Event).where(Event.id.in_(event_ids)).values(created_at=old))
        db.session.execute(update(Delivery).where(Delivery.id.in_(delivery_ids)).values(updated_at=old))
        db.session.execute(
            update(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(delivery_ids)).values(created=old)
        )
        db.session.commit()


def counts(app: Flask) -> tuple[int, int, int]:
    with app.app_context():
        return (
            db.session.scalar(select(func.count()).select_from(DeliveryAttempt)) or 0,
            db.session.scalar(select(func.count()).select_from(Delivery)) or 0,
            db.session.scalar(select(func.count()).select_from(Event)) or 0,
        )


@pytest.fixture
def aged(env: AppEnv, receiver: Receiver) -> Flask:
    """Six delivered orders, the first four of them 40 days old."""
    app = env.app()
    subscribe(app, receiver.respond())
    for _ in range(6):
        place_order(app)
    run_burst(app)
    age_first_events(app, 4)
    return app


def test_prune_deletes_old_finished_work_and_keeps_the_rest(aged: Flask) -> None:
    runner = aged.test_cli_runner()
    dry = runner.invoke(args=["async-events", "prune", "--older-than", "30d", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output) == {"attempts": 4, "deliveries": 4, "events": 4, "dry_run": True}
    assert counts(aged) == (6, 6, 6)  # a dry run deletes nothing

    result = runner.invoke(args=["async-events", "prune", "--older-than", "30d", "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    assert "Deleted 4 attempt log row(s), 4 finished delivery(ies) and 4 event(s) older than 30d." in result.output
    assert "Pruning" in result.output  # the progress bar
    assert counts(aged) == (2, 2, 2)
    result = runner.invoke(args=["async-events", "prune", "--older-than", "30d", "--json"])
    assert json.loads(result.output) == {"attempts": 0, "deliveries": 0, "events": 0, "dry_run": False}


def test_prune_never_touches_open_work(env: AppEnv, receiver: Receiver) -> None:
    app = env.app()
    subscribe(app, receiver.respond())
    place_order(app)  # committed, never triggered: no worker ran
    age_first_events(app, 1)
    result = app.test_cli_runner().invoke(args=["async-events", "prune", "--older-than", "1d", "--json"])
    assert json.loads(result.output)["events"] == 0
    assert counts(app) == (0, 0, 1)


def test_periodic_prune_in_maintenance_is_opt_in(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_PRUNE_AFTER=30 * 86400)
    subscribe(app, receiver.respond())
    for _ in range(3):
        place_order(app)
    run_burst(app)
    age_first_events(app, 2)
    with app.app_context():
        run_maintenance(get_state(), "test", force=True)
    assert counts(app) == (1, 1, 1)


def test_a_bad_age_names_the_option(aged: Flask) -> None:
    result = aged.test_cli_runner().invoke(args=["async-events", "prune", "--older-than", "a month"])
    assert result.exit_code == 2
    assert "Invalid value: --older-than: 'a month' is not a duration" in result.output
    assert counts(aged) == (6, 6, 6)


def test_what_changes_between_a_batchs_read_and_its_delete_stays(
    aged: Flask, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead delivery replayed, and an old event given a new delivery (recover --missed), after
    prune read their batch: the delete asks again, and both stay."""
    other = subscribe(aged, receiver.respond("/other"))
    delete_batch = retention._delete
    changed = {}

    def meanwhile(session: Any, kind: retention.Kind, ids: list[int]) -> int:
        if kind.name == "deliveries" and ids:
            changed["replayed"] = ids[0]
            session.execute(update(Delivery).where(Delivery.id == ids[0]).values(state="pending", updated_at=utcnow()))
        if kind.name == "events" and ids:
            changed["event"] = ids[0]
            session.execute(insert(Delivery).values(uuid=str(uuid.uuid4()), event_id=ids[0], subscription_id=other))
        return delete_batch(session, kind, ids)

    monkeypatch.setattr(retention, "_delete", meanwhile)
    with aged.app_context():
        report = retention.prune(get_state(), timedelta(days=30))
        assert db.session.get(Delivery, changed["replayed"]) is not None
        assert db.session.get(Event, changed["event"]) is not None
    assert (report.attempts, report.deliveries, report.events) == (4, 3, 2)
    assert counts(aged) == (2, 4, 4)  # the two recent orders, the one replayed, and the new delivery
