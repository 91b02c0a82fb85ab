"""Enabling and disabling subscriptions: the state changes delivery makes itself (a 410, an
endpoint failing for ``ASYNC_EVENTS_DISABLE_AFTER``) and that operators make through the CLI, the
REST API and the admin pages. Disabling cancels the open deliveries, with a log row each, so
pending retries end visibly, not silently.

These functions write into the session and leave the commit to the caller.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from flask_async_events.delivery.attempt_stats import write_attempts
from flask_async_events.models import DbSession, Delivery, DeliveryState, Subscription, utcnow


def enable_subscriptions(session: DbSession, subscription_ids: Collection[int]) -> None:
    """Enable, and forget the failure history that may have disabled them. A deleted subscription
    is never enabled again: it stays disabled, and fan-out never selects it."""
    session.execute(
        update(Subscription)
        .where(Subscription.subscription_id.in_(subscription_ids), Subscription.deleted_at.is_(None))
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
    write_attempts(session, logs)
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_([row.id for row in rows]), Delivery.state.in_(DeliveryState.CLAIMABLE))
        .values(state=DeliveryState.CANCELLED, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return len(rows)
