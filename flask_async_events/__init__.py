"""flask-async-events: reliable, signed, asynchronous events (outbound webhooks) for Flask.

The names below load on first use, so a receiver can import ``flask_async_events.signing`` to
verify signatures without importing Flask, SQLAlchemy or RQ. Every error the package raises on
purpose is an :class:`AsyncEventsError` (the tree is drawn in :mod:`flask_async_events.errors`,
which imports nothing, and every one of them is here).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flask_async_events import errors as _errors
from flask_async_events.errors import *  # noqa: F403 - the whole error tree
from flask_async_events.version import __version__

if TYPE_CHECKING:
    from flask_async_events.auth import Principal as Principal
    from flask_async_events.extension import AsyncEvents as AsyncEvents
    from flask_async_events.notifiers.base import Message as Message
    from flask_async_events.notifiers.base import Notifier as Notifier
    from flask_async_events.notifiers.base import NotifyResult as NotifyResult
    from flask_async_events.notifiers.base import Recipient as Recipient
    from flask_async_events.notifiers.memory import MemoryNotifier as MemoryNotifier
    from flask_async_events.signals import delivery_dead_lettered as delivery_dead_lettered
    from flask_async_events.signals import delivery_failed as delivery_failed
    from flask_async_events.signals import delivery_succeeded as delivery_succeeded
    from flask_async_events.signals import event_published as event_published
    from flask_async_events.signals import subscription_disabled as subscription_disabled

# What loads on first use, and from where (the imports above are for type checkers only).
_LAZY = {
    "AsyncEvents": "flask_async_events.extension",
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

__all__ = ["__version__", *_errors.__all__, *_LAZY]


def __getattr__(name: str) -> Any:
    source = _LAZY.get(name)
    if source is None:
        raise AttributeError(f"module 'flask_async_events' has no attribute {name!r}")
    value = getattr(importlib.import_module(source), name)
    globals()[name] = value
    return value
