"""Notifiers: the protocol, the result type, the built-in HTTP, EventBridge and SQS notifiers, and
the recording :class:`MemoryNotifier` for tests."""

from flask_async_events.notifiers.base import BatchNotifier, Message, Notifier, NotifyResult, Recipient
from flask_async_events.notifiers.eventbridge import EventBridgeNotifier
from flask_async_events.notifiers.http import HttpNotifier
from flask_async_events.notifiers.memory import MemoryNotifier, Sent
from flask_async_events.notifiers.sqs import SqsNotifier

__all__ = [
    "BatchNotifier",
    "EventBridgeNotifier",
    "HttpNotifier",
    "MemoryNotifier",
    "Message",
    "Notifier",
    "NotifyResult",
    "Recipient",
    "Sent",
    "SqsNotifier",
]
