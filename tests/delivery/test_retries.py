"""Retries on the schedule, Retry-After, dead letters, 4xx and 410 handling, replay."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

import pytest
from flask import Flask
from rq.registry import FailedJobRegistry
from sqlalchemy import select, update

from flask_async_events import signals
from flask_async_events.delivery.circuits import circuits_of, endpoint_key
from flask_async_events.models import Subscription
from flask_async_events.operations.status import dead_letters
from flask_async_events.state import get_state
from tests.appfactory import db, events
from tests.conftest import AppEnv, Receiver, WorkerProcess, drain, run_burst, wait_for
from tests.helpers import attempts, deliveries, place_order, publish, states, subscribe

TOLERANCE = 1.6  # RQ's scheduler polls once a second


@pytest.mark.one_database
def test_503_four_times_then_200_follows_the_magento_schedule(
    env: AppEnv, receiver: Receiver, worker_process: Callable[..., WorkerProcess]
) -> None:
    app = env.app()  # the default schedule: 1, 4, 9, 16, 25 seconds
    subscribe(app, receiver.respond("/flaky", [503, 503, 503, 503, 200]))
    worker_process()
    place_order(app)
    wait_for(lambda: states(app) == ["delivered"], timeout=60)

    requests = receiver.at("/flaky")
    assert len(requests) == 5
    assert len({r.headers["Webhook-Id"] for r in requests}) == 1
    assert len({r.body for r in requests}) == 1  # byte for byte on every retry
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(requests)]
    for gap, expected in zip(gaps, [1, 4, 9, 16], strict=True):
        assert expected - 0.05 <= gap <= expected + TOLERANCE, (gaps, expected)
    logged = attempts(app)
    assert [a.attempt for a in logged] == [1, 2, 3, 4, 5]
    assert [a.status_code for a in logged] == [503, 503, 503, 503, 200]
    assert [a.success for a in logged] == [False, False, False, False, True]


def test_always_503_ends_dead_after_six_attempts(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[0, 0, 0, 0, 0])  # six attempts, no waiting
    subscribe(app, receiver.respond("/down", [503]))
    place_order(app)
    drain(app, lambda: states(app) == ["dead"])

    assert len(receiver.at("/down")) == 6
    [delivery] = deliveries(app)
    assert delivery.attempt_count == 6
    with app.app_context():
        [letter] = dead_letters(get_state())
        assert letter["uuid"] == delivery.uuid
        assert letter["attempts"] == 6
        registry = FailedJobRegistry(queue=get_state().queues.delivery)
        assert registry.get_job_ids(cleanup=False) == ["dead-" + delivery.uuid.replace("-", "")]


def test_a_400_is_not_retried(app: Flask, receiver: Receiver) -> None:
    subscribe(app, receiver.respond("/bad", [400], body="missing field"))
    place_order(app)
    run_burst(app)
    assert states(app) == ["dead"]
    [attempt] = attempts(app)
    assert attempt.status_code == 400 and attempt.response_data == "missing field"


def test_a_redirect_is_not_followed(app: Flask, receiver: Receiver) -> None:
    target = receiver.respond("/target")
    subscribe(app, receiver.respond("/moved", [302], headers={"Location": target}))
    place_order(app)
    run_burst(app)
    assert receiver.at("/target") == []
    assert states(app) == ["dead"]
    assert "not followed" in attempts(app)[0].response_data


def test_410_disables_the_subscription(app: Flask, receiver: Receiver) -> None:
    disabled: list[dict[str, object]] = []

    def on_disabled(sender: Flask, **kwargs: object) -> None:
        disabled.append(kwargs)

    subscription_id = subscribe(app, receiver.respond("/gone", [410]))
    with signals.subscription_disabled.connected_to(on_disabled):
        place_order(app)
        run_burst(app)
        place_order(app)  # a second event: the subscription is disabled now
        run_burst(app)
    assert len(receiver.at("/gone")) == 1
    assert states(app) == ["dead"]
    with app.app_context():
        subscription = db.session.get(Subscription, subscription_id)
        assert subscription is not None
        assert subscription.status is False
        assert "410" in (subscription.disabled_reason or "")
    assert disabled == [{"subscription_id": subscription_id, "reason": "The recipient answered 410 Gone"}]


def test_an_endpoint_failing_for_the_whole_window_is_disabled_and_enabling_forgets_it(
    env: AppEnv, receiver: Receiver
) -> None:
    # MariaDB keeps whole seconds: a window of 1.5 s cannot close at the first failure there.
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[2, 2, 2], ASYNC_EVENTS_DISABLE_AFTER=1.5)
    disabled: list[dict[str, object]] = []

    def on_disabled(sender: Flask, **kwargs: object) -> None:
        disabled.append(kwargs)

    failing = subscribe(app, receiver.respond("/down", [500]))
    healthy = subscribe(app, receiver.respond("/up"))
    with signals.subscription_disabled.connected_to(on_disabled):
        place_order(app)
        drain(app, lambda: sorted(states(app)) == ["cancelled", "delivered"])
    # The first failure starts the window; the retry 2 s later fails past it: disabled, and
    # the retry it would have had is cancelled, visibly.
    assert len(receiver.at("/down")) == 2 and len(receiver.at("/up")) == 1
    reason = "No successful delivery for 1.5 seconds"
    assert disabled == [{"subscription_id": failing, "reason": reason}]
    with app.app_context():
        down = db.session.get(Subscription, failing)
        up = db.session.get(Subscription, healthy)
        assert down is not None and up is not None
        assert down.status is False and down.disabled_reason == reason and down.consecutive_failures == 2
        assert up.status is True and up.failing_since is None
    result = app.test_cli_runner().invoke(args=["async-events", "enable", str(failing)])
    assert result.exit_code == 0, result.output
    with app.app_context():
        down = db.session.get(Subscription, failing)
        assert down is not None and down.status is True
        assert down.failing_since is None and down.consecutive_failures == 0 and down.disabled_reason is None


@pytest.mark.one_database
def test_retry_after_is_honoured(env: AppEnv, receiver: Receiver, worker_process: Callable[..., WorkerProcess]) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[1])
    subscribe(app, receiver.respond("/busy", [429, 200], headers={"Retry-After": "4"}))
    worker_process()
    place_order(app)
    wait_for(lambda: states(app) == ["delivered"], timeout=30)
    first, second = receiver.at("/busy")
    assert 4 - 0.05 <= second.at - first.at <= 4 + TOLERANCE


def test_retry_after_is_capped(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[0], ASYNC_EVENTS_RETRY_AFTER_MAX=0)
    subscribe(app, receiver.respond("/busy", [503, 200], headers={"Retry-After": "3600"}))
    place_order(app)
    drain(app, lambda: states(app) == ["delivered"], timeout=15)


def test_timeouts_are_retried(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_TIMEOUT=0.5, ASYNC_EVENTS_RETRY_SCHEDULE=[])
    subscribe(app, receiver.respond("/slow", [200], delay=1.5))
    place_order(app)
    run_burst(app)
    [attempt] = attempts(app)
    assert attempt.error_class == "Timeout"  # connected, but no answer within the whole attempt's limit
    assert states(app) == ["dead"]


def test_a_resolver_that_raises_is_logged_retried_and_visible(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[0, 0])
    subscribe(app, receiver.respond(), event_name="broken.event")
    publish(app, "broken.event", id=42)
    drain(app, lambda: states(app) == ["dead"])
    assert receiver.requests == []
    logged = attempts(app)
    assert len(logged) == 3
    assert all(a.error_class == "ResolveError" for a in logged)
    assert "RuntimeError: cannot load thing 42" in logged[0].response_data


def test_a_failing_query_in_one_service_does_not_stop_the_other_events(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[])
    subscribe(app, receiver.respond("/bad"), event_name="broken.query")
    subscribe(app, receiver.respond("/good"), event_name="customer.created")
    with app.app_context():
        events.publish("broken.query", id=1)
        events.publish("customer.created", id=2)
        db.session.commit()
    drain(app, lambda: sorted(states(app)) == ["dead", "delivered"])
    assert len(receiver.at("/good")) == 1 and receiver.at("/bad") == []
    failed = next(a for a in attempts(app) if not a.success)
    assert failed.error_class == "ResolveError" and "no_such_table" in failed.response_data


def test_replay_sends_the_same_uuid_and_body(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[])
    subscribe(app, receiver.respond("/once", [500, 200]))
    place_order(app)
    run_burst(app)
    [delivery] = deliveries(app)
    assert delivery.state == "dead"
    with app.app_context():
        events.replay(delivery.uuid)
        assert FailedJobRegistry(queue=get_state().queues.delivery).get_job_ids(cleanup=False) == []
    run_burst(app)
    first, second = receiver.at("/once")
    assert first.headers["Webhook-Id"] == second.headers["Webhook-Id"] == delivery.uuid
    assert first.body == second.body
    assert states(app) == ["delivered"]
    assert [a.attempt for a in attempts(app)] == [1, 2]


def test_requeueing_the_rq_failed_job_replays(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[])
    subscribe(app, receiver.respond("/once", [500, 200]))
    place_order(app)
    run_burst(app)
    with app.app_context():
        registry = FailedJobRegistry(queue=get_state().queues.delivery)
        [job_id] = registry.get_job_ids(cleanup=False)
        registry.requeue(job_id)
    drain(app, lambda: states(app) == ["delivered"])
    assert len(receiver.at("/once")) == 2


def test_disabling_cancels_pending_retries_in_the_log(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[300])
    subscription_id = subscribe(app, receiver.respond("/down", [503]))
    place_order(app)
    run_burst(app)
    assert states(app) == ["retrying"]
    runner = app.test_cli_runner()
    result = runner.invoke(args=["async-events", "disable", str(subscription_id)])
    assert result.exit_code == 0, result.output
    assert states(app) == ["cancelled"]
    last = attempts(app)[-1]
    assert last.error_class == "Cancelled" and last.response_data.startswith("Cancelled:")


def test_a_delivery_claimed_by_a_disabled_subscription_is_cancelled(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_BATCH_SIZE=1)  # the trigger sends one delivery itself, the other waits in a job
    subscribe(app, receiver.respond("/first"))
    waiting = subscribe(app, receiver.respond("/second"))
    place_order(app)
    with app.app_context():
        from flask_async_events.jobs import trigger

        trigger([1])
        db.session.execute(update(Subscription).where(Subscription.subscription_id == waiting).values(status=False))
        db.session.commit()
    run_burst(app)
    assert [request.path for request in receiver.requests] == ["/first"]
    assert sorted(states(app)) == ["cancelled", "delivered"]
    cancelled = [attempt for attempt in attempts(app) if attempt.subscription_id == waiting]
    assert [attempt.response_data for attempt in cancelled] == ["Cancelled: the subscription is disabled"]


def test_health_fields_track_failures_and_success(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[0])
    subscription_id = subscribe(app, receiver.respond("/h", [500, 500, 200]))
    place_order(app)
    run_burst(app)
    with app.app_context():
        subscription = db.session.scalar(select(Subscription))
        assert subscription is not None
        assert subscription.consecutive_failures == 2 and subscription.failing_since is not None
    place_order(app)
    run_burst(app)
    with app.app_context():
        subscription = db.session.get(Subscription, subscription_id)
        assert subscription is not None
        assert subscription.consecutive_failures == 0
        assert subscription.failing_since is None and subscription.last_success_at is not None


def test_a_payload_that_does_not_resolve_is_the_hosts_fault_never_the_endpoints(
    env: AppEnv, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """As a new user: ``publish sales.order.created --arg id=abc`` is taken, the service fails in the
    worker, and the healthy receiver's subscription must not show failures, a failing endpoint or a
    circuit that "closed" without ever opening: the host's code failed, not the endpoint."""
    caplog.set_level(logging.INFO, logger="flask_async_events")
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[0, 0], ASYNC_EVENTS_CIRCUIT_FAILURES=2)
    subscription_id = subscribe(app, receiver.respond("/healthy"))
    published = app.test_cli_runner().invoke(args=["async-events", "publish", "sales.order.created", "--arg", "id=abc"])
    assert published.exit_code == 0, published.output
    drain(app, lambda: states(app) == ["dead"])
    assert [attempt.error_class for attempt in attempts(app)] == ["ResolveError"] * 3
    with app.app_context():
        subscription = db.session.get(Subscription, subscription_id)
        assert subscription is not None
        assert subscription.consecutive_failures == 0 and subscription.failing_since is None
        assert circuits_of(get_state()).read([endpoint_key(receiver.url("/healthy")) or ""]) == {}
    place_order(app)  # the endpoint, never asked, answers the next one
    drain(app, lambda: sorted(states(app)) == ["dead", "delivered"])
    assert "Circuit" not in caplog.text and "waiting deliveries are due now" not in caplog.text
