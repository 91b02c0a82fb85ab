"""Delivery: a claimed batch is signed, formatted and sent through its notifier; its signals follow."""

from __future__ import annotations

import base64

import pytest
from flask import Flask
from sqlalchemy import select
from standardwebhooks import Webhook

from flask_async_events import signals
from flask_async_events.models import Delivery, DeliveryState
from flask_async_events.signing import legacy_signature, signing_key
from flask_async_events.state import get_state
from tests.appfactory import db
from tests.conftest import AppEnv, Receiver, drain, run_burst
from tests.helpers import (
    MAGENTO_TOKEN,
    all_final,
    attempts,
    body_json,
    deliveries,
    place_order,
    publish,
    states,
    subscribe,
)


@pytest.mark.parametrize("token", [MAGENTO_TOKEN, "whsec_" + base64.b64encode(b"0123456789abcdef0123").decode()])
def test_receiver_verifies_both_signatures(app: Flask, receiver: Receiver, token: str) -> None:
    url = receiver.respond("/orders")
    subscribe(app, url, token=token)
    place_order(app, email="roni_cost@example.com")
    run_burst(app)

    [request] = receiver.at("/orders")
    # Standard Webhooks, verified by the reference library with the same key rule.
    verifier = Webhook(token) if token.startswith("whsec_") else Webhook(token.encode())
    payload = verifier.verify(request.body, request.headers)
    assert payload["data"]["customer_email"] == "roni_cost@example.com"
    # The Magento module's header: lower-case hex HMAC-SHA256 of the exact body.
    assert request.headers["X-Magento-Signature"] == legacy_signature(signing_key(token), request.body)
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Async-Events-Event"] == "sales.order.created"
    assert request.headers["User-Agent"].startswith("flask-async-events/")
    [delivery] = deliveries(app)
    assert delivery.state == "delivered"
    assert request.headers["Webhook-Id"] == delivery.uuid
    [attempt] = attempts(app)
    assert attempt.success and attempt.status_code == 200 and attempt.attempt == 1
    assert attempt.serialized_data == request.body.decode()
    assert attempt.duration_ms is not None


def test_body_is_the_magento_data_envelope(app: Flask, receiver: Receiver) -> None:
    subscribe(app, receiver.respond())
    place_order(app, email="a@example.com", total="99.90")
    run_burst(app)
    [request] = receiver.requests
    body = body_json(request.body)
    assert set(body) == {"data"}
    assert body["data"] == {"id": 1, "customer_email": "a@example.com", "total": "99.90"}


def test_cloudevents_format(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_PAYLOAD_FORMAT="cloudevents")
    subscribe(app, receiver.respond(), store_id=3)
    event_id = place_order(app, store_id=3)
    run_burst(app)
    [request] = receiver.requests
    body = body_json(request.body)
    assert body["specversion"] == "1.0"
    assert body["id"] == event_id
    assert body["type"] == "sales.order.created"
    assert body["source"] == "3"
    assert body["datacontenttype"] == "application/json"
    assert body["time"].endswith("Z")
    assert body["data"]["id"] == 1
    assert request.headers["Content-Type"] == "application/cloudevents+json"


def test_unknown_notifier_is_logged_and_retried(app: Flask, receiver: Receiver) -> None:
    subscription_id = subscribe(app, receiver.respond())
    with app.app_context():
        from flask_async_events.models import Subscription

        subscription = db.session.get(Subscription, subscription_id)
        assert subscription is not None
        subscription.notifier = "not-installed"
        db.session.commit()
    place_order(app)
    run_burst(app)
    [attempt] = attempts(app)
    assert attempt.error_class == "UnknownNotifier"
    assert "not-installed" in attempt.response_data
    assert states(app) == ["retrying"]


def test_signals_are_sent(app: Flask, receiver: Receiver) -> None:
    seen: list[tuple[str, dict[str, object]]] = []

    def record(name: str):
        def receiver_(sender: Flask, **kwargs: object) -> None:
            assert sender is app
            seen.append((name, kwargs))

        return receiver_

    handlers = {
        "published": record("published"),
        "succeeded": record("succeeded"),
    }
    with (
        signals.event_published.connected_to(handlers["published"]),
        signals.delivery_succeeded.connected_to(handlers["succeeded"]),
    ):
        subscribe(app, receiver.respond())
        event_id = place_order(app)
        run_burst(app)
    assert seen[0] == ("published", {"event_id": event_id, "event_name": "sales.order.created", "store_id": 0})
    assert seen[1][0] == "succeeded" and seen[1][1]["status_code"] == 200


def test_deliveries_are_sent_in_batches(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_BATCH_SIZE=10)
    for index in range(25):
        subscribe(app, receiver.respond(f"/hook{index}"), event_name="customer.created")
    publish(app, "customer.created", id=1)
    with app.app_context():
        from flask_async_events.jobs import trigger as trigger_job

        trigger_job([1])
        # The first batch of 10 went straight to this worker's senders; 15 wait in jobs of 10.
        assert get_state().queues.delivery.count == 2
        states = [delivery.state for delivery in get_state().db.session.scalars(select(Delivery))]
        assert states.count(DeliveryState.PENDING) == 15
    drain(app, lambda: all_final(app))
    assert len(receiver.requests) == 25
    assert len({r.headers["Webhook-Id"] for r in receiver.requests}) == 25
