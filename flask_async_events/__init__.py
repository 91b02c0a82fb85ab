"""flask-async-events: reliable, signed, asynchronous events (outbound webhooks) for Flask."""

from flask_async_events.auth import Principal
from flask_async_events.extension import AsyncEvents
from flask_async_events.notifiers.base import Message, Notifier, NotifyResult, Recipient
from flask_async_events.signals import (
    delivery_dead_lettered,
    delivery_failed,
    delivery_succeeded,
    event_published,
    subscription_disabled,
)
from flask_async_events.version import __version__

__all__ = [
    "AsyncEvents",
    "Message",
    "Notifier",
    "NotifyResult",
    "Principal",
    "Recipient",
    "__version__",
    "delivery_dead_lettered",
    "delivery_failed",
    "delivery_succeeded",
    "event_published",
    "subscription_disabled",
]
