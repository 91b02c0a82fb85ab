"""Per-app state, kept in ``app.extensions["async_events"]`` (the extension object keeps no app).

:class:`AppState` holds the parts of one app; it drives none of them. The nudger is made at
``init_app`` and driven by :mod:`~flask_async_events.delivery.outbox`; a worker's dispatcher is made
by its first deliver job (:mod:`~flask_async_events.delivery.dispatcher`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, Request, current_app
from flask_sqlalchemy import SQLAlchemy

from flask_async_events.config import NOTIFIER_ALIASES, Settings
from flask_async_events.crypto import SecretBox
from flask_async_events.definitions import EventRegistry
from flask_async_events.errors import NotSetUp
from flask_async_events.notifiers.base import Notifier

if TYPE_CHECKING:  # the parts' types only: state sits below the stages that make them
    from flask_async_events.delivery.dispatcher import Dispatcher
    from flask_async_events.nudger import Nudger
    from flask_async_events.queues import Queues

EXTENSION_KEY = "async_events"


@dataclass
class AppState:
    """Everything the jobs and commands of one app need."""

    settings: Settings
    db: SQLAlchemy
    definitions: EventRegistry
    queues: Queues
    box: SecretBox
    nudger: Nudger  # enqueues trigger jobs after commits, off the request path
    app_notifiers: dict[str, Notifier]  # built in, and from the entry-point group
    registered_notifiers: Mapping[str, Notifier] = field(default_factory=dict)  # register_notifier()
    # The host's @events.authorize hook, read on every request so it may be set after init_app.
    authorizer: Callable[[], Callable[[Request], Any] | None] = lambda: None
    dispatcher: Dispatcher | None = None  # a worker's sending and recording threads, made by its first deliver job

    def notifier(self, name: str) -> Notifier | None:
        """The notifier for a subscription's ``metadata``, aliases included."""
        key = self.notifier_key(name)
        return self.registered_notifiers.get(key) or self.app_notifiers.get(key)

    def notifier_key(self, name: str) -> str:
        """The name a notifier is registered under, for a subscription's ``metadata`` (an alias, say)."""
        return NOTIFIER_ALIASES.get(name.lower(), name.lower())

    def notifier_names(self) -> list[str]:
        return sorted({*self.app_notifiers, *self.registered_notifiers})


def get_state(app: Flask | None = None) -> AppState:
    """The state of ``app`` (default: the current app); a clear error if the extension is missing."""
    target = app if app is not None else current_app
    try:
        state: AppState = target.extensions[EXTENSION_KEY]
    except KeyError:
        raise NotSetUp(
            "flask-async-events is not set up on this app: call AsyncEvents(app) or events.init_app(app)"
        ) from None
    return state
