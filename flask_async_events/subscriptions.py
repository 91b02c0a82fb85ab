"""Subscriptions: create, enable, disable (cancelling what was still to be sent), and matching.

These functions write into the session and leave the commit to the caller.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, select, update

from flask_async_events.definitions import check_store_id, normalise_pattern, receives
from flask_async_events.models import Delivery, DeliveryAttempt, DeliveryState, Subscription, utcnow
from flask_async_events.state import AppState, DbSession


def create_subscription(
    state: AppState,
    *,
    event_name: str,
    recipient_url: str,
    verification_token: str,
    metadata: str = "http",
    store_id: int = 0,
    owner: str | None = None,
) -> Subscription:
    """Add an enabled subscription to the session, checking what the caller gave."""
    pattern = normalise_pattern(event_name)
    if "*" not in pattern and state.definitions.get(pattern) is None:
        raise ValueError(f"event_name {event_name!r} is not a defined event")
    validate_target(state, metadata, recipient_url)
    check_store_id(store_id)
    if not verification_token:
        raise ValueError("verification_token must not be empty")
    subscription = Subscription(
        event_name=pattern,
        recipient_url=recipient_url,
        verification_token=state.box.encrypt(verification_token),
        status=True,
        notifier=metadata.lower(),
        store_id=store_id,
        owner=owner,
    )
    state.db.session.add(subscription)
    return subscription


def validate_target(state: AppState, metadata: str, recipient_url: str) -> None:
    """The notifier must exist and accept the recipient; ``ValueError`` names the field."""
    notifier = state.notifier(metadata)
    if notifier is None:
        raise ValueError(f"metadata {metadata!r} is not a registered notifier ({', '.join(state.notifier_names())})")
    if not recipient_url or len(recipient_url) > 1024:
        raise ValueError("recipient_url must be given and at most 1024 characters")
    validate_recipient = getattr(notifier, "validate_recipient", None)
    if callable(validate_recipient):
        try:
            validate_recipient(recipient_url)
        except ValueError as exc:
            message = str(exc)
            raise ValueError(message if message.startswith("recipient_url") else f"recipient_url: {message}") from None


def enable_subscriptions(session: DbSession, subscription_ids: Collection[int]) -> None:
    """Enable, and forget the failure history that may have disabled them."""
    session.execute(
        update(Subscription)
        .where(Subscription.subscription_id.in_(subscription_ids))
        .values(status=True, disabled_reason=None, failing_since=None, consecutive_failures=0, modified=utcnow())
        .execution_options(synchronize_session="fetch")
    )


def disable_subscriptions(
    session: DbSession, subscription_ids: Collection[int], reason: str, *, now: datetime | None = None
) -> None:
    """Disable and cancel their open deliveries, so pending retries end visibly, not silently."""
    now = now or utcnow()
    session.execute(
        update(Subscription)
        .where(Subscription.subscription_id.in_(subscription_ids))
        .values(status=False, disabled_reason=reason[:255], modified=now)
        .execution_options(synchronize_session="fetch")
    )
    cancel_open_deliveries(session, subscription_ids, reason, now=now)


def cancel_open_deliveries(
    session: DbSession,
    subscription_ids: Collection[int],
    reason: str,
    *,
    now: datetime | None = None,
) -> int:
    """Cancel the subscriptions' pending and retrying deliveries, with a log row each."""
    now = now or utcnow()
    rows = session.execute(
        select(Delivery.id, Delivery.uuid, Delivery.subscription_id, Delivery.attempt_count).where(
            Delivery.subscription_id.in_(subscription_ids),
            Delivery.state.in_(DeliveryState.CLAIMABLE),
        )
    ).all()
    if not rows:
        return 0
    logs: list[dict[str, Any]] = [
        {
            "uuid": row.uuid,
            "subscription_id": row.subscription_id,
            "delivery_id": row.id,
            "attempt": row.attempt_count,
            "success": False,
            "error_class": "Cancelled",
            "response_data": f"Cancelled: {reason}",
            "created": now,
        }
        for row in rows
    ]
    session.execute(insert(DeliveryAttempt), logs)
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_([row.id for row in rows]), Delivery.state.in_(DeliveryState.CLAIMABLE))
        .values(state=DeliveryState.CANCELLED, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return len(rows)


def has_subscribers(session: DbSession, event_name: str, store_id: int = 0) -> bool:
    """Whether an event published now would reach anyone (wildcards and store scope included)."""
    name = event_name.strip().lower()
    candidates = session.execute(
        select(Subscription.event_name, Subscription.store_id).where(
            Subscription.status.is_(True),
            or_(Subscription.event_name == name, Subscription.event_name.contains("*")),
        )
    ).all()
    return any(receives(row.event_name, row.store_id, name, store_id) for row in candidates)
