"""Per-app state, kept in ``app.extensions["async_events"]`` (the extension object keeps no app)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from flask import Flask, Request, current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Session, scoped_session

from flask_async_events.config import Settings
from flask_async_events.crypto import SecretBox
from flask_async_events.definitions import EventRegistry
from flask_async_events.dialects import has_row_locks
from flask_async_events.notifiers.base import Notifier
from flask_async_events.nudger import Nudger
from flask_async_events.queues import Queues

if TYPE_CHECKING:
    from flask_async_events.dispatcher import Dispatcher

log = logging.getLogger("flask_async_events")

EXTENSION_KEY = "async_events"

# The host's ``db.session`` (a scoped session) or a plain session.
DbSession = Session | scoped_session[Any]

# Other names the seed and its sinks use for a notifier.
NOTIFIER_ALIASES = {"event_bridge": "eventbridge"}


@dataclass
class AppState:
    """Everything the jobs and commands of one app need."""

    settings: Settings
    db: SQLAlchemy
    definitions: EventRegistry
    queues: Queues
    box: SecretBox
    app_notifiers: dict[str, Notifier]  # built in, and from the entry-point group
    registered_notifiers: Mapping[str, Notifier] = field(default_factory=dict)  # register_notifier()
    # The host's @events.authorize hook, read on every request so it may be set after init_app.
    authorizer: Callable[[], Callable[[Request], Any] | None] = lambda: None
    _dispatcher: Dispatcher | None = field(default=None, repr=False)
    _nudger: Nudger | None = field(default=None, repr=False)

    def nudger(self) -> Nudger:
        """The thread that enqueues trigger jobs after commits, made on first publish."""
        if self._nudger is None:
            self._nudger = Nudger(partial(self.queues.announce, row_locks=has_row_locks(self.db.session)))
        return self._nudger

    def flush_nudges(self, timeout: float = 5.0) -> bool:
        """Wait until the trigger jobs of this process's commits are enqueued."""
        return self._nudger is None or self._nudger.flush(timeout)

    def dispatcher(self) -> Dispatcher:
        """The deliver jobs' sending and recording threads, made on first use (only workers need them)."""
        if self._dispatcher is None:
            from flask_async_events.dispatcher import Dispatcher

            self._dispatcher = Dispatcher(current_app._get_current_object(), self)  # type: ignore[attr-defined]
        return self._dispatcher

    def deliveries_busy(self) -> bool:
        """Whether sends are running or waiting, or results wait to be recorded."""
        return self._dispatcher is not None and self._dispatcher.busy()

    def drain_deliveries(self, timeout: float, *, release_waiting: bool = False) -> None:
        """Let the sends in flight end and their results be recorded (a worker that stops)."""
        if self._dispatcher is not None and not self._dispatcher.drain(timeout, release_waiting=release_waiting):
            log.warning(
                "Deliveries still in flight after %.0fs; their leases will hand them to another worker", timeout
            )

    def close(self) -> None:
        """Stop the delivery threads (tests, and apps that make many app objects)."""
        if self._dispatcher is not None:
            self._dispatcher.close(self.settings.connect_timeout + self.settings.timeout)
            self._dispatcher = None

    def notifier(self, name: str) -> Notifier | None:
        """The notifier for a subscription's ``metadata``, aliases included."""
        key = NOTIFIER_ALIASES.get(name.lower(), name.lower())
        return self.registered_notifiers.get(key) or self.app_notifiers.get(key)

    def notifier_names(self) -> list[str]:
        return sorted({*self.app_notifiers, *self.registered_notifiers})


def get_state(app: Flask | None = None) -> AppState:
    """The state of ``app`` (default: the current app); a clear error if the extension is missing."""
    target = app if app is not None else current_app
    try:
        state: AppState = target.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError(
            "flask-async-events is not set up on this app: call AsyncEvents(app) or events.init_app(app)"
        ) from None
    return state
