"""The ``async-events`` command group and what its commands share: ``--json`` and its printing."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import click
from flask.cli import AppGroup

from flask_async_events.models import Subscription
from flask_async_events.state import get_state

cli = AppGroup("async-events", help="Asynchronous events: workers, publishing, subscriptions, operations.")

NUDGE_WAIT = 5.0  # seconds a command waits for its trigger jobs to reach Redis

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


T = TypeVar("T")


def print_json(value: Any) -> None:
    """A command's answer as JSON, for scripts."""
    click.echo(json.dumps(value, indent=2, default=str))


def one_subscription(subscription_id: int) -> Subscription:
    """The subscription with this id, or a clear error."""
    subscription = get_state().db.session.get(Subscription, subscription_id)
    if subscription is None or subscription.deleted_at is not None:
        raise click.ClickException(f"no subscription {subscription_id} (flask async-events subscriptions lists them)")
    return subscription
