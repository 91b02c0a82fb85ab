"""Tenant isolation through the portal, as a customer would try it: no target that uses the host's
AWS credentials, no recovery of what was published before the subscription, a bounded number of
subscriptions and test pings, and out-of-range form values answered, never a 500."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from flask_async_events.models import Subscription
from tests.appfactory import db, events
from tests.conftest import AppEnv, Receiver, run_burst
from tests.helpers import form_csrf, next_second, place_order, subscribe

PORTAL = "/async-events/portal"


def _customer(app: Flask, owner: str = "customer:3") -> FlaskClient:
    with app.test_request_context():
        link = events.portal_link(owner=owner, resources=["sales"], expires_in=3600)
    client = app.test_client()
    assert client.get(link).status_code == 302
    return client


def _new(client: FlaskClient, **fields: Any) -> Any:
    csrf = form_csrf(client.get(f"{PORTAL}/subscriptions/new").data)
    form = {"csrf_token": csrf, "event_name": "sales.order.created", **fields}
    return client.post(f"{PORTAL}/subscriptions/new", data=form)


def _owned(app: Flask, owner: str = "customer:3") -> list[int]:
    with app.app_context():
        return list(db.session.scalars(select(Subscription.subscription_id).where(Subscription.owner == owner)))


def test_a_customer_cannot_send_to_the_hosts_queue_or_bus(app: Flask) -> None:
    client = _customer(app)
    for notifier, target in [
        ("sqs", "arn:aws:sqs:eu-west-1:123456789012:host-internal-jobs"),
        ("eventbridge", "default"),
    ]:
        refused = _new(client, metadata=notifier, recipient_url=target)
        assert refused.status_code == 403
        assert b"ASYNC_EVENTS_OWNER_TARGETS" in refused.data
    assert _owned(app) == []


def test_a_customer_recovers_nothing_from_before_its_subscription(app: Flask, receiver: Receiver) -> None:
    subscribe(app, receiver.respond("/host"))
    place_order(app, email="someone-else@example.com")
    run_burst(app)
    client = _customer(app)
    assert _new(client, recipient_url=receiver.respond("/mine")).status_code == 200
    [mine] = _owned(app)
    page = f"{PORTAL}/subscriptions/{mine}"
    csrf = form_csrf(client.get(page).data)
    started = client.post(f"{page}/recover", data={"csrf_token": csrf, "since": "2000-01-01", "missed": "1"})
    assert started.status_code == 302 and f"{PORTAL}/jobs/" in started.headers["Location"]
    run_burst(app)
    job = client.get(started.headers["Location"])
    assert b"finished" in job.data and b"0 of 0 examined" in job.data
    assert receiver.at("/mine") == []


def test_a_customer_recovers_what_it_missed_after_it_subscribed(app: Flask, receiver: Receiver) -> None:
    client = _customer(app)
    _new(client, recipient_url=receiver.respond("/mine"))
    [mine] = _owned(app)
    next_second()  # MySQL keeps whole seconds
    page = f"{PORTAL}/subscriptions/{mine}"
    csrf = form_csrf(client.get(page).data)
    client.post(f"{page}/status", data={"csrf_token": csrf, "status": "disable"})
    place_order(app, email="while-away@example.com")
    run_burst(app)
    client.post(f"{page}/status", data={"csrf_token": csrf, "status": "enable"})
    started = client.post(f"{page}/recover", data={"csrf_token": csrf, "since": "2000-01-01", "missed": "1"})
    run_burst(app)
    assert b"1 deliveries replayed or made" in client.get(started.headers["Location"]).data
    assert len(receiver.at("/mine")) == 1
    other = _customer(app, "customer:4")
    assert other.get(started.headers["Location"]).status_code == 404  # another customer's job


def test_a_customer_has_at_most_so_many_subscriptions(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_MAX_SUBSCRIPTIONS_PER_OWNER=1)
    client = _customer(app)
    assert _new(client, recipient_url=receiver.url()).status_code == 200
    refused = _new(client, recipient_url=receiver.url())
    assert refused.status_code == 403 and b"ASYNC_EVENTS_MAX_SUBSCRIPTIONS_PER_OWNER = 1" in refused.data
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Subscription)) == 1


def test_a_customers_pings_are_rate_limited(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_TEST_SENDS_PER_MINUTE=1)
    client = _customer(app)
    _new(client, recipient_url=receiver.respond("/ping"))
    [mine] = _owned(app)
    page = f"{PORTAL}/subscriptions/{mine}"
    csrf = form_csrf(client.get(page).data)
    assert b'id="ping-answer"' in client.post(f"{page}/ping", data={"csrf_token": csrf}).data
    refused = client.post(f"{page}/ping", data={"csrf_token": csrf}, follow_redirects=True)
    assert b"ASYNC_EVENTS_TEST_SENDS_PER_MINUTE" in refused.data
    assert len(receiver.at("/ping")) == 1


def test_out_of_range_form_values_are_said_not_500s(app: Flask, receiver: Receiver) -> None:
    client = _customer(app)
    _new(client, recipient_url=receiver.url())
    [mine] = _owned(app)
    page = f"{PORTAL}/subscriptions/{mine}"
    csrf = form_csrf(client.get(page).data)
    rotated = client.post(f"{page}/rotate", data={"csrf_token": csrf, "grace": "999999999999d"}, follow_redirects=True)
    assert rotated.status_code == 200 and b"grace must be at most 7 days, got 999999999999d" in rotated.data
    recovered = client.post(f"{page}/recover", data={"csrf_token": csrf, "since": "9999-12-31"}, follow_redirects=True)
    assert recovered.status_code == 200 and b"since must be a time from 1970-01-01 to 9999-12-30" in recovered.data
    logs = client.get(f"{PORTAL}/logs", query_string={"q": "status:99999999999999999999"})
    assert logs.status_code == 400 and b"status must be a whole number" in logs.data
