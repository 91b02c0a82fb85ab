"""Deliveries and their log: ``trace``, ``replay``, ``dead-letters``, ``recover``, ``logs`` and ``prune``."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from functools import partial

import click

from flask_async_events.auth import Principal
from flask_async_events.bounds import parse_duration, parse_moment
from flask_async_events.cli.common import T, cli, json_option, one_subscription, print_json
from flask_async_events.models import DeliveryAttempt, utcnow
from flask_async_events.operations.missed import count_unreceived, recover_missed
from flask_async_events.operations.replay import ReplayError, count_dead, recover, replay, retry_dead
from flask_async_events.operations.retention import DEFAULT_BATCH, count_prunable, prune
from flask_async_events.operations.search import QueryError, attempts_query
from flask_async_events.operations.status import dead_letters
from flask_async_events.operations.trace import attempt_dict, load_trace
from flask_async_events.state import get_state


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
        print_json({**report, "attempts": attempts})
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
            print_json(rows)
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
    subscription = one_subscription(subscription_id)  # before anything is replayed
    if missed and not subscription.status:
        raise click.ClickException(
            f"subscription {subscription_id} is disabled; enable it before recovering its deliveries"
            f" (flask async-events enable {subscription_id})"
        )
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
    examined = count_unreceived(state, subscription, since_time)
    found = _with_progress(
        "Looking for missed events",
        examined,
        lambda progress: recover_missed(state, subscription, since_time, dry_run=dry_run, progress=progress),
        as_json,
    )
    replayed = count if dry_run else len(uuids)
    if as_json:
        print_json({"count": replayed, "missed": len(found), "dry_run": dry_run, "uuids": uuids + found})
        return
    _report_replayed(replayed, uuids, dry_run, as_json)
    verb = "Would deliver" if dry_run else "Delivering"
    click.echo(f"{verb} {len(found)} missed event(s), of {examined} published since then that it never received.")


def _report_replayed(count: int, uuids: list[str], dry_run: bool, as_json: bool) -> None:
    if as_json:
        print_json({"count": count, "uuids": uuids, "dry_run": dry_run})
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
        print_json(found)
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
        print_json({**summary, "dry_run": dry_run})
        return
    verb = "Would delete" if dry_run else "Deleted"
    click.echo(
        f"{verb} {report.attempts} attempt log row(s), {report.deliveries} finished delivery(ies)"
        f" and {report.events} event(s) older than {older_than}."
    )
