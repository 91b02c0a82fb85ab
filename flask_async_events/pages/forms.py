"""Subscription forms as the operations take them: blank is "none", numbers are numbers, and a
value that is neither raises ``InvalidSubscription`` naming the field, as the REST API's do."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask_async_events.errors import InvalidSubscription
from flask_async_events.operations.headers import parse_header_lines

CREATE_FIELDS = ("event_name", "recipient_url", "metadata", "store_id", "rate_limit", "filter", "headers")
EDIT_FIELDS = ("recipient_url", "metadata", "rate_limit")


def _rate_limit(raw: str) -> float | None:
    if not raw.strip():
        return None
    try:
        return float(raw)
    except ValueError:
        message = f"rate_limit must be a number of deliveries per second or blank, got {raw!r}"
        raise InvalidSubscription(message) from None


def _store_id(raw: str) -> int:
    if not raw.strip():
        return 0
    if not raw.strip().isdecimal() or len(raw.strip()) > 5:
        raise InvalidSubscription(f"store_id must be a whole number from 0 to 65535, got {raw!r}")
    return int(raw)


def subscription_fields(form: Mapping[str, str]) -> dict[str, Any]:
    """The create form's fields, as ``create_subscription`` takes them."""
    return {
        "event_name": form.get("event_name", "").strip(),
        "recipient_url": form.get("recipient_url", "").strip(),
        "metadata": form.get("metadata", "http").strip() or "http",
        "store_id": _store_id(form.get("store_id", "")),
        "rate_limit": _rate_limit(form.get("rate_limit", "")),
        "filter": form.get("filter", "").strip() or None,
        "headers": parse_header_lines(form.get("headers", "").splitlines()),
    }


def subscription_changes(form: Mapping[str, str]) -> dict[str, Any]:
    """The edit form's fields that were sent, as ``update_subscription`` takes them."""
    changes: dict[str, Any] = {}
    if "recipient_url" in form:
        changes["recipient_url"] = form["recipient_url"].strip()
    if "metadata" in form:
        changes["metadata"] = form["metadata"].strip()
    if "rate_limit" in form:
        changes["rate_limit"] = _rate_limit(form["rate_limit"])
    return changes
