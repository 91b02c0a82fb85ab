"""Nothing is lost when Redis or a worker dies: the database is the source of truth."""

from __future__ import annotations

from collections.abc import Callable

from flask_async_events.models import DeliveryState
from flask_async_events.state import get_state
from tests.conftest import AppEnv, Receiver, WorkerProcess, drain, run_burst, wait_for
from tests.helpers import attempts, deliveries, place_order, states, subscribe


def test_an_event_published_while_redis_is_down_is_delivered_when_it_is_back(env: AppEnv, receiver: Receiver) -> None:
    app = env.app()
    subscribe(app, receiver.respond())
    env.redis.stop()
    try:
        event_id = place_order(app)  # commits; the enqueue fails quietly
    finally:
        env.redis.start()  # back, and empty
    with app.app_context():
        assert get_state().queues.trigger.count == 0
    drain(app, lambda: states(app) == ["delivered"])  # the worker's maintenance relays the event
    [request] = receiver.requests
    assert request.headers["Webhook-Id"] == deliveries(app)[0].uuid
    assert event_id


def test_scheduled_retries_survive_redis_restarting_empty(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[1])
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
    assert states(app) == [DeliveryState.DELIVERING]

    worker_process()
    wait_for(lambda: states(app) == [DeliveryState.DELIVERED], timeout=settings.claim_lease + 20)
    requests = receiver.at("/slow")
    assert len(requests) == 2
    assert requests[0].headers["Webhook-Id"] == requests[1].headers["Webhook-Id"]  # the receiver can dedupe
    assert [a.success for a in attempts(app)] == [True]
