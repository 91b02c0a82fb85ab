"""The trace of one delivery: its status in the Magento module's words, every attempt, and the payload sent.
The REST API and the admin pages show the same thing."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from flask_async_events.auth import Principal
from flask_async_events.models import DbSession, Delivery, DeliveryAttempt, DeliveryState, Event, Subscription

STATE_WORDS = {
    DeliveryState.DELIVERED: "Delivered",
    DeliveryState.DEAD: "Dead Lettered",
    DeliveryState.RETRYING: "Retrying",
    DeliveryState.PENDING: "Pending",
    DeliveryState.DELIVERING: "Delivering",
    DeliveryState.CANCELLED: "Cancelled",
}


def status_words(delivery_state: str, attempts: list[DeliveryAttempt]) -> str:
    """The Magento module's trace wording: "Delivered" / "Dead Lettered", then " with N retries"."""
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


def attempt_dict(attempt: DeliveryAttempt, event_name: str) -> dict[str, Any]:
    """One attempt as the API, the CLI and the admin pages show it."""
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


def owned_delivery(session: DbSession, uuid: str, caller: Principal) -> tuple[Delivery, Event, Subscription] | None:
    """The delivery with this uuid, its event and subscription, if the caller may see them."""
    query = (
        select(Delivery, Event, Subscription)
        .join(Event, Delivery.event_id == Event.id)
        .join(Subscription, Delivery.subscription_id == Subscription.subscription_id)
        .where(Delivery.uuid == uuid)
    )
    if not caller.is_admin:
        query = query.where(Subscription.owner == caller.owner)
    row = session.execute(query).first()
    return None if row is None else (row[0], row[1], row[2])


def load_trace(session: DbSession, uuid: str, caller: Principal) -> dict[str, Any] | None:
    """Everything about one delivery (attempts as rows, oldest first), or None if not the caller's."""
    found = owned_delivery(session, uuid, caller)
    if found is None:
        return None
    delivery, event, subscription = found
    attempts = list(
        session.scalars(
            select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery.id).order_by(DeliveryAttempt.log_id)
        )
    )
    body = next((attempt.serialized_data for attempt in attempts if attempt.serialized_data), None) or event.body
    payload: Any = None
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
        "attempts": attempts,
        "payload": payload,
    }
