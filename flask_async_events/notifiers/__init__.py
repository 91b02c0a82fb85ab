"""Notifiers: the protocol, the result type and the built-in HTTP notifier."""

from flask_async_events.notifiers.base import Message, Notifier, NotifyResult, Recipient
from flask_async_events.notifiers.http import HttpNotifier

__all__ = ["HttpNotifier", "Message", "Notifier", "NotifyResult", "Recipient"]
