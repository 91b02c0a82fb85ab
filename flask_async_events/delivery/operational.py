"""Operational events: what a subscriber should know about its own subscriptions, sent as webhooks
like any other event (subscribe to one by name, or to ``async_events.*``; a ``*`` pattern does not match them).

- ``async_events.subscription.disabled``: disabled by delivery itself (410 Gone, or failing for
  ``ASYNC_EVENTS_DISABLE_AFTER``), with the reason and the last error;
- ``async_events.delivery.dead``: a delivery failed for good, with its attempts and last answer;
- ``async_events.endpoint.failing`` / ``async_events.endpoint.recovered``: an endpoint's circuit
  opened / closed, with the owner's subscriptions there.

Each is published through the outbox in the same transaction as the change it reports (when an
enabled subscription receives operational events at all), and
carries the owner of the subscriptions it is about: fan-out gives it only to subscriptions of that
owner, or to those that see everything (made in code or on the command line, or by an admin
token). None is published about a delivery of an operational event, so a failing operational
endpoint cannot feed itself.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import or_, select

from flask_async_events.definitions import OPERATIONAL_PREFIX as PREFIX
from flask_async_events.definitions import EventDefinition, EventRegistry
from flask_async_events.delivery.circuits import endpoint_key
from flask_async_events.delivery.outbox import publish_event
from flask_async_events.models import DbSession, Subscription
from flask_async_events.state import AppState

SUBSCRIPTION_DISABLED = "async_events.subscription.disabled"
DELIVERY_DEAD = "async_events.delivery.dead"
ENDPOINT_FAILING = "async_events.endpoint.failing"
ENDPOINT_RECOVERED = "async_events.endpoint.recovered"
OWNER = "owner"  # the argument that scopes an operational event; never in its payload
DESCRIPTIONS = {
    SUBSCRIPTION_DISABLED: "A subscription was disabled by delivery (410 Gone, or failing too long)",
    DELIVERY_DEAD: "A delivery failed for good and waits in the dead letters for a replay",
    ENDPOINT_FAILING: "An endpoint's circuit opened: nothing is sent there while it cools down",
    ENDPOINT_RECOVERED: "An endpoint's circuit closed: what waited for it is being delivered",
}


def payload(**arguments: Any) -> dict[str, Any]:
    """An operational event's payload: what was published, without the owner that scopes it."""
    return {key: value for key, value in arguments.items() if key != OWNER}


def define(registry: EventRegistry) -> None:
    """Add the operational events to an app's catalogue."""
    for name, description in DESCRIPTIONS.items():
        registry.add(EventDefinition(name, payload, (), description, "flask_async_events"))


def is_operational(event_name: str) -> bool:
    return event_name.startswith(PREFIX)


def event_owner(arguments: str) -> str | None:
    """The owner an operational event is about, from its stored arguments."""
    value = json.loads(arguments).get(OWNER)
    return value if isinstance(value, str) else None


def sees(subscriber: str | None, about: str | None, grants: Mapping[str, frozenset[str] | None]) -> bool:
    """Whether a subscription of ``subscriber`` may receive an operational event about ``about``'s
    subscriptions: its own, or everyone's for one made in code or by an admin token."""
    if subscriber is None or subscriber == about:
        return True
    return subscriber in grants and grants[subscriber] is None


def _listened_to(session: DbSession) -> bool:
    """Whether any enabled subscription receives operational events: if none does, none is
    published (the outbox is not filled with events nobody would get)."""
    query = select(Subscription.subscription_id).where(
        Subscription.status.is_(True), Subscription.event_name.startswith(PREFIX, autoescape=True)
    )
    return session.scalar(query.limit(1)) is not None


def _owners(session: DbSession, subscription_ids: Iterable[int]) -> dict[int, str | None]:
    ids = sorted(set(subscription_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(Subscription.subscription_id, Subscription.owner).where(Subscription.subscription_id.in_(ids))
    )
    return {row.subscription_id: row.owner for row in rows}


def publish_failures(
    state: AppState, disabled: Mapping[int, tuple[str, str | None]], dead: list[dict[str, Any]]
) -> None:
    """In the session, from one batch of results: ``subscription.disabled`` for each subscription
    id -> (reason, last error), and ``delivery.dead`` for each dead delivery (its
    ``subscription_id``, ``delivery_uuid``, ``event_name``, ``attempts``, ``status_code``,
    ``error``, ``reason``), none for the delivery of an operational event. Two queries at most,
    and only when there is something to say."""
    dead = [entry for entry in dead if not is_operational(entry["event_name"])]
    session = state.db.session
    if not (disabled or dead) or not _listened_to(session):
        return
    owners = _owners(session, [*disabled, *(entry["subscription_id"] for entry in dead)])
    for subscription_id, (reason, last_error) in sorted(disabled.items()):
        arguments = {"subscription_id": subscription_id, "reason": reason, "last_error": last_error}
        publish_event(state, SUBSCRIPTION_DISABLED, 0, {**arguments, OWNER: owners.get(subscription_id)})
    for entry in dead:
        publish_event(state, DELIVERY_DEAD, 0, {**entry, OWNER: owners.get(entry["subscription_id"])})


def publish_endpoint(state: AppState, endpoints: Iterable[str], *, failing: bool) -> None:
    """``endpoint.failing`` (or ``.recovered``) per endpoint and owner of enabled subscriptions
    there, in the session, each listing that owner's subscriptions at the endpoint."""
    wanted = set(endpoints)
    if not wanted or not _listened_to(state.db.session):
        return
    hosts = {endpoint.split("://", 1)[-1].rsplit(":", 1)[0] for endpoint in wanted}
    rows = state.db.session.execute(
        select(Subscription.subscription_id, Subscription.recipient_url, Subscription.owner).where(
            Subscription.status.is_(True), *([] if len(hosts) > 20 else [_on_hosts(hosts)])
        )
    )
    by_owner: dict[tuple[str, str | None], list[int]] = defaultdict(list)
    for row in rows:
        endpoint = endpoint_key(row.recipient_url)
        if endpoint in wanted:
            by_owner[(endpoint, row.owner)].append(row.subscription_id)
    name = ENDPOINT_FAILING if failing else ENDPOINT_RECOVERED
    for (endpoint, owner), subscription_ids in sorted(
        by_owner.items(), key=lambda item: (item[0][0], item[0][1] or "")
    ):
        arguments = {"endpoint": endpoint, "subscription_ids": sorted(subscription_ids), OWNER: owner}
        publish_event(state, name, 0, arguments)


def _on_hosts(hosts: set[str]) -> Any:
    """Subscriptions whose URL names one of ``hosts`` (narrowed further by endpoint in Python)."""
    return or_(*(Subscription.recipient_url.contains(f"://{host}", autoescape=True) for host in sorted(hosts)))
