"""Fan-out: a trigger job finds each event's subscribers, resolves its payload once, writes the
deliveries and sends the first batch."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import event as sa_event
from sqlalchemy import make_url, select, text, update

from flask_async_events import NotifyResult
from flask_async_events.delivery.fanout import new_uuids, trigger
from flask_async_events.models import Delivery, DeliveryState, Event, utcnow
from flask_async_events.state import get_state
from tests.appfactory import SERVICE_CALLS, db, events
from tests.conftest import DB_BACKEND, AppEnv, Receiver, drain, run_burst
from tests.helpers import (
    all_final,
    attempts,
    body_json,
    deliveries,
    place_order,
    publish,
    states,
    subscribe,
)


class ExplodingNotifier:
    def notify(self, recipient: object, message: object) -> NotifyResult:
        raise ConnectionResetError("the plug-in fell over")


def test_running_trigger_twice_creates_no_duplicates(app: Flask, receiver: Receiver) -> None:
    subscribe(app, receiver.respond())
    subscribe(app, receiver.respond("/other"))
    place_order(app)
    with app.app_context():
        event_id = db.session.scalar(select(Event.id))
        assert event_id is not None
        assert trigger(get_state(), [event_id]) == 2
        assert trigger(get_state(), [event_id]) == 0
        # Even with the event marked untriggered again, the unique (event, subscription) holds.
        db.session.execute(update(Event).values(triggered_at=None))
        db.session.commit()
        trigger(get_state(), [event_id])
    assert len(deliveries(app)) == 2
    run_burst(app)
    assert len(receiver.requests) == 2


@pytest.mark.skipif(DB_BACKEND != "postgresql", reason="a session time zone and its drivers are PostgreSQL's")
@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_batches_store_their_times_in_utc_whatever_the_driver_and_session_time_zone(
    env: AppEnv, receiver: Receiver, driver: str
) -> None:
    """The batch statements pass their rows as arrays (in binary through psycopg), which know no
    column types: their times must still be stored as every other time is, in UTC."""
    url = make_url(env.database_uri)
    in_new_york = {**url.query, "options": "-ctimezone=America/New_York"}
    env.database_uri = url.set(drivername=f"postgresql+{driver}", query=in_new_york).render_as_string(False)
    app = env.app()
    subscribe(app, receiver.respond())
    subscribe(app, receiver.respond("/other"))
    before = utcnow()
    for _ in range(3):
        place_order(app)
    drain(app, lambda: all_final(app))
    with app.app_context():
        assert db.session.scalar(text("SHOW TIME ZONE")) == "America/New_York"
        triggered = list(db.session.scalars(select(Event.triggered_at)))
    rows = deliveries(app)
    logged = attempts(app)
    assert [delivery.state for delivery in rows] == [DeliveryState.DELIVERED] * 6
    assert len(logged) == len(receiver.requests) == 6
    moments = [*triggered, *(d.created_at for d in rows), *(d.updated_at for d in rows), *(a.created for a in logged)]
    assert [moment is not None and abs(moment - before) < timedelta(seconds=10) for moment in moments] == [True] * 21


def test_wildcards_case_and_exact_names(app: Flask, receiver: Receiver) -> None:
    everything = receiver.respond("/all")
    orders = receiver.respond("/orders")
    created = receiver.respond("/created")
    exact = receiver.respond("/exact")
    subscribe(app, everything, event_name="*")
    subscribe(app, orders, event_name="sales.order.*")
    subscribe(app, created, event_name="*.created")
    subscribe(app, exact, event_name="SALES.Order.Shipped")  # stored lower-case
    publish(app, "Sales.Order.Shipped", id=1)  # published names are case-insensitive too
    publish(app, "customer.created", id=2)
    run_burst(app)
    seen = {path: len(receiver.at(path)) for path in ("/all", "/orders", "/created", "/exact")}
    assert seen == {"/all": 2, "/orders": 1, "/created": 1, "/exact": 1}
    assert receiver.at("/exact")[0].headers["X-Async-Events-Event"] == "sales.order.shipped"


def test_store_scope_follows_the_magento_module(app: Flask, receiver: Receiver) -> None:
    unscoped = receiver.respond("/store0")
    store1 = receiver.respond("/store1")
    store2 = receiver.respond("/store2")
    subscribe(app, unscoped, event_name="customer.created", store_id=0)
    subscribe(app, store1, event_name="customer.created", store_id=1)
    subscribe(app, store2, event_name="customer.created", store_id=2)
    publish(app, "customer.created", id=1)  # store 0: everyone
    publish(app, "customer.created", id=2, store_id=1)  # store 1: only store 1
    run_burst(app)
    ids = {  # sent concurrently: compare without order
        path: sorted(body_json(r.body)["data"]["id"] for r in receiver.at(path))
        for path in ("/store0", "/store1", "/store2")
    }
    assert ids == {"/store0": [1], "/store1": [1, 2], "/store2": [1]}


def test_disabled_subscriptions_receive_nothing(app: Flask, receiver: Receiver) -> None:
    url = receiver.respond()
    subscription_id = subscribe(app, url)
    with app.app_context():
        from flask_async_events.delivery.subscription_status import disable_subscriptions

        disable_subscriptions(db.session, [subscription_id], "test")
        db.session.commit()
        assert not events.has_subscribers("sales.order.created")
    place_order(app)
    run_burst(app)
    assert receiver.requests == []
    assert deliveries(app) == []


def test_has_subscribers_is_wildcard_and_store_aware(app: Flask, receiver: Receiver) -> None:
    subscribe(app, receiver.url(), event_name="sales.*", store_id=2)
    with app.app_context():
        assert events.has_subscribers("sales.order.created")
        assert events.has_subscribers("SALES.ORDER.CREATED", store_id=2)
        assert not events.has_subscribers("sales.order.created", store_id=1)
        assert not events.has_subscribers("customer.created")


def test_one_bad_subscriber_never_stops_the_others(env: AppEnv, receiver: Receiver) -> None:
    events.register_notifier("exploding", ExplodingNotifier())
    try:
        app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[])
        good = receiver.respond("/good")
        subscribe(app, "http://127.0.0.1:9/refused")  # nothing listens on port 9
        subscribe(app, "anything", metadata="exploding")
        subscribe(app, receiver.respond("/broken", [500]))
        subscribe(app, good)
        place_order(app)
        run_burst(app)
    finally:
        events._notifiers.pop("exploding")
    assert len(receiver.at("/good")) == 1
    logged = {a.subscription_id: a for a in attempts(app)}
    assert len(logged) == 4
    assert logged[1].error_class == "ConnectionError" and not logged[1].success
    assert logged[2].error_class == "ConnectionResetError"
    assert "the plug-in fell over" in logged[2].response_data
    assert logged[3].status_code == 500
    assert logged[4].success
    assert states(app) == ["dead", "dead", "dead", "delivered"]


def test_delivery_uuids_made_from_one_read_are_distinct_version_4_uuids() -> None:
    made = list(new_uuids(1000))
    assert len(set(made)) == 1000
    assert all(uuid.UUID(value).version == 4 and str(uuid.UUID(value)) == value for value in made)
    assert list(new_uuids(0)) == []


def test_the_trigger_job_inserts_its_first_batch_claimed_and_sends_it_without_a_claim(
    env: AppEnv, receiver: Receiver
) -> None:
    app = env.app(ASYNC_EVENTS_BATCH_SIZE=10)
    for index in range(12):
        subscribe(app, receiver.respond(f"/hook{index}"), event_name="customer.created")
    publish(app, "customer.created", id=1)
    statements: list[str] = []
    job_thread = threading.get_ident()

    def note(conn: object, cursor: object, statement: str, *args: object) -> None:
        if threading.get_ident() == job_thread:  # the job's own, not the recording thread's
            statements.append(" ".join(statement.split())[:40])

    with app.app_context():
        from flask_async_events.jobs import trigger as trigger_job

        engine = get_state().db.engine
        sa_event.listen(engine, "before_cursor_execute", note)
        try:
            trigger_job([1])
        finally:
            sa_event.remove(engine, "before_cursor_execute", note)
        states = [delivery.state for delivery in get_state().db.session.scalars(select(Delivery))]
        assert get_state().queues.delivery.count == 1  # the 2 past the first batch
    assert states.count(DeliveryState.PENDING) == 2  # the 10 were inserted claimed, not claimed after
    assert not [statement for statement in statements if statement.startswith("UPDATE async_event_delivery")]
    drain(app, lambda: all_final(app))
    assert len(receiver.requests) == 12


def test_a_trigger_job_whose_senders_are_full_claims_nothing_and_leaves_the_batch_to_deliver_jobs(
    env: AppEnv, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = env.app(ASYNC_EVENTS_BATCH_SIZE=10)
    for index in range(12):
        subscribe(app, receiver.respond(f"/full{index}"), event_name="customer.created")
    publish(app, "customer.created", id=1)
    with app.app_context():
        from flask_async_events.delivery.dispatcher import dispatcher_of
        from flask_async_events.jobs import trigger as trigger_job

        monkeypatch.setattr(dispatcher_of(get_state()).sender, "startable", lambda: 0)  # every thread busy
        trigger_job([1])
        monkeypatch.undo()
        rows = list(get_state().db.session.scalars(select(Delivery)))
        assert [(d.state, d.claim_token) for d in rows] == [(DeliveryState.PENDING, None)] * 12
        assert get_state().queues.delivery.count == 2  # jobs of 10 and 2, for any worker with room
    assert receiver.requests == []
    drain(app, lambda: all_final(app))
    assert len(receiver.requests) == 12


def test_payload_is_resolved_once_per_event(app: Flask, receiver: Receiver) -> None:
    SERVICE_CALLS.clear()
    for index in range(3):
        subscribe(app, receiver.respond(f"/h{index}"), event_name="counted.event")
    publish(app, "counted.event", id=5)
    run_burst(app)
    assert SERVICE_CALLS == [5]
    assert len(receiver.requests) == 3
    assert len({r.body for r in receiver.requests}) == 1


def test_payload_json_serialises_common_types(app: Flask, receiver: Receiver) -> None:
    subscribe(app, receiver.respond(), event_name="typed.event")
    publish(app, "typed.event", id=1)
    run_burst(app)
    assert json.loads(receiver.requests[0].body) == {"data": {"when": "2026-01-02", "amount": "1.10", "tags": ["a"]}}
