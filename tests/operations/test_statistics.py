"""The attempt statistics: counted as attempts are logged, they agree with the log after two workers,
stay put when the log is pruned, and the migration counts a log that already holds rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import select, update

from flask_async_events import migrate
from flask_async_events.delivery.attempt_stats import bucket_of, hour_of, tally
from flask_async_events.models import (
    STAT_COUNTERS,
    AttemptHourly,
    AttemptTotals,
    DeliveryAttempt,
    Subscription,
    utcnow,
)
from flask_async_events.operations.retention import prune
from flask_async_events.state import get_state
from tests.appfactory import db
from tests.conftest import AppEnv, Receiver, WorkerProcess, run_burst, wait_for
from tests.helpers import place_order, states, subscribe, token
from tests.test_metrics import scrape

Key = tuple[Any, ...]


@pytest.mark.parametrize(
    ("duration_ms", "bucket"),
    [
        (0, "bucket_00"),
        (5, "bucket_00"),
        (6, "bucket_01"),
        (10, "bucket_01"),
        (30_000, "bucket_11"),
        (30_001, "bucket_12"),
    ],
)
def test_a_duration_counts_in_the_first_bucket_it_does_not_exceed(duration_ms: int, bucket: str) -> None:
    assert bucket_of(duration_ms) == bucket


def _log_rows(connection: Any) -> list[dict[str, Any]]:
    log = DeliveryAttempt.__table__.c
    rows = connection.execute(select(log.subscription_id, log.success, log.duration_ms, log.created)).mappings()
    return [dict(row) for row in rows]


def _stored(connection: Any, model: Any, keys: tuple[str, ...]) -> dict[Key, dict[str, int]]:
    table = model.__table__
    result = {}
    for row in connection.execute(select(table)).mappings():
        key = tuple(_plain(row[name]) for name in keys)
        result[key] = {name: int(row[name]) for name in STAT_COUNTERS}
    return result


def _plain(value: Any) -> Any:
    return value.replace(tzinfo=None) if isinstance(value, datetime) else value


def _expected(rows: list[dict[str, Any]]) -> tuple[dict[Key, dict[str, int]], dict[Key, dict[str, int]]]:
    """What the statistics should hold for these log rows, counted in Python."""
    totals, hourly = tally(rows)
    by_total = {(row["subscription_id"], row["success"]): {n: row[n] for n in STAT_COUNTERS} for row in totals}
    by_hour = {
        (_plain(row["hour"]), row["subscription_id"], row["success"]): {n: row[n] for n in STAT_COUNTERS}
        for row in hourly
    }
    return by_total, by_hour


def _totals(connection: Any) -> dict[Key, dict[str, int]]:
    return _stored(connection, AttemptTotals, ("subscription_id", "success"))


def _hours(connection: Any) -> dict[Key, dict[str, int]]:
    return _stored(connection, AttemptHourly, ("hour", "subscription_id", "success"))


def test_the_statistics_agree_with_the_log_after_two_workers_and_survive_a_prune(
    env: AppEnv, receiver: Receiver, worker_process: Callable[..., WorkerProcess]
) -> None:
    # One receiver for all three: its circuit must not open on the failing path.
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[0.2, 0.2], ASYNC_EVENTS_RETRY_JITTER=0, ASYNC_EVENTS_CIRCUIT_FAILURES=0)
    subscribe(app, receiver.respond("/ok"))
    subscribe(app, receiver.respond("/flaky", [503, 200]))
    subscribe(app, receiver.respond("/failing", [500]))
    worker_process()
    worker_process()
    for _ in range(30):
        place_order(app)
    wait_for(lambda: sorted(states(app)) == ["dead"] * 30 + ["delivered"] * 60, 90)
    with app.app_context():
        connection = db.session.connection()
        logged = _log_rows(connection)
        totals, hourly = _expected(logged)
        assert _totals(connection) == totals
        assert _hours(connection) == hourly
        db.session.rollback()
    assert len(logged) == 30 + 31 + 90  # ok once each, flaky's first answer a 503, failing three times each
    headers = token(app, "prometheus", admin=True)
    before = scrape(app, headers)
    assert before['async_events_attempts_total{notifier="http",outcome="failure"}'] == 1 + 90

    # The log's first half, and its hours, ten days old: prune at 9 days takes those rows only.
    old = utcnow() - timedelta(days=10)
    with app.app_context():
        first_half = select(DeliveryAttempt.log_id).order_by(DeliveryAttempt.log_id).limit(90)
        ids = list(db.session.scalars(first_half))
        db.session.execute(update(DeliveryAttempt).where(DeliveryAttempt.log_id.in_(ids)).values(created=old))
        db.session.execute(
            sa.insert(AttemptHourly).values(hour=hour_of(old), subscription_id=1, success=True, attempts=7)
        )
        db.session.commit()
        report = prune(get_state(app), timedelta(days=9))
        assert report.attempts == 90
        connection = db.session.connection()
        assert _totals(connection) == totals  # kept
        assert _hours(connection) == hourly
        db.session.rollback()
    after = scrape(app, headers)
    for name in (
        'async_events_attempts_total{notifier="http",outcome="success"}',
        'async_events_attempts_total{notifier="http",outcome="failure"}',
        "async_events_attempt_duration_seconds_count",
        "async_events_attempt_duration_seconds_sum",
        'async_events_attempt_duration_seconds_bucket{le="0.1"}',
    ):
        assert after[name] == before[name], name


def test_cancelled_deliveries_are_counted_as_they_are_logged(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[60])
    subscription_id = subscribe(app, receiver.respond("/busy", [503]))
    for _ in range(3):
        place_order(app)
    run_burst(app)
    assert states(app) == ["retrying"] * 3
    auth = token(app, "ops", admin=True)
    response = app.test_client().put(
        f"/rest/V1/async_event/{subscription_id}", json={"asyncEvent": {"status": False}}, headers=auth
    )
    assert response.status_code == 200, response.get_json()
    assert states(app) == ["cancelled"] * 3
    with app.app_context():
        connection = db.session.connection()
        totals = _totals(connection)
        expected, _ = _expected(_log_rows(connection))
        db.session.rollback()
    assert totals == expected
    assert totals[subscription_id, False]["attempts"] == 6  # three 503s and three cancellations
    assert totals[subscription_id, False]["timed"] == 3


def test_the_upgrade_counts_what_the_log_already_holds(database_uri: str) -> None:
    engine = sa.create_engine(database_uri)
    now = datetime.now(UTC).replace(tzinfo=None)
    durations = [None, 0, 5, 6, 10, 99, 250, 1000, 2501, 30_000, 30_001, 7]
    try:
        migrate.downgrade(engine, "0005")
        with engine.begin() as connection:
            for subscription_id in (1, 2):
                connection.execute(
                    sa.insert(Subscription).values(
                        subscription_id=subscription_id,
                        event_name="sales.order.created",
                        recipient_url="https://hooks.example/",
                        verification_token="sealed",
                    )
                )
            rows = [
                {
                    "uuid": f"u{index}",
                    "subscription_id": 1 + index % 2,
                    "attempt": 1,
                    "success": index % 3 != 0,
                    "duration_ms": duration,
                    "response_data": "",
                    "created": now - timedelta(hours=index * 20),  # the last few are older than 8 days
                }
                for index, duration in enumerate(durations)
            ]
            connection.execute(sa.insert(DeliveryAttempt), rows)
        migrate.upgrade(engine)
        with engine.connect() as connection:
            totals, hourly = _expected(_log_rows(connection))  # as the workers would have counted them
            recent = {key: value for key, value in hourly.items() if key[0] >= hour_of(now - timedelta(days=8))}
            assert _totals(connection) == totals
            stored_hours = _hours(connection)
            assert stored_hours == recent and len(recent) < len(hourly)
    finally:
        with engine.begin() as connection:
            for table in ("async_event_attempt_hourly", "async_event_attempt_totals", "async_event_subscriber_log"):
                if sa.inspect(connection).has_table(table):
                    connection.execute(sa.text(f"DELETE FROM {table}"))
            connection.execute(sa.text("DELETE FROM async_event_subscriber"))
        migrate.upgrade(engine)
        engine.dispose()
