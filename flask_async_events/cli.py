"""``flask async-events ...``: run workers and operate the system from a shell."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from flask_async_events import migrate
from flask_async_events.auth import Principal, create_token, revoke_token
from flask_async_events.bounds import parse_duration, parse_moment
from flask_async_events.config import NOTIFIER_ALIASES
from flask_async_events.delivery.filters import check_filter
from flask_async_events.delivery.outbox import publish_event
from flask_async_events.delivery.queues import QUEUE_NAMES
from flask_async_events.errors import IndexUnavailable, UnknownSubscription
from flask_async_events.models import ApiToken, DeliveryAttempt, Subscription, utcnow
from flask_async_events.operations.headers import parse_header_lines, set_headers, shown_headers, stored_headers
from flask_async_events.operations.missed import count_unreceived, recover_missed
from flask_async_events.operations.pattern_index import create_pattern_index, drop_pattern_index
from flask_async_events.operations.replay import ReplayError, count_dead, recover, replay, retry_dead
from flask_async_events.operations.retention import DEFAULT_BATCH, count_prunable, prune
from flask_async_events.operations.rotation import MAX_GRACE, rotate_secret
from flask_async_events.operations.search import QueryError, attempts_query
from flask_async_events.operations.status import dead_letters, system_status
from flask_async_events.operations.subscriptions import (
    check_rate_limit,
    create_subscription,
    describe_rate_limit,
    existing_subscriptions,
    set_enabled,
    set_rate_limit,
)
from flask_async_events.operations.trace import attempt_dict, load_trace
from flask_async_events.signing import generate_secret
from flask_async_events.state import get_state
from flask_async_events.worker.logs import FORMATS, configure_worker_logging
from flask_async_events.worker.rq_worker import run_worker

cli = AppGroup("async-events", help="Asynchronous events: workers, publishing, subscriptions, operations.")

NUDGE_WAIT = 5.0  # seconds a command waits for its trigger jobs to reach Redis

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


T = TypeVar("T")


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@cli.command()
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option(
    "--queues",
    "-q",
    multiple=True,
    type=click.Choice(QUEUE_NAMES),
    help="Queues to serve (repeatable); all three by default.",
)
@click.option("--name", help="Worker name (default: RQ's).")
@click.option("--max-jobs", type=int, help="Stop after this many jobs.")
@click.option(
    "--with-scheduler/--without-scheduler",
    default=True,
    show_default=True,
    help="Also run RQ's scheduler, which starts delayed retries when due.",
)
@click.option(
    "--logging-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="INFO: one line per delivery attempt and per endpoint state change.",
)
@click.option(
    "--log-format", type=click.Choice(FORMATS), default="text", show_default=True, help="json: one object a line."
)
@click.option("--verbose", is_flag=True, help="Also RQ's own lines: each job, its result, registry cleaning.")
def worker(
    burst: bool,
    queues: tuple[str, ...],
    name: str | None,
    max_jobs: int | None,
    with_scheduler: bool,
    logging_level: str,
    log_format: str,
    verbose: bool,
) -> None:
    """Run a delivery worker (the Magento module's event.trigger and event.retry consumers in one)."""
    state = get_state()
    selected = state.queues.named(queues) if queues else state.queues.all()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    rq_level = configure_worker_logging(logging_level, log_format=log_format, verbose=verbose)
    run_worker(
        app,
        selected,
        name=name,
        burst=burst,
        max_jobs=max_jobs,
        with_scheduler=with_scheduler,
        logging_level=rq_level,
    )


@cli.command()
@click.argument("event_name")
@click.option("--store-id", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--arg",
    "args",
    multiple=True,
    metavar="KEY=VALUE",
    help="A service argument; VALUE is parsed as JSON when it can be (repeatable).",
)
@click.option("--json-args", help="All arguments as one JSON object, e.g. '{\"id\": 1}'.")
@click.option(
    "--idempotency-key", help="Publish once per key: a repeat within the idempotency window prints the first id."
)
def publish(
    event_name: str, store_id: int, args: tuple[str, ...], json_args: str | None, idempotency_key: str | None
) -> None:
    """Publish an event now (committed at once)."""
    arguments: dict[str, Any] = {}
    if json_args:
        try:
            arguments = json.loads(json_args)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--json-args") from None
        if not isinstance(arguments, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--json-args")
    for item in args:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--arg")
        try:
            arguments[key] = json.loads(raw)
        except json.JSONDecodeError:
            arguments[key] = raw
    try:
        event_id = publish_event(get_state(), event_name, store_id, arguments, idempotency_key)
    except (ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from None
    state = get_state()
    state.db.session.commit()
    if not state.nudger.flush(NUDGE_WAIT):
        click.echo("Redis did not answer in time; a worker will relay the event from the database", err=True)
    click.echo(event_id)


@cli.command("list")
@json_option
def list_(as_json: bool) -> None:
    """List the defined events and the registered notifiers."""
    state = get_state()
    events = [{"name": d.name, "description": d.description, "resources": list(d.resources)} for d in state.definitions]
    notifiers = state.notifier_names()
    aliases = {alias: name for alias, name in NOTIFIER_ALIASES.items() if name in notifiers}
    if as_json:
        _print_json({"events": events, "notifiers": notifiers, "aliases": aliases})
        return
    click.echo("Events:")
    for event in events:
        resources = f"  [{', '.join(event['resources'])}]" if event["resources"] else ""
        click.echo(f"  {event['name']}{resources}  {event['description']}".rstrip())
    click.echo("Notifiers:")
    for notifier in notifiers:
        also = [alias for alias, name in aliases.items() if name == notifier]
        click.echo(f"  {notifier}" + (f"  (also: {', '.join(also)})" if also else ""))


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
        _print_json(result)
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


def _subscription(subscription_id: int) -> Subscription:
    """The subscription with this id, or a clear error."""
    subscription = get_state().db.session.get(Subscription, subscription_id)
    if subscription is None or subscription.deleted_at is not None:
        raise click.ClickException(f"No subscription {subscription_id}")
    return subscription


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
    subscription = _subscription(subscription_id)
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
        _print_json(shown)
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
    subscription = _subscription(subscription_id)
    if query is not None or clear:
        try:
            subscription.filter = check_filter(None if clear else query, state.settings.filter_limits)
        except ValueError as exc:
            state.db.session.rollback()
            raise click.ClickException(str(exc)) from None
        subscription.modified = utcnow()
        state.db.session.commit()
    if as_json:
        _print_json({"subscription_id": subscription_id, "filter": subscription.filter})
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
        rotation = rotate_secret(state, _subscription(subscription_id), token=verification_token, grace=period)
    except ValueError as exc:
        state.db.session.rollback()
        raise click.ClickException(str(exc)) from None
    state.db.session.commit()
    result = {
        "verification_token": rotation.verification_token,
        "previous_valid_until": rotation.previous_valid_until.isoformat(),
    }
    if as_json:
        _print_json(result)
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
        _print_json(listing)
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


@cli.command("trace")
@click.argument("delivery_uuid")
@json_option
def trace_command(delivery_uuid: str, as_json: bool) -> None:
    """Everything about one delivery: its status, every attempt, and the payload sent."""
    trace = load_trace(get_state().db.session, delivery_uuid, Principal("cli", is_admin=True))
    if trace is None:
        raise click.ClickException(f"no delivery with uuid {delivery_uuid}")
    subscription = trace.pop("subscription")
    attempts = [attempt_dict(attempt, trace["event_name"]) for attempt in trace.pop("attempts")]
    report = {**trace, "subscription_id": subscription.subscription_id, "recipient_url": subscription.recipient_url}
    if as_json:
        _print_json({**report, "attempts": attempts})
        return
    click.echo(f"{report['status']}: {report['event_name']} to subscription {report['subscription_id']}")
    click.echo(f"  {report['recipient_url']}")
    for attempt in attempts:
        result = attempt["status_code"] or attempt["error_class"] or "failed"
        click.echo(
            f"  #{attempt['attempt']} {attempt['created']:%Y-%m-%d %H:%M:%S}  {result}  {attempt['response_data'][:80]}"
        )
    click.echo(json.dumps(report["payload"], indent=2, ensure_ascii=False))


@cli.command("replay")
@click.argument("delivery_uuid")
def replay_command(delivery_uuid: str) -> None:
    """Deliver a delivery again: same uuid (webhook-id), same body, fresh retry schedule."""
    try:
        replay(get_state(), delivery_uuid)
    except (LookupError, ReplayError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Replaying {delivery_uuid}")


def _moment(value: str) -> datetime:
    try:
        return parse_moment("--since", value, utcnow())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _with_progress(label: str, count: int, run: Callable[[Callable[[int], None]], T], quiet: bool) -> T:
    """Run a long bulk operation that reports its steps, with a progress bar unless ``quiet``."""
    if quiet:
        return run(lambda _: None)
    with click.progressbar(length=count, label=label, show_pos=True) as bar:
        return run(bar.update)


@cli.command("dead-letters")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="How many to list.")
@click.option("--retry", is_flag=True, help="Replay them (those of enabled subscriptions), in batches.")
@click.option("--subscription", "subscription_id", type=click.IntRange(min=1), help="Only this subscription's.")
@click.option("--since", help="Only those created since a time (2026-01-31T12:00) or an age ago (2h, 3d).")
@click.option("--dry-run", is_flag=True, help="With --retry: count, replay nothing.")
@json_option
def dead_letters_command(
    limit: int, retry: bool, subscription_id: int | None, since: str | None, dry_run: bool, as_json: bool
) -> None:
    """List dead deliveries, newest first, with the last response; or replay them (--retry)."""
    state = get_state()
    since_time = _moment(since) if since else None
    if not retry:
        rows = dead_letters(state, limit=limit, subscription_id=subscription_id, since=since_time)
        if as_json:
            _print_json(rows)
            return
        if not rows:
            click.echo("No dead letters.")
        for row in rows:
            click.echo(
                f"{row['uuid']}  {row['event_name']:<28} subscription {row['subscription_id']:<5} "
                f"{row['attempts']} attempt(s)  {row['last_response'][:80]}"
            )
        return
    count = count_dead(state, subscription_id=subscription_id, since=since_time)
    uuids: list[str] = []
    if not dry_run and count:
        uuids = _with_progress(
            "Replaying",
            count,
            lambda progress: retry_dead(state, subscription_id=subscription_id, since=since_time, progress=progress),
            as_json,
        )
    _report_replayed(count if dry_run else len(uuids), uuids, dry_run, as_json)


@cli.command("recover")
@click.option("--subscription", "subscription_id", type=click.IntRange(min=1), required=True)
@click.option("--since", required=True, help="A time (2026-01-31T12:00) or an age ago (2h, 3d).")
@click.option("--dry-run", is_flag=True, help="Count, replay nothing.")
@click.option("--missed", is_flag=True, help="Also deliver the events since then it would receive now but never got.")
@json_option
def recover_command(subscription_id: int, since: str, dry_run: bool, missed: bool, as_json: bool) -> None:
    """Replay a subscription's dead deliveries created since a time (after an outage); with
    --missed, also deliver the events it missed meanwhile (while disabled, or filtered out)."""
    state = get_state()
    since_time = _moment(since)
    count = count_dead(state, subscription_id=subscription_id, since=since_time)
    uuids: list[str] = []
    if not dry_run:
        try:
            uuids = _with_progress(
                "Replaying",
                count,
                lambda progress: recover(state, subscription_id, since_time, progress=progress),
                as_json,
            )
        except ReplayError as exc:
            raise click.ClickException(str(exc)) from None
    if not missed:
        _report_replayed(count if dry_run else len(uuids), uuids, dry_run, as_json)
        return
    subscription = _subscription(subscription_id)
    if not subscription.status:
        raise click.ClickException(f"subscription {subscription_id} is disabled; enable it before recovering")
    examined = count_unreceived(state, subscription, since_time)
    found = _with_progress(
        "Looking for missed events",
        examined,
        lambda progress: recover_missed(state, subscription, since_time, dry_run=dry_run, progress=progress),
        as_json,
    )
    replayed = count if dry_run else len(uuids)
    if as_json:
        _print_json({"count": replayed, "missed": len(found), "dry_run": dry_run, "uuids": uuids + found})
        return
    _report_replayed(replayed, uuids, dry_run, as_json)
    verb = "Would deliver" if dry_run else "Delivering"
    click.echo(f"{verb} {len(found)} missed event(s), of {examined} published since then that it never received.")


def _report_replayed(count: int, uuids: list[str], dry_run: bool, as_json: bool) -> None:
    if as_json:
        _print_json({"count": count, "uuids": uuids, "dry_run": dry_run})
    else:
        click.echo(f"{'Would replay' if dry_run else 'Replayed'} {count} dead delivery(ies).")


@cli.command("logs")
@click.option("-q", "--query", "text", default="", help='A search, e.g. "data.id:1234" or "status:[500 TO 599]".')
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@json_option
def logs_command(text: str, limit: int, as_json: bool) -> None:
    """Delivery attempts, newest first, matching a Lucene-like search (see the README)."""
    state = get_state()
    try:
        query = attempts_query(text, state.db.session.get_bind().dialect.name)
    except QueryError as exc:
        raise click.BadParameter(str(exc), param_hint="'-q'") from None
    rows = state.db.session.execute(query.order_by(DeliveryAttempt.log_id.desc()).limit(limit)).all()
    found = [attempt_dict(attempt, event_name) for attempt, event_name in rows]
    if as_json:
        _print_json(found)
        return
    if not found:
        click.echo("No attempts match.")
    for row in found:
        outcome = "ok " if row["success"] else "err"
        click.echo(
            f"{row['created']:%Y-%m-%d %H:%M:%S}  {row['uuid']}  {row['event_name']:<28} "
            f"subscription {row['subscription_id']:<5} "
            f"#{row['attempt']} {outcome} {row['status_code'] or '-'}  {row['response_data'][:60]}"
        )


@cli.command("prune")
@click.option(
    "--older-than",
    "older_than",
    default="30d",
    show_default=True,
    help="An age: 30d, 12h, 90min, 2w (m alone is refused: minutes or months?).",
)
@click.option("--dry-run", is_flag=True, help="Count what would go, delete nothing.")
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH, show_default=True)
@json_option
def prune_command(older_than: str, dry_run: bool, batch_size: int, as_json: bool) -> None:
    """Delete attempt logs, finished deliveries and their events older than an age, in batches."""
    try:
        age = parse_duration("--older-than", older_than)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    state = get_state()
    counted = count_prunable(state, age)
    if dry_run:
        report = counted
    else:
        run = partial(prune, state, age, batch_size=batch_size)
        report = _with_progress("Pruning", counted.total, lambda progress: run(progress=progress), as_json)
    summary = {"attempts": report.attempts, "deliveries": report.deliveries, "events": report.events}
    if as_json:
        _print_json({**summary, "dry_run": dry_run})
        return
    verb = "Would delete" if dry_run else "Deleted"
    click.echo(
        f"{verb} {report.attempts} attempt log row(s), {report.deliveries} finished delivery(ies)"
        f" and {report.events} event(s) older than {older_than}."
    )


@cli.command()
@json_option
def status(as_json: bool) -> None:
    """Queue depths, scheduled retries, workers, outbox backlog and the oldest undelivered age."""
    report = system_status(get_state())
    if as_json:
        _print_json(report)
        return
    for section, values in report.items():
        if isinstance(values, dict):
            click.echo(f"{section}:")
            for key, value in values.items():
                shown = ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else value
                click.echo(f"  {key:<22} {shown}")
        else:
            click.echo(f"{section:<24} {values}")


@cli.group()
def token() -> None:
    """REST API bearer tokens (shown once, stored hashed)."""


@token.command("create")
@click.argument("name")
@click.option("--resource", "-r", "resources", multiple=True, help="An ACL resource it holds (repeatable).")
@click.option("--admin", is_flag=True, help="See and change every subscription.")
@json_option
def token_create(name: str, resources: tuple[str, ...], admin: bool, as_json: bool) -> None:
    """Create a token for the REST API and print it (the only time it is shown)."""
    session = get_state().db.session
    try:
        secret = create_token(session, name, resources=resources, admin=admin)
        session.commit()
    except ValueError as exc:
        session.rollback()
        raise click.ClickException(str(exc)) from None
    if as_json:
        _print_json({"name": name, "token": secret, "admin": admin, "resources": sorted(set(resources))})
        return
    click.echo(f"Token {name!r} created{' (admin)' if admin else ''}. Keep it safe; it is not shown again:")
    click.echo(secret)


@token.command("list")
@json_option
def token_list(as_json: bool) -> None:
    """List tokens (never the tokens themselves)."""
    rows = get_state().db.session.scalars(select(ApiToken).order_by(ApiToken.id)).all()
    listing = [
        {
            "id": row.id,
            "name": row.name,
            "admin": row.is_admin,
            "resources": json.loads(row.resources),
            "created_at": row.created_at.isoformat(),
            "revoked": row.revoked_at is not None,
        }
        for row in rows
    ]
    if as_json:
        _print_json(listing)
        return
    for row in listing:
        flags = ("admin " if row["admin"] else "") + ("REVOKED" if row["revoked"] else "")
        click.echo(f"{row['id']:>4}  {row['name']:<24} {flags:<14} {', '.join(row['resources'])}")


@token.command("revoke")
@click.argument("name_or_id")
def token_revoke(name_or_id: str) -> None:
    """Revoke a token; requests with it get 401 from now on."""
    session = get_state().db.session
    try:
        revoked = revoke_token(session, name_or_id)
        session.commit()
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Token {revoked.name!r} revoked")


@cli.group()
def db() -> None:
    """This package's tables (its own Alembic history and version table)."""


@db.command()
@click.option("--revision", default="head", show_default=True)
def upgrade(revision: str) -> None:
    """Create or upgrade the tables."""
    engine = get_state().db.engine
    migrate.upgrade(engine, revision)
    click.echo(f"Database at revision {migrate.current_revision(engine)}")


@db.command()
@click.argument("revision")
def downgrade(revision: str) -> None:
    """Downgrade the tables to REVISION (``base`` drops them, and their data)."""
    engine = get_state().db.engine
    migrate.downgrade(engine, revision)
    click.echo(f"Database at revision {migrate.current_revision(engine) or 'base'}")


@db.command("pattern-index")
@click.option("--drop", is_flag=True, help="Drop the index instead (payload patterns then read the bodies).")
def pattern_index(drop: bool) -> None:
    """Build (or drop) PostgreSQL's trigram index of the delivered bodies, so payload patterns such
    as data.customer.email:c7@* are looked up, not read from every body. It makes logging each
    attempt dearer (see the performance guide); delivery goes on while it is built."""
    engine = get_state().db.engine
    try:
        if drop:
            click.echo("Pattern index dropped" if drop_pattern_index(engine) else "There was no pattern index")
            return
        click.echo("Building the pattern index (delivery goes on meanwhile)...")
        click.echo(f"Pattern index built in {create_pattern_index(engine):.1f} s: payload patterns are looked up")
    except IndexUnavailable as exc:
        raise click.ClickException(str(exc)) from None


@db.command()
def current() -> None:
    """Show the current and the latest revision."""
    engine = get_state().db.engine
    click.echo(f"current: {migrate.current_revision(engine) or 'none'}  head: {migrate.head_revision()}")
    if migrate.current_revision(engine) != migrate.head_revision():
        sys.exit(1)
