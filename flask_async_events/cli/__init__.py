"""``flask async-events ...``: run workers and operate the system from a shell.

One module per domain, each adding its commands to the one group, :data:`cli`: running the
system (:mod:`.run`), subscriptions (:mod:`.subscriptions`), deliveries and their log
(:mod:`.deliveries`), API tokens (:mod:`.tokens`) and the database (:mod:`.database`). Every
command goes through :mod:`flask_async_events.operations`, as the REST API and the admin pages do.
"""

from flask_async_events.cli import database, deliveries, run, subscriptions, tokens
from flask_async_events.cli.common import cli

__all__ = ["cli", "database", "deliveries", "run", "subscriptions", "tokens"]
