"""The charts: their data from the hourly statistics agrees with the attempt log, percentiles from
the histogram, and the SVG the admin pages draw says the same numbers."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_async_events.auth import create_token
from flask_async_events.delivery.attempt_stats import hour_of
from flask_async_events.models import utcnow
from flask_async_events.operations.charts import HourPoint, attempt_series, quantile
from flask_async_events.operations.retention import prune
from flask_async_events.operations.svg import attempts_chart, latency_chart
from flask_async_events.state import get_state
from tests.appfactory import db
from tests.conftest import AppEnv, Receiver, run_burst
from tests.helpers import attempts, log_in, place_order, subscribe

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(
    ("buckets", "q", "expected"),
    [
        ([0] * 13, 0.5, None),
        ([10] + [0] * 12, 0.5, 2.5),  # all within 5 ms: half-way through the first bucket
        ([0, 4] + [0] * 11, 0.5, 7.5),  # all within 5-10 ms
        ([5, 5] + [0] * 11, 0.5, 5.0),  # the median at the first bucket's bound
        ([5, 5] + [0] * 11, 0.95, 9.5),
        ([0] * 12 + [3], 0.95, 30_000.0),  # beyond the last bound: the bound
    ],
)
def test_a_quantile_is_interpolated_inside_its_bucket(buckets: list[int], q: float, expected: float | None) -> None:
    assert quantile(buckets, q) == expected


def test_the_series_of_a_day_counts_what_the_log_holds_and_a_prune_leaves_it(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[], ASYNC_EVENTS_CIRCUIT_FAILURES=0)
    subscribe(app, receiver.respond("/ok"))
    failing = subscribe(app, receiver.respond("/failing", [500]))
    for _ in range(5):
        place_order(app)
    run_burst(app)
    logged = attempts(app)
    state = get_state(app)
    with app.app_context():
        day = attempt_series(state, "24h")
        week = attempt_series(state, "7d")
        only_failing = attempt_series(state, "24h", [failing])
        nobody = attempt_series(state, "24h", [])
    assert len(day) == 24 and len(week) == 168
    assert [point.hour for point in day] == [hour_of(utcnow()) - timedelta(hours=23 - n) for n in range(24)]
    assert (
        (sum(p.succeeded for p in day), sum(p.failed for p in day))
        == (5, 5)
        == (
            sum(a.success for a in logged),
            sum(not a.success for a in logged),
        )
    )
    assert sum(p.attempts for p in week) == len(logged)
    assert (sum(p.succeeded for p in only_failing), sum(p.failed for p in only_failing)) == (0, 5)
    assert sum(p.attempts for p in nobody) == 0
    slowest = max(a.duration_ms or 0 for a in logged)
    assert day[-1].p95_ms is not None and 0 < day[-1].p95_ms <= max(slowest, 5) * 2.5  # within its bucket
    with app.app_context():
        prune(state, timedelta(seconds=0))  # the whole log goes
        assert attempts(app) == []
        assert attempt_series(state, "24h") == day  # the charts keep the last 8 days


def test_a_window_that_is_not_drawn_is_refused() -> None:
    with pytest.raises(ValueError, match="window must be one of 24h, 7d"):
        attempt_series(None, "30d")  # type: ignore[arg-type]


def _points() -> list[HourPoint]:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    return [
        HourPoint(start + timedelta(hours=n), n, n % 3, None if n == 5 else 10.0 + n, None if n == 5 else 40.0 + n)
        for n in range(24)
    ]


def test_the_svg_is_well_formed_and_holds_the_numbers() -> None:
    points = _points()
    chart = ElementTree.fromstring(str(attempts_chart(points, "Subscription <7>")))
    hours = chart.findall(f"{SVG}g")
    assert [int(h.get("data-succeeded") or -1) for h in hours] == [p.succeeded for p in points]
    assert [int(h.get("data-failed") or -1) for h in hours] == [p.failed for p in points]
    assert chart.get("aria-label") == f"Subscription <7>: {sum(range(24))} succeeded and 24 failed attempts, per hour"
    assert hours[3].findtext(f"{SVG}title") == "2026-12-01 03:00 UTC: 3 succeeded, 0 failed"
    latency = ElementTree.fromstring(str(latency_chart(points, "All")))
    lines = latency.findall(f"{SVG}polyline")
    assert [line.get("class") for line in lines] == ["p50", "p50", "p95", "p95"]  # broken at the untimed hour
    assert [len((line.get("points") or "").split()) for line in lines] == [5, 18, 5, 18]


def login_client(app: Flask) -> FlaskClient:
    """A test client logged in to the admin pages."""
    with app.app_context():
        secret = create_token(db.session, "on-call", admin=True)
        db.session.commit()
    client = app.test_client()
    assert log_in(client, "/async-events/admin/login", secret).status_code == 302
    return client


def test_the_admin_pages_draw_the_charts_and_refuse_an_unknown_window(env: AppEnv, receiver: Receiver) -> None:
    app = env.app()
    subscription_id = subscribe(app, receiver.respond())
    place_order(app)
    run_burst(app)
    client = login_client(app)
    page = client.get("/async-events/admin/health").get_data(as_text=True)
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg"') == 2
    assert 'data-succeeded="1"' in page
    page = client.get("/async-events/admin/health?window=7d").get_data(as_text=True)
    assert page.count('class="hour"') == 168
    page = client.get("/async-events/admin/health?window=30d").get_data(as_text=True)
    assert "window must be one of 24h, 7d; showing the last 24 hours" in page and page.count('class="hour"') == 24
    page = client.get(f"/async-events/admin/subscriptions/{subscription_id}").get_data(as_text=True)
    assert f"Subscription {subscription_id}: 1 succeeded and 0 failed attempts" in page
