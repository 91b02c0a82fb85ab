"""Subscriptions for the CLI, the REST API and the admin pages: create, check a target, and who
would receive an event. (Enabling and disabling, which delivery does too, live in
:mod:`flask_async_events.delivery.subscription_status`.)

These functions write into the session and leave the commit to the caller.
"""

from __future__ import annotations

from sqlalchemy import or_, select

from flask_async_events.definitions import check_store_id, normalise_pattern, receives
from flask_async_events.errors import InvalidSubscription
from flask_async_events.models import DbSession, Subscription
from flask_async_events.state import AppState


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
        raise InvalidSubscription(f"event_name {event_name!r} is not a defined event")
    validate_target(state, metadata, recipient_url)
    check_store_id(store_id)
    if not verification_token:
        raise InvalidSubscription("verification_token must not be empty")
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
        raise InvalidSubscription(
            f"metadata {metadata!r} is not a registered notifier ({', '.join(state.notifier_names())})"
        )
    if not recipient_url or len(recipient_url) > 1024:
        raise InvalidSubscription("recipient_url must be given and at most 1024 characters")
    validate_recipient = getattr(notifier, "validate_recipient", None)
    if callable(validate_recipient):
        try:
            validate_recipient(recipient_url)
        except ValueError as exc:
            message = str(exc)
            raise InvalidSubscription(
                message if message.startswith("recipient_url") else f"recipient_url: {message}"
            ) from None


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
