"""``/async_event_logs``: delivery attempts, the trace of one delivery, and replay."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from flask.views import MethodView
from sqlalchemy import Select, select

from flask_async_events.api.blueprint import blp, count_rows, principal, state
from flask_async_events.api.errors import fail
from flask_async_events.api.schemas import AttemptList, AttemptQuery, ReplayOut, TraceOut
from flask_async_events.auth import Principal
from flask_async_events.models import Delivery, DeliveryAttempt, DeliveryState, Event, Subscription
from flask_async_events.replay import ReplayError, replay
from flask_async_events.search import QueryError, attempts_query

TRACE_NOT_FOUND = "This asynchronous event trace no longer exists: no delivery {uuid}"
STATE_WORDS = {
    DeliveryState.DELIVERED: "Delivered",
    DeliveryState.DEAD: "Dead Lettered",
    DeliveryState.RETRYING: "Retrying",
    DeliveryState.PENDING: "Pending",
    DeliveryState.DELIVERING: "Delivering",
    DeliveryState.CANCELLED: "Cancelled",
}


def _attempts(caller: Principal, text: str | None = None) -> Select[DeliveryAttempt, str]:
    """Attempt rows with their event name, limited to the caller's subscriptions (logs outlive a
    DELETE), filtered by the search ``text`` (a bad one is a 400 naming ``q``)."""
    try:
        query: Select[DeliveryAttempt, str] = attempts_query(text, state().db.session.get_bind().dialect.name)
    except QueryError as exc:
        fail(400, f"q: {exc}")
    if not caller.is_admin:
        query = query.where(Subscription.owner == caller.owner)
    return query


def _attempt_dict(attempt: DeliveryAttempt, event_name: str) -> dict[str, Any]:
    return {
        "log_id": attempt.log_id,
        "uuid": attempt.uuid,
        "subscription_id": attempt.subscription_id,
        "event_name": event_name,
        "attempt": attempt.attempt,
        "success": attempt.success,
        "status_code": attempt.status_code,
        "duration_ms": attempt.duration_ms,
        "error_class": attempt.error_class,
        "response_data": attempt.response_data,
        "created": attempt.created,
    }


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@blp.route("/async_event_logs")
class AttemptLog(MethodView):
    @blp.arguments(AttemptQuery, location="query")
    @blp.response(200, AttemptList)
    def get(self, filters: dict[str, Any]) -> dict[str, Any]:
        """Delivery attempts, newest first, filtered by subscription, uuid, event, outcome and time."""
        session = state().db.session
        query = _attempts(principal(), filters.get("q"))
        if "subscription_id" in filters:
            query = query.where(DeliveryAttempt.subscription_id == filters["subscription_id"])
        if "uuid" in filters:
            query = query.where(DeliveryAttempt.uuid == filters["uuid"])
        if "event_name" in filters:
            name = filters["event_name"].strip().lower()
            query = query.where(
                Event.event_name.like(name.replace("*", "%")) if "*" in name else Event.event_name == name
            )
        if "success" in filters:
            query = query.where(DeliveryAttempt.success.is_(filters["success"]))
        if "since" in filters:
            query = query.where(DeliveryAttempt.created >= _utc(filters["since"]))
        if "until" in filters:
            query = query.where(DeliveryAttempt.created <= _utc(filters["until"]))
        total = count_rows(query)
        page, size = filters["page"], filters["page_size"]
        rows = session.execute(query.order_by(DeliveryAttempt.log_id.desc()).offset((page - 1) * size).limit(size))
        return {"items": [_attempt_dict(attempt, event_name) for attempt, event_name in rows], "total_count": total}


def _owned_delivery(uuid: str) -> tuple[Delivery, Event, Subscription]:
    query = (
        select(Delivery, Event, Subscription)
        .join(Event, Delivery.event_id == Event.id)
        .join(Subscription, Delivery.subscription_id == Subscription.subscription_id)
        .where(Delivery.uuid == uuid)
    )
    caller = principal()
    if not caller.is_admin:
        query = query.where(Subscription.owner == caller.owner)
    row = state().db.session.execute(query).first()
    if row is None:
        fail(404, TRACE_NOT_FOUND.format(uuid=uuid))
    delivery, event, subscription = row
    return delivery, event, subscription


def status_words(delivery_state: str, attempts: list[DeliveryAttempt]) -> str:
    """The seed's trace wording: "Delivered" / "Dead Lettered", then " with N retries"."""
    made = [attempt for attempt in attempts if attempt.error_class != "Cancelled"]
    words = STATE_WORDS.get(delivery_state, delivery_state)
    retries = len(made) - 1
    if delivery_state == DeliveryState.DELIVERED:
        first_success = next((i for i, attempt in enumerate(made) if attempt.success), len(made) - 1)
        retries = first_success
    if retries > 0 and delivery_state in (DeliveryState.DELIVERED, DeliveryState.DEAD):
        return f"{words} with {retries} {'retry' if retries == 1 else 'retries'}"
    if delivery_state == DeliveryState.RETRYING:
        return f"{words} after {len(made)} attempt{'s' if len(made) != 1 else ''}"
    return words


@blp.route("/async_event_logs/<uuid>")
class Trace(MethodView):
    @blp.response(200, TraceOut)
    @blp.alt_response(404, description="No such delivery, or not the caller's")
    def get(self, uuid: str) -> dict[str, Any]:
        """Everything about one delivery: its status, every attempt, and the payload sent."""
        delivery, event, subscription = _owned_delivery(uuid)
        attempts = list(
            state().db.session.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id == delivery.id)
                .order_by(DeliveryAttempt.log_id)
            )
        )
        body = next((attempt.serialized_data for attempt in attempts if attempt.serialized_data), None) or event.body
        payload = None
        if body:
            try:
                payload = json.loads(body)
            except ValueError:
                payload = body
        return {
            "uuid": delivery.uuid,
            "status": status_words(delivery.state, attempts),
            "state": delivery.state,
            "event_name": event.event_name,
            "event_id": event.uuid,
            "store_id": event.store_id,
            "subscription": subscription,
            "first_attempt": attempts[0].created if attempts else None,
            "last_attempt": attempts[-1].created if attempts else None,
            "next_attempt_at": delivery.next_attempt_at if delivery.state == DeliveryState.RETRYING else None,
            "attempts": [_attempt_dict(attempt, event.event_name) for attempt in attempts],
            "payload": payload,
        }


@blp.route("/async_event_logs/<uuid>/replay")
class Replay(MethodView):
    @blp.response(202, ReplayOut)
    @blp.alt_response(404, description="No such delivery, or not the caller's")
    @blp.alt_response(409, description="The delivery cannot be replayed now (disabled subscription, being sent)")
    def post(self, uuid: str) -> dict[str, Any]:
        """Deliver again now: same uuid (webhook-id), body read from the database, fresh schedule."""
        _owned_delivery(uuid)
        state().db.session.rollback()
        try:
            replay(state(), uuid)
        except ReplayError as exc:
            state().db.session.rollback()
            fail(409, str(exc))
        return {"uuid": uuid, "message": f"Delivery {uuid} will be sent again"}
