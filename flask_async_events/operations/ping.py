"""A test event sent to a subscription's endpoint now, through the same checks and the same guarded
notifier call as every delivery attempt (:mod:`flask_async_events.delivery.attempt`). Nothing is
written: a ping is not a delivery and leaves no log row."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from flask_async_events.auth import Principal
from flask_async_events.delivery.attempt import attempt, recipient_for, sendable
from flask_async_events.delivery.payloads import CONTENT_TYPES, render_body
from flask_async_events.models import Event, Subscription, utcnow
from flask_async_events.notifiers.base import Message, NotifyResult
from flask_async_events.operations.owner_rates import take_test_send
from flask_async_events.state import AppState

PING_EVENT = "async_events.ping"


@dataclass(frozen=True)
class PingAnswer:
    """What the endpoint answered; ``sent`` is False when the checks refused to send at all (the
    result then says why: no such notifier here, a secret that does not decrypt)."""

    result: NotifyResult
    duration_ms: int
    sent: bool


def ping(state: AppState, subscription: Subscription, caller: Principal | None = None) -> PingAnswer:
    """Send a signed ``async_events.ping`` event to ``subscription`` and wait for the answer; a
    non-admin ``caller`` within its owner's test sends a minute (:class:`RateLimited` past them)."""
    take_test_send(state, caller)
    checked = sendable(
        state,
        subscription.notifier,
        subscription.verification_token,
        subscription.previous_tokens,
        subscription.headers,
    )
    if isinstance(checked, NotifyResult):
        return PingAnswer(checked, 0, sent=False)
    now = utcnow()
    event = Event(uuid=str(uuid.uuid4()), event_name=PING_EVENT, store_id=subscription.store_id, created_at=now)
    payload_format = state.settings.payload_format
    body = render_body({"ping": True, "subscription_id": subscription.subscription_id}, event, payload_format)
    message = Message(str(uuid.uuid4()), event.uuid, PING_EVENT, body, CONTENT_TYPES[payload_format], now, 1)
    recipient = recipient_for(
        checked.credentials,
        subscription.subscription_id,
        subscription.event_name,
        subscription.recipient_url,
        subscription.notifier,
        subscription.store_id,
    )
    state.db.session.rollback()  # nothing to write; do not hold a transaction while sending
    [(result, duration_ms)] = attempt(checked.notifier, recipient, message)
    return PingAnswer(result, duration_ms, sent=True)
