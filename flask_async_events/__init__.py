"""flask-async-events: reliable, signed, asynchronous events (outbound webhooks) for Flask.

The names below load on first use, so a receiver can import ``flask_async_events.signing`` to
verify signatures without importing Flask, SQLAlchemy or RQ. Every error the package raises on
purpose is an :class:`AsyncEventsError` (the tree is drawn in :mod:`flask_async_events.errors`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flask_async_events.version import __version__

if TYPE_CHECKING:
    from flask_async_events.auth import Principal
    from flask_async_events.errors import (
        AsyncEventsError,
        AuthError,
        ConfigError,
        ForbiddenAddress,
        InvalidSignature,
        InvalidSubscription,
        NotAllowed,
        NotSetUp,
        QueryError,
        ReplayError,
    )
    from flask_async_events.extension import AsyncEvents
    from flask_async_events.notifiers.base import Message, Notifier, NotifyResult, Recipient
    from flask_async_events.notifiers.memory import MemoryNotifier
    from flask_async_events.signals import (
        delivery_dead_lettered,
        delivery_failed,
        delivery_succeeded,
        event_published,
        subscription_disabled,
    )

_SOURCES = {
    "AsyncEvents": "flask_async_events.extension",
    "AsyncEventsError": "flask_async_events.errors",
    "AuthError": "flask_async_events.errors",
    "ConfigError": "flask_async_events.errors",
    "ForbiddenAddress": "flask_async_events.errors",
    "InvalidSignature": "flask_async_events.errors",
    "InvalidSubscription": "flask_async_events.errors",
    "NotAllowed": "flask_async_events.errors",
    "NotSetUp": "flask_async_events.errors",
    "QueryError": "flask_async_events.errors",
    "ReplayError": "flask_async_events.errors",
    "MemoryNotifier": "flask_async_events.notifiers.memory",
    "Principal": "flask_async_events.auth",
    "Message": "flask_async_events.notifiers.base",
    "Notifier": "flask_async_events.notifiers.base",
    "NotifyResult": "flask_async_events.notifiers.base",
    "Recipient": "flask_async_events.notifiers.base",
    "delivery_dead_lettered": "flask_async_events.signals",
    "delivery_failed": "flask_async_events.signals",
    "delivery_succeeded": "flask_async_events.signals",
    "event_published": "flask_async_events.signals",
    "subscription_disabled": "flask_async_events.signals",
}

__all__ = [
    "AsyncEvents",
    "AsyncEventsError",
    "AuthError",
    "ConfigError",
    "ForbiddenAddress",
    "InvalidSignature",
    "InvalidSubscription",
    "MemoryNotifier",
    "Message",
    "NotAllowed",
    "NotSetUp",
    "Notifier",
    "NotifyResult",
    "Principal",
    "QueryError",
    "Recipient",
    "ReplayError",
    "__version__",
    "delivery_dead_lettered",
    "delivery_failed",
    "delivery_succeeded",
    "event_published",
    "subscription_disabled",
]


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module 'flask_async_events' has no attribute {name!r}")
    value = getattr(importlib.import_module(source), name)
    globals()[name] = value
    return value
