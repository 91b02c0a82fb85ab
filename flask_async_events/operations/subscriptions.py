"""Subscriptions for the CLI, the REST API, the admin pages and the portal: create, change,
unsubscribe, check a target, and who would receive an event. (Enabling and disabling, which delivery does too, live in
:mod:`flask_async_events.delivery.subscription_status`.)

These functions write into the session and leave the commit to the caller.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import func, or_, select, update

from flask_async_events.auth import Principal
from flask_async_events.definitions import check_store_id, normalise_pattern, receives
from flask_async_events.delivery.filters import check_filter
from flask_async_events.delivery.subscription_status import disable_subscriptions, enable_subscriptions
from flask_async_events.errors import InvalidSubscription, QuotaExceeded, TargetNotAllowed, UnknownSubscription
from flask_async_events.models import DbSession, Subscription, utcnow
from flask_async_events.operations.headers import check_sends_headers, set_headers
from flask_async_events.state import AppState
from flask_async_events.wildcards import wildcard_matches

MIN_RATE_LIMIT = 0.001  # one delivery every 1,000 s
MAX_RATE_LIMIT = 10_000.0


def create_subscription(
    state: AppState,
    *,
    event_name: str,
    recipient_url: str,
    verification_token: str,
    metadata: str = "http",
    store_id: int = 0,
    owner: str | None = None,
    rate_limit: float | None = None,
    headers: Mapping[str, str] | None = None,
    filter: str | None = None,
    caller: Principal | None = None,
) -> Subscription:
    """Add an enabled subscription to the session, checking what the caller gave. ``headers``:
    extra request headers sent with every delivery (see :mod:`~flask_async_events.operations.headers`);
    ``filter``: a query an event must match to be delivered (see :mod:`~flask_async_events.delivery.filters`);
    ``caller``: who asked through the web (a non-admin one is held to its owner's bounds; None: the
    host's code or an operator, who are not)."""
    pattern = normalise_pattern(event_name)
    if "*" not in pattern and state.definitions.get(pattern) is None:
        raise InvalidSubscription(f"event_name {event_name!r} is not a defined event")
    validate_target(state, metadata, recipient_url, caller)
    check_quota(state, caller)
    check_store_id(store_id)
    rate_limit = check_rate_limit(rate_limit)
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
        rate_limit=rate_limit,
        filter=check_filter(filter, state.settings.filter_limits),
    )
    set_headers(state, subscription, headers)
    state.db.session.add(subscription)
    return subscription


CHANGEABLE = ("status", "metadata", "recipient_url", "rate_limit", "headers", "filter")


def update_subscription(
    state: AppState,
    subscription: Subscription,
    changes: Mapping[str, Any],
    *,
    disabled_reason: str = "disabled",
    caller: Principal | None = None,
) -> None:
    """Apply ``changes`` (any of :data:`CHANGEABLE`; the rest stay as they were), each checked as
    creation checks it (``caller`` as there); an invalid one raises ``InvalidSubscription`` naming
    the field, and the caller rolls back. Disabling cancels the open deliveries, with ``disabled_reason``."""
    unknown = sorted(set(changes) - set(CHANGEABLE))
    if unknown:
        raise InvalidSubscription(f"{unknown[0]} cannot be changed; subscribe again instead")
    status = changes.get("status", subscription.status)
    if not isinstance(status, bool):
        raise InvalidSubscription(f"status must be true or false, got {status!r}")
    if "metadata" in changes or "recipient_url" in changes:
        metadata = changes.get("metadata", subscription.notifier)
        recipient_url = changes.get("recipient_url", subscription.recipient_url)
        validate_target(state, metadata, recipient_url, caller)
        if subscription.headers and "headers" not in changes:
            check_sends_headers(state, metadata)
        subscription.notifier, subscription.recipient_url = metadata.lower(), recipient_url
    if "headers" in changes:
        set_headers(state, subscription, changes["headers"])
    if "filter" in changes:
        subscription.filter = check_filter(changes["filter"], state.settings.filter_limits)
    if "rate_limit" in changes:
        subscription.rate_limit = check_rate_limit(changes["rate_limit"])
    if set(changes) - {"status"}:
        subscription.modified = utcnow()
    if status is False and subscription.status:
        disable_subscriptions(state.db.session, [subscription.subscription_id], disabled_reason)
    elif status is True and not subscription.status:
        enable_subscriptions(state.db.session, [subscription.subscription_id])


def unsubscribe(session: DbSession, subscription: Subscription) -> None:
    """Disable and hide a subscription; its delivery log stays as an audit trail."""
    subscription.deleted_at = utcnow()
    disable_subscriptions(session, [subscription.subscription_id], "unsubscribed")


def existing_subscriptions(session: DbSession, subscription_ids: Collection[int]) -> list[int]:
    """The ids, each naming a subscription that exists and was not deleted, in order;
    :class:`UnknownSubscription` naming those that do not, so that nothing is changed for a typo."""
    wanted = sorted(set(subscription_ids))
    rows = session.execute(
        select(Subscription.subscription_id, Subscription.deleted_at).where(Subscription.subscription_id.in_(wanted))
    ).all()
    deleted = sorted(row.subscription_id for row in rows if row.deleted_at is not None)
    missing = sorted(set(wanted) - {row.subscription_id for row in rows})
    if missing or deleted:
        said = [f"no subscription {', '.join(map(str, missing))}"] if missing else []
        said += [f"subscription {', '.join(map(str, deleted))} was deleted (subscribe again)"] if deleted else []
        raise UnknownSubscription(f"{'; '.join(said)}; nothing was changed")
    return wanted


def set_enabled(state: AppState, subscription_ids: Collection[int], enabled: bool, reason: str) -> list[int]:
    """Enable or disable subscriptions that all exist (disabling cancels their open deliveries,
    with ``reason``); return their ids. The caller commits."""
    ids = existing_subscriptions(state.db.session, subscription_ids)
    if enabled:
        enable_subscriptions(state.db.session, ids)
    else:
        disable_subscriptions(state.db.session, ids, reason)
    return ids


def check_rate_limit(rate_limit: object) -> float | None:
    """A ``rate_limit`` as stored: deliveries per second between ``MIN_RATE_LIMIT`` and
    ``MAX_RATE_LIMIT``, or None for no limit."""
    if rate_limit is None:
        return None
    if isinstance(rate_limit, bool) or not isinstance(rate_limit, int | float) or not math.isfinite(rate_limit):
        raise InvalidSubscription(f"rate_limit must be a number of deliveries per second or null, got {rate_limit!r}")
    if not MIN_RATE_LIMIT <= rate_limit <= MAX_RATE_LIMIT:
        raise InvalidSubscription(
            f"rate_limit must be between {MIN_RATE_LIMIT:g} and {MAX_RATE_LIMIT:g} deliveries per second"
            f" (null: no limit), got {rate_limit:g}"
        )
    return float(rate_limit)


def describe_rate_limit(rate_limit: float | None) -> str:
    """A rate limit as the CLI and the admin pages report it."""
    return f"at most {rate_limit:g} deliveries per second" if rate_limit else "no rate limit"


def set_rate_limit(session: DbSession, subscription_ids: list[int], rate_limit: float | None) -> None:
    """Change the rate limit of subscriptions; deliveries already given a slot keep it."""
    session.execute(
        update(Subscription)
        .where(Subscription.subscription_id.in_(subscription_ids))
        .values(rate_limit=check_rate_limit(rate_limit), modified=utcnow())
    )


def validate_target(state: AppState, metadata: str, recipient_url: str, caller: Principal | None = None) -> None:
    """The notifier must exist and accept the recipient (``ValueError`` names the field), and a
    non-admin ``caller`` may aim a notifier that uses the host's credentials only at allow-listed
    targets (:class:`TargetNotAllowed`)."""
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
    if caller is not None and not caller.is_admin and getattr(notifier, "uses_host_credentials", False):
        _check_owner_target(state, state.notifier_key(metadata), recipient_url)


def _check_owner_target(state: AppState, notifier_name: str, recipient_url: str) -> None:
    """A target of a notifier that sends with the host's credentials must match a pattern the host
    lists for owners; nothing else is theirs to aim at."""
    patterns = state.settings.owner_targets.get(notifier_name, ())
    if not any(wildcard_matches(pattern, recipient_url, fold_case=False) for pattern in patterns):
        allowed = f"the patterns {', '.join(patterns)}" if patterns else "no targets for it"
        raise TargetNotAllowed(
            f"recipient_url: a {notifier_name!r} subscription sends with the host's credentials, so its target"
            f" must be allowed by ASYNC_EVENTS_OWNER_TARGETS, which lists {allowed}"
        )


def check_quota(state: AppState, caller: Principal | None) -> None:
    """A non-admin owner may hold at most ``ASYNC_EVENTS_MAX_SUBSCRIPTIONS_PER_OWNER`` subscriptions
    (unsubscribed ones do not count); :class:`QuotaExceeded` for one more."""
    most = state.settings.max_subscriptions_per_owner
    if caller is None or caller.is_admin or not most:
        return
    held = state.db.session.scalar(
        select(func.count()).where(Subscription.owner == caller.owner, Subscription.deleted_at.is_(None))
    )
    if (held or 0) >= most:
        raise QuotaExceeded(
            f"this owner has {held} subscriptions, as many as it may have"
            f" (ASYNC_EVENTS_MAX_SUBSCRIPTIONS_PER_OWNER = {most}); delete one first"
        )


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
