"""Notifiers: the protocol, the result type and the built-in HTTP and EventBridge notifiers."""

from flask_async_events.notifiers.base import BatchNotifier, Message, Notifier, NotifyResult, Recipient
from flask_async_events.notifiers.eventbridge import EventBridgeNotifier
from flask_async_events.notifiers.http import HttpNotifier

__all__ = ["BatchNotifier", "EventBridgeNotifier", "HttpNotifier", "Message", "Notifier", "NotifyResult", "Recipient"]
