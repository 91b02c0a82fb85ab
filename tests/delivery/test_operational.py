"""Operational events: a subscriber hears, as webhooks, of its own subscriptions being disabled, its
deliveries dying and its endpoints failing and recovering; never of another owner's, and never in
a loop."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from flask_async_events import AsyncEvents
from flask_async_events.errors import ConfigError
from flask_async_events.models import Event
from tests.appfactory import db
from tests.conftest import AppEnv, Receiver, drain, run_burst
from tests.helpers import PREFIX, create, deliveries, place_order, states, subscribe, token

OPERATIONAL = [
    "async_events.delivery.dead",
    "async_events.endpoint.failing",
    "async_events.endpoint.recovered",
    "async_events.subscription.disabled",
]


def bodies(receiver: Receiver, path: str) -> list[dict[str, Any]]:
    """What an operational endpoint received: each request's event name and data."""
    return [
        {"event": request.headers["X-Async-Events-Event"], **json.loads(request.body)["data"]}
        for request in receiver.at(path)
    ]


def published(app: Flask, name: str) -> int:
    with app.app_context():
        return len(db.session.scalars(select(Event).where(Event.event_name == name)).all())


def test_a_410_tells_the_owners_operational_subscription_and_nobody_elses(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[])
    client = app.test_client()
    shop_a, shop_b = token(app, "shop-a", "sales"), token(app, "shop-b", "sales")
    admin = token(app, "on-call", admin=True)
    gone = create(client, shop_a, recipient_url=receiver.respond("/a-gone", [410])).get_json()["subscription_id"]
    for auth, path, name in [
        (shop_a, "/a-ops", "async_events.*"),
        (shop_b, "/b-ops", "async_events.subscription.disabled"),
        (admin, "/admin-ops", "async_events.subscription.disabled"),
    ]:
        answer = create(client, auth, event_name=name, recipient_url=receiver.respond(path))
        assert answer.status_code == 200, answer.get_json()
    # Made in code (no owner): sees every owner's, here through a filter that matches, and one that does not.
    subscribe(app, receiver.respond("/code-ops"), event_name="async_events.*", filter="data.reason:*410*")
    subscribe(app, receiver.respond("/code-other"), event_name="async_events.*", filter="data.subscription_id:999")
    subscribe(app, receiver.respond("/everything"), event_name="*")  # a plain wildcard: not operational events
    place_order(app)
    run_burst(app)
    run_burst(app)  # the operational event's own fan-out and delivery
    expected = {
        "event": "async_events.subscription.disabled",
        "subscription_id": gone,
        "reason": "The recipient answered 410 Gone",
        "last_error": "410: ok",
    }
    a_ops = {body["event"]: body for body in bodies(receiver, "/a-ops")}
    assert sorted(a_ops) == ["async_events.delivery.dead", "async_events.subscription.disabled"]
    assert a_ops["async_events.subscription.disabled"] == expected  # no owner in the payload
    assert bodies(receiver, "/admin-ops") == [expected] and bodies(receiver, "/code-ops") == [expected]
    assert receiver.at("/b-ops") == [] and receiver.at("/code-other") == []
    assert [r.headers["X-Async-Events-Event"] for r in receiver.at("/everything")] == ["sales.order.created"]


def test_a_dead_delivery_is_reported_and_a_failing_operational_endpoint_makes_no_loop(
    env: AppEnv, receiver: Receiver
) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[], ASYNC_EVENTS_DISABLE_AFTER=0)
    failing = subscribe(app, receiver.respond("/down", [500], body="upstream exploded"))
    subscribe(app, receiver.respond("/ops-ok"), event_name="async_events.delivery.dead")
    subscribe(app, receiver.respond("/ops-down", [500]), event_name="async_events.*")
    place_order(app)
    for _ in range(3):
        run_burst(app)
    [dead] = bodies(receiver, "/ops-ok")
    main = next(d for d in deliveries(app) if d.subscription_id == failing)
    assert dead == {
        "event": "async_events.delivery.dead",
        "subscription_id": failing,
        "delivery_uuid": main.uuid,
        "event_name": "sales.order.created",
        "attempts": 1,
        "status_code": 500,
        "error": "500: upstream exploded",
        "reason": dead["reason"],
    }
    # The failing operational endpoint got its one try; its dead delivery was reported to nobody.
    assert len(receiver.at("/ops-down")) == 1
    assert published(app, "async_events.delivery.dead") == 1
    assert sorted(d.state for d in deliveries(app)) == ["dead", "dead", "delivered"]


def test_an_endpoint_failing_and_recovering_is_reported_once_each(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(
        ASYNC_EVENTS_CIRCUIT_FAILURES=3, ASYNC_EVENTS_CIRCUIT_MAX_COOLDOWN=1, ASYNC_EVENTS_RETRY_SCHEDULE=[0] * 8
    )
    # Opens after three failures; its first probe fails too (it reopens: no second event); the next succeeds.
    flaky = subscribe(app, receiver.respond("/flaky", [503, 503, 503, 503, 200]))
    # Another endpoint (a host name of its own) for the operational events.
    ops = receiver.respond("/ops").replace("127.0.0.1", "localhost")
    subscribe(app, ops, event_name="async_events.endpoint.*")
    place_order(app)
    drain(app, lambda: len(receiver.at("/ops")) >= 2 and states(app).count("delivered") == 3, timeout=60)
    assert len(receiver.at("/flaky")) == 5
    endpoint = receiver.url("/").removesuffix("/")
    assert bodies(receiver, "/ops") == [
        {"event": "async_events.endpoint.failing", "endpoint": endpoint, "subscription_ids": [flaky]},
        {"event": "async_events.endpoint.recovered", "endpoint": endpoint, "subscription_ids": [flaky]},
    ]


def test_operational_events_are_in_the_catalogue_and_their_names_are_reserved(env: AppEnv) -> None:
    app = env.app()
    listed = app.test_client().get(f"{PREFIX}/async_events/definitions", headers=token(app, "ops", admin=True))
    names = [definition["name"] for definition in listed.get_json()]
    assert [name for name in names if name.startswith("async_events.")] == OPERATIONAL
    own = AsyncEvents()
    own.event("async_events.mine")(lambda id: {"id": id})
    host = Flask("host")
    host.config.update(SECRET_KEY="x", SQLALCHEMY_DATABASE_URI="sqlite://")
    with pytest.raises(ConfigError, match=re.escape("'async_events.mine': names starting with 'async_events.' are")):
        own.init_app(host)


def test_without_an_operational_subscriber_nothing_is_published(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[])
    subscribe(app, receiver.respond("/gone", [410]))
    subscribe(app, receiver.respond("/everything"), event_name="*")  # does not receive them
    place_order(app)
    run_burst(app)
    assert sorted(d.state for d in deliveries(app)) == ["dead", "delivered"]
    assert published(app, "async_events.delivery.dead") == published(app, "async_events.subscription.disabled") == 0
