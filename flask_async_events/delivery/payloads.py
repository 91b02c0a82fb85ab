"""Resolving an event's payload (calling its service) and rendering the exact body that is sent.

The body is rendered once per event and stored, so every attempt, retry and replay sends the same
bytes: ``{"data": <payload>}`` (the Magento module's 3.x form) or a CloudEvents 1.0 structured event (4.x).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import uuid
from typing import Any

from flask_async_events.definitions import EventRegistry
from flask_async_events.delivery.types import PublishedEvent
from flask_async_events.errors import InvalidPayload, UnknownEvent

CONTENT_TYPES = {"data": "application/json", "cloudevents": "application/cloudevents+json"}


def _encode_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    raise InvalidPayload(f"the service returned a {type(value).__name__}, which is not JSON-serialisable")


def to_json(value: Any) -> str:
    """Compact JSON, with dates, decimals, UUIDs, enums, dataclasses and ``to_dict()`` handled."""
    return json.dumps(value, default=_encode_default, separators=(",", ":"), ensure_ascii=False)


def render_body(payload: Any, event: PublishedEvent, payload_format: str) -> str:
    """The body for ``payload`` in the configured format."""
    if payload_format == "cloudevents":
        created = event.created_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        envelope = {
            "specversion": "1.0",
            "id": event.uuid,
            "source": str(event.store_id),
            "type": event.event_name,
            "datacontenttype": "application/json",
            "time": created,
            "data": payload,
        }
        return to_json(envelope)
    return to_json({"data": payload})


def resolve_body(definitions: EventRegistry, event: PublishedEvent, payload_format: str) -> str:
    """Call the event's service with the published arguments and render the body; raises on failure."""
    definition = definitions.get(event.event_name)
    if definition is None:
        raise UnknownEvent(f"event {event.event_name!r} is no longer defined")
    arguments = json.loads(event.arguments)
    payload = definition.service(**definition.bind(arguments))
    return render_body(payload, event, payload_format)


def describe_error(exc: BaseException) -> str:
    """A one-line description of why resolving a payload failed, for the attempt log."""
    return f"Resolving the payload failed: {type(exc).__name__}: {exc}"
