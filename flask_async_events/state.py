"""Per-app state, kept in ``app.extensions["async_events"]`` (the extension object keeps no app)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Request, current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Session, scoped_session

from flask_async_events.config import Settings
from flask_async_events.crypto import SecretBox
from flask_async_events.definitions import EventRegistry
from flask_async_events.notifiers.base import Notifier
from flask_async_events.queues import Queues
from flask_async_events.sender import Sender

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
    _sender: Sender | None = field(default=None, repr=False)

    def sender(self) -> Sender:
        """The deliver jobs' thread pool, made on first use (only workers need it)."""
        if self._sender is None:
            self._sender = Sender(self.settings.delivery_threads, self.settings.endpoint_concurrency)
        return self._sender

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
