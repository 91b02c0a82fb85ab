"""The RQ job functions. They take row ids only and run inside the app context that
``flask async-events worker`` pushes for every job."""

from __future__ import annotations

from flask_async_events import tracing
from flask_async_events.delivery import deliver as delivery
from flask_async_events.delivery import fanout
from flask_async_events.operations import background
from flask_async_events.operations import replay as replays
from flask_async_events.state import get_state


def trigger(event_ids: list[int]) -> int:
    """Resolve and fan out committed events (queue ``event.trigger``)."""
    with tracing.span("async_events.trigger", {"async_events.events": len(event_ids)}, kind="CONSUMER"):
        return fanout.trigger(get_state(), event_ids)


def deliver(delivery_ids: list[int]) -> int:
    """Send a batch of due deliveries (queues ``event.delivery`` and ``event.retry``)."""
    return delivery.deliver(get_state(), delivery_ids)


def replay_dead(delivery_id: int) -> bool:
    """Replay a dead delivery; what requeueing its entry in RQ's FailedJobRegistry runs."""
    return replays.replay_dead(get_state(), delivery_id)


def run_operation(operation_id: str) -> None:
    """Run a slice of a bulk operation started from the web (a recovery); it enqueues the next."""
    background.run_slice(get_state(), operation_id)
