"""What one attempt reports: a log line and the end of its trace span.

One log line per attempt, in delivery terms: which event went where, with what answer, how long it
took, and what happens next (delivered / retry at T / dead). The line names the endpoint by its host
only (a URL's path and query can hold credentials); a secret or a custom header value is never in it.

Each record also carries the same facts as fields (``record.delivery``), which the JSON log format
writes as keys, so a log shipper can search by delivery, subscription or outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from flask_async_events import tracing
from flask_async_events.delivery.circuits import endpoint_key
from flask_async_events.delivery.types import Claimed, Outcome
from flask_async_events.delivery.verdicts import Verdict
from flask_async_events.models import DeliveryState

REASON_CHARS = 200  # of what a receiver answered, in a dead or cancelled attempt's line
log = logging.getLogger("flask_async_events.attempts")


def _about(item: Claimed) -> dict[str, str | int]:
    """Which attempt this is: never a secret, a header value or the URL's path."""
    return {
        "event": item.event_name,
        "event_uuid": item.event_uuid,
        "delivery_uuid": item.uuid,
        "subscription_id": item.subscription_id,
        "endpoint": endpoint_key(item.recipient_url) or item.notifier,
        "attempt": item.attempt_count + 1,
    }


def attempt_facts(outcome: Outcome, verdict: Verdict) -> dict[str, Any]:
    """What one attempt's line says, as fields."""
    item, result = outcome.item, outcome.result
    if outcome.cancelled:
        next_step = "cancelled"
    elif verdict.state == DeliveryState.DELIVERED:
        next_step = "delivered"
    elif verdict.state == DeliveryState.RETRYING:
        next_step = "retry"
    else:
        next_step = "dead"
    facts: dict[str, Any] = {
        "outcome": next_step,
        **_about(item),
        "status": result.status_code,
        "error": None if result.success else result.error_class,
        "duration_ms": outcome.duration_ms,
    }
    if next_step == "retry":
        facts["retry_at"] = verdict.next_attempt_at.isoformat(timespec="seconds")
    if next_step in ("dead", "cancelled"):
        facts["reason"] = one_line(verdict.dead_reason or result.response_data or "", REASON_CHARS) or None
    return facts


def one_line(text: str, most: int) -> str:
    """What a receiver sent, as part of one log line: its whitespace, line breaks included, made
    single spaces, and cut to ``most`` characters (an HTML error page is not five lines of the log)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= most else flat[: most - 1] + "…"


def attempt_line(facts: dict[str, Any]) -> str:
    """``delivered sales.order.created to https://shop.example:443 (subscription 7, delivery 3f…): 200 in 35 ms``."""
    answer = facts["status"] or facts["error"] or "no answer"
    took = f" in {facts['duration_ms']} ms" if facts["duration_ms"] is not None else ""
    head = (
        f"{facts['outcome']} {facts['event']} to {facts['endpoint']} (subscription {facts['subscription_id']}, "
        f"delivery {facts['delivery_uuid']}, attempt {facts['attempt']})"
    )
    if facts["outcome"] == "cancelled":
        return f"{head}: {facts.get('reason') or 'cancelled'}"
    line = f"{head}: {answer}{took}"
    if facts["outcome"] == "retry":
        return f"{line}; retry at {facts['retry_at']}"
    if facts["outcome"] == "dead":
        return f"{line}; dead: {facts['reason']}" if facts.get("reason") else f"{line}; dead"
    return line


def span_attributes(item: Claimed) -> dict[str, str | int]:
    """What an attempt's span says from its start."""
    return {f"async_events.{key}": value for key, value in _about(item).items()}


def _span_outcome(facts: dict[str, Any]) -> dict[str, Any]:
    return {
        "async_events.outcome": facts["outcome"],
        "http.response.status_code": facts["status"],
        "async_events.error": facts["error"],
        "async_events.duration_ms": facts["duration_ms"],
        "async_events.retry_at": facts.get("retry_at"),
    }


def report_attempts(judged: Iterable[tuple[Outcome, Verdict]], unsent: Iterable[Claimed] = ()) -> None:
    """One INFO line per attempt, and the end of its span; ``unsent`` (handed back, held) end theirs
    too. Nothing is built when INFO is not logged and there is no span."""
    logging_on = log.isEnabledFor(logging.INFO)
    for outcome, verdict in judged:
        attempt = outcome.item.span
        if not logging_on and attempt is None:
            continue
        facts = attempt_facts(outcome, verdict)
        if logging_on:
            log.info("%s", attempt_line(facts), extra={"delivery": facts})
        if attempt is not None:
            outcome.item.span = None
            tracing.end_attempt(attempt, _span_outcome(facts), failed=facts["outcome"] in ("retry", "dead"))
    for item in unsent:
        if item.span is not None:
            tracing.end_attempt(item.span, {"async_events.outcome": "held back"}, failed=False)
            item.span = None
