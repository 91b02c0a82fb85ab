"""Subscriptions: ``subscribe``, ``subscriptions``, ``headers``, ``filter``, ``rotate-secret``,
``enable``, ``disable`` and ``rate-limit``, each through :mod:`flask_async_events.operations`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import click
from sqlalchemy import select

from flask_async_events.bounds import parse_duration
from flask_async_events.cli.common import cli, json_option, one_subscription, print_json
from flask_async_events.delivery.filters import check_filter
from flask_async_events.errors import UnknownSubscription
from flask_async_events.models import Subscription, utcnow
from flask_async_events.operations.headers import parse_header_lines, set_headers, shown_headers, stored_headers
from flask_async_events.operations.rotation import MAX_GRACE, rotate_secret
from flask_async_events.operations.subscriptions import (
    check_rate_limit,
    create_subscription,
    describe_rate_limit,
    existing_subscriptions,
    set_enabled,
    set_rate_limit,
)
from flask_async_events.signing import generate_secret
from flask_async_events.state import get_state


@cli.command()
@click.argument("event_name")
@click.argument("recipient_url")
@click.option("--token", "verification_token", help="Verification token (default: a new whsec_ secret).")
@click.option("--notifier", "metadata", default="http", show_default=True, help="The subscription's metadata.")
@click.option("--store-id", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--rate-limit", type=float, help="At most this many deliveries per second (default: no limit).")
@click.option("--header", "header_lines", multiple=True, help="An extra request header, 'Name: value' (repeatable).")
@click.option("--filter", "query", help="Deliver only events matching this query, e.g. 'data.total:>=100'.")
@json_option
def subscribe(
    event_name: str,
    recipient_url: str,
    verification_token: str | None,
    metadata: str,
    store_id: int,
    rate_limit: float | None,
    header_lines: tuple[str, ...],
    query: str | None,
    as_json: bool,
) -> None:
    """Subscribe RECIPIENT_URL to EVENT_NAME (which may hold * wildcards)."""
    state = get_state()
    secret = verification_token or generate_secret()
    try:
        subscription = create_subscription(
            state,
            event_name=event_name,
            recipient_url=recipient_url,
            verification_token=secret,
            metadata=metadata,
            store_id=store_id,
            rate_limit=rate_limit,
            headers=_header_lines(header_lines, "--header"),
            filter=query,
        )
        state.db.session.commit()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    result = {"subscription_id": subscription.subscription_id, "event_name": subscription.event_name}
    if verification_token is None:
        result["verification_token"] = secret
    if as_json:
        print_json(result)
        return
    click.echo(f"Subscription {result['subscription_id']} created for {result['event_name']}")
    if verification_token is None:
        click.echo(f"Verification token (shown once): {secret}")


def _header_lines(lines: Sequence[str], option: str) -> dict[str, str]:
    """``Name: value`` options as headers."""
    try:
        return parse_header_lines(lines)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@cli.command("headers")
@click.argument("subscription_id", type=int)
@click.option("--set", "to_set", multiple=True, help="Add or replace a header, 'Name: value' (repeatable).")
@click.option("--remove", "to_remove", multiple=True, help="Remove a header by name (repeatable).")
@click.option("--clear", is_flag=True, help="Remove every header first.")
@json_option
def headers_command(
    subscription_id: int, to_set: tuple[str, ...], to_remove: tuple[str, ...], clear: bool, as_json: bool
) -> None:
    """Show or change the extra request headers a subscription sends (credential-like values masked)."""
    state = get_state()
    subscription = one_subscription(subscription_id)
    if to_set or to_remove or clear:
        current = {} if clear else stored_headers(state, subscription)
        removed = {name.lower() for name in to_remove}
        changes = _header_lines(to_set, "--set")
        replaced = {name.lower() for name in changes}
        kept = {name: value for name, value in current.items() if name.lower() not in removed | replaced}
        try:
            set_headers(state, subscription, {**kept, **changes})
        except ValueError as exc:
            state.db.session.rollback()
            raise click.ClickException(str(exc)) from None
        state.db.session.commit()
    shown = shown_headers(state, subscription)
    if as_json:
        print_json(shown)
        return
    if not shown:
        click.echo(f"Subscription {subscription_id} sends no extra headers")
    for name, value in shown.items():
        click.echo(f"{name}: {value}")


@cli.command("filter")
@click.argument("subscription_id", type=int)
@click.argument("query", required=False)
@click.option("--clear", is_flag=True, help="Remove the filter: every event is delivered.")
@json_option
def filter_command(subscription_id: int, query: str | None, clear: bool, as_json: bool) -> None:
    """Show or set the query an event must match to be delivered to a subscription."""
    state = get_state()
    subscription = one_subscription(subscription_id)
    if query is not None or clear:
        try:
            subscription.filter = check_filter(None if clear else query, state.settings.filter_limits)
        except ValueError as exc:
            state.db.session.rollback()
            raise click.ClickException(str(exc)) from None
        subscription.modified = utcnow()
        state.db.session.commit()
    if as_json:
        print_json({"subscription_id": subscription_id, "filter": subscription.filter})
    elif subscription.filter:
        click.echo(f"Subscription {subscription_id} receives only events matching: {subscription.filter}")
    else:
        click.echo(f"Subscription {subscription_id} receives every event it subscribed to (no filter)")


@cli.command("rotate-secret")
@click.argument("subscription_id", type=int)
@click.option("--grace", default="24h", show_default=True, help="How long the old secret also signs: 24h, 7d, 0s.")
@click.option("--token", "verification_token", help="The new secret (default: a new whsec_ secret).")
@json_option
def rotate_secret_command(subscription_id: int, grace: str, verification_token: str | None, as_json: bool) -> None:
    """Give a subscription a new signing secret; the old one keeps signing beside it for --grace."""
    state = get_state()
    try:
        period = parse_duration("--grace", grace, timedelta(seconds=MAX_GRACE)).total_seconds()
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        rotation = rotate_secret(state, one_subscription(subscription_id), token=verification_token, grace=period)
    except ValueError as exc:
        state.db.session.rollback()
        raise click.ClickException(str(exc)) from None
    state.db.session.commit()
    result = {
        "verification_token": rotation.verification_token,
        "previous_valid_until": rotation.previous_valid_until.isoformat(),
    }
    if as_json:
        print_json(result)
        return
    click.echo(f"New verification token (shown once): {rotation.verification_token}")
    click.echo(f"The previous one also signs until {result['previous_valid_until']}")


@cli.command()
@click.option("--all", "everything", is_flag=True, help="Also the deleted (unsubscribed) ones.")
@json_option
def subscriptions(everything: bool, as_json: bool) -> None:
    """List subscriptions (never their verification tokens); deleted ones only with --all."""
    query = select(Subscription).order_by(Subscription.subscription_id)
    if not everything:
        query = query.where(Subscription.deleted_at.is_(None))
    rows = get_state().db.session.scalars(query).all()
    listing = [
        {
            "subscription_id": s.subscription_id,
            "event_name": s.event_name,
            "recipient_url": s.recipient_url,
            "status": s.status,
            "metadata": s.notifier,
            "store_id": s.store_id,
            "rate_limit": s.rate_limit,
            "headers": shown_headers(get_state(), s),
            "filter": s.filter,
            "subscribed_at": s.subscribed_at.isoformat(),
            "disabled_reason": s.disabled_reason,
            "deleted": s.deleted_at is not None,
        }
        for s in rows
    ]
    if as_json:
        print_json(listing)
        return
    for s in listing:
        state = (
            "deleted"
            if s["deleted"]
            else "enabled"
            if s["status"]
            else f"disabled ({s['disabled_reason'] or 'by hand'})"
        )
        limit = f"  at most {s['rate_limit']:g}/s" if s["rate_limit"] else ""
        click.echo(
            f"{s['subscription_id']:>6}  {s['event_name']:<30} {s['metadata']:<12} store {s['store_id']:<4} "
            f"{state:<12} {s['recipient_url']}{limit}"
        )


@cli.command()
@click.argument("subscription_ids", nargs=-1, type=int, required=True)
def enable(subscription_ids: tuple[int, ...]) -> None:
    """Enable subscriptions (each must exist and not be deleted, or nothing changes)."""
    ids = _set_enabled(subscription_ids, True)
    click.echo(f"Enabled {len(ids)} subscription(s): {', '.join(map(str, ids))}")


def _set_enabled(subscription_ids: tuple[int, ...], enabled: bool) -> list[int]:
    state = get_state()
    try:
        ids = set_enabled(state, subscription_ids, enabled, "disabled by an operator")
    except UnknownSubscription as exc:
        state.db.session.rollback()
        raise click.ClickException(str(exc)) from None
    state.db.session.commit()
    return ids


def _rate(value: str) -> float | None:
    if value.strip().lower() in ("none", "null", "unlimited"):
        return None
    try:
        return check_rate_limit(float(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc) if "rate_limit" in str(exc) else f"not a number: {value!r}") from None


@cli.command("rate-limit")
@click.argument("subscription_ids", nargs=-1, type=int, required=True)
@click.option(
    "--per-second", "rate", required=True, help="Deliveries per second across all workers, or 'none' for no limit."
)
def rate_limit_command(subscription_ids: tuple[int, ...], rate: str) -> None:
    """Set how many deliveries per second subscriptions may receive."""
    limit = _rate(rate)
    session = get_state().db.session
    try:
        ids = existing_subscriptions(session, subscription_ids)
    except UnknownSubscription as exc:
        raise click.ClickException(str(exc)) from None
    set_rate_limit(session, ids, limit)
    session.commit()
    click.echo(f"{len(subscription_ids)} subscription(s) now have {describe_rate_limit(limit)}")


@cli.command()
@click.argument("subscription_ids", nargs=-1, type=int, required=True)
def disable(subscription_ids: tuple[int, ...]) -> None:
    """Disable subscriptions; their pending retries are cancelled and logged as such (each must
    exist and not be deleted, or nothing changes)."""
    ids = _set_enabled(subscription_ids, False)
    click.echo(f"Disabled {len(ids)} subscription(s): {', '.join(map(str, ids))}")
