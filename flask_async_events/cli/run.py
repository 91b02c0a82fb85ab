"""Running the system: ``worker``, ``publish``, ``list`` (the events) and ``status``."""

from __future__ import annotations

import json
from typing import Any

import click
from flask import current_app

from flask_async_events.cli.common import NUDGE_WAIT, cli, json_option, print_json
from flask_async_events.config import NOTIFIER_ALIASES
from flask_async_events.delivery.outbox import publish_event
from flask_async_events.operations.status import system_status
from flask_async_events.queues import QUEUE_NAMES
from flask_async_events.state import get_state
from flask_async_events.worker.logs import FORMATS, configure_worker_logging
from flask_async_events.worker.rq_worker import run_worker


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
        print_json({"events": events, "notifiers": notifiers, "aliases": aliases})
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
@json_option
def status(as_json: bool) -> None:
    """Queue depths, scheduled retries, workers, outbox backlog and the oldest undelivered age."""
    report = system_status(get_state())
    if as_json:
        print_json(report)
        return
    for section, values in report.items():
        if isinstance(values, dict):
            click.echo(f"{section}:")
            for key, value in values.items():
                shown = ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else value
                click.echo(f"  {key:<22} {shown}")
        else:
            click.echo(f"{section:<24} {values}")
