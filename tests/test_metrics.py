"""Metrics: Prometheus text that agrees with the database after two workers delivered."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from tests.conftest import AppEnv, Receiver, WorkerProcess, wait_for
from tests.helpers import attempts, place_order, states, subscribe, token

METRICS = "/async-events/metrics"


def scrape(app: Flask, headers: dict[str, str]) -> dict[str, float]:
    response = app.test_client().get(METRICS, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain; version=0.0.4")
    samples = {}
    for line in response.get_data(as_text=True).splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_metrics_agree_with_the_database_after_two_workers(
    env: AppEnv, receiver: Receiver, worker_process: Callable[..., WorkerProcess]
) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[])
    subscribe(app, receiver.respond("/ok"))
    subscribe(app, receiver.respond("/failing", [500]))
    worker_process()
    worker_process()
    for _ in range(10):
        place_order(app)
    wait_for(lambda: sorted(states(app)) == ["dead"] * 10 + ["delivered"] * 10, 60)
    headers = token(app, "prometheus", admin=True)
    wait_for(lambda: scrape(app, headers)["async_events_workers"] == 2, 30)  # the later one may still be starting
    samples = scrape(app, headers)
    logged = attempts(app)
    assert samples['async_events_attempts_total{notifier="http",outcome="success"}'] == 10
    assert samples['async_events_attempts_total{notifier="http",outcome="failure"}'] == 10
    assert samples['async_events_deliveries{state="dead"}'] == 10
    assert samples['async_events_deliveries{state="pending"}'] == 0
    assert 'async_events_deliveries{state="delivered"}' not in samples  # history: the success counter has them
    assert samples["async_events_dead_letters"] == 10
    assert samples["async_events_attempt_duration_seconds_count"] == len(logged) == 20
    assert samples['async_events_attempt_duration_seconds_bucket{le="+Inf"}'] == 20
    assert samples["async_events_attempt_duration_seconds_sum"] == sum(a.duration_ms or 0 for a in logged) / 1000
    assert samples["async_events_pending_events"] == 0
    assert samples["async_events_workers"] == 2
    assert samples['async_events_queue_jobs{queue="event.trigger",registry="queued"}'] == 0


def test_metrics_need_an_admin_token_and_can_be_turned_off(env: AppEnv) -> None:
    app = env.app()
    client = app.test_client()
    assert client.get(METRICS).status_code == 401
    assert client.get(METRICS, headers=token(app, "sales-app", "sales")).status_code == 403
    assert env.app(ASYNC_EVENTS_METRICS_URL="").test_client().get(METRICS).status_code == 404
