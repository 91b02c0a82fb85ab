"""Recording a batch of results: each delivery gets its own verdict, only its claim's holder may
write it, and times are stored in UTC whatever the database session's time zone."""

from __future__ import annotations

import uuid
from datetime import timedelta

from flask import Flask
from sqlalchemy import select, text, update

from flask_async_events.delivery.claims import claim
from flask_async_events.delivery.recording import record
from flask_async_events.delivery.types import Outcome, Released
from flask_async_events.models import Delivery, DeliveryState, Event, utcnow
from flask_async_events.notifiers.base import NotifyResult
from flask_async_events.state import get_state
from tests.appfactory import db
from tests.helpers import attempts, deliveries, place_order, subscribe

ANSWERED = NotifyResult(True, status_code=200, response_data="ok")
REFUSED = NotifyResult(False, status_code=500, response_data="no", retryable=True)


def _claimed(app: Flask, count: int, token: str) -> list[int]:
    """``count`` due deliveries of one order, claimed with ``token``; their ids."""
    subscription_ids = [subscribe(app, f"http://127.0.0.1:9/{index}") for index in range(count)]
    place_order(app)
    with app.app_context():
        event_id = db.session.scalar(select(Event.id))
        for subscription_id in subscription_ids:
            db.session.add(
                Delivery(uuid=str(uuid.uuid4()), event_id=event_id, subscription_id=subscription_id, attempt_count=2)
            )
        db.session.commit()
        ids = list(db.session.scalars(select(Delivery.id).order_by(Delivery.id)))
        db.session.remove()
    return ids


def test_a_batch_gives_each_delivery_its_own_verdict_in_utc(app: Flask) -> None:
    ids = _claimed(app, 3, "worker.a")
    with app.app_context():
        state = get_state()
        if db.engine.dialect.name == "postgresql":  # a session far from UTC: stored times stay UTC
            db.session.execute(text("SET TIME ZONE 'America/New_York'"))
        items = {item.id: item for item in claim(state, ids, "worker.a", skip=set())}
        before = utcnow()
        record(
            state, [Outcome(items[ids[2]], REFUSED, 40), Outcome(items[ids[0]], ANSWERED, 12), Released(items[ids[1]])]
        )
        db.session.remove()
    first, second, third = deliveries(app)
    assert (first.state, first.attempt_count, first.claim_token) == (DeliveryState.DELIVERED, 3, None)
    assert first.lease_until is None
    assert (second.state, second.attempt_count, second.claim_token) == (DeliveryState.PENDING, 2, None)
    assert abs(second.next_attempt_at - before) < timedelta(seconds=5)  # handed back, due now
    assert (third.state, third.attempt_count, third.round_attempts) == (DeliveryState.RETRYING, 3, 1)
    assert before < third.next_attempt_at < before + timedelta(hours=1)  # the schedule's first wait, in UTC
    assert abs(third.updated_at - before) < timedelta(seconds=5)
    assert sorted((a.success, a.duration_ms) for a in attempts(app)) == [(False, 40), (True, 12)]


def test_only_the_holder_of_a_claim_records_its_result(app: Flask) -> None:
    [delivery_id] = _claimed(app, 1, "worker.a")
    with app.app_context():
        state = get_state()
        [item] = claim(state, [delivery_id], "worker.a", skip=set())
        db.session.execute(update(Delivery).values(claim_token="worker.b"))  # taken over meanwhile
        db.session.commit()
        record(state, [Outcome(item, ANSWERED, 12)])
        db.session.remove()
    [delivery] = deliveries(app)
    assert (delivery.state, delivery.claim_token, delivery.attempt_count) == (DeliveryState.DELIVERING, "worker.b", 2)
