"""What an attempt's outcome means for its delivery: a pure decision, no I/O.

:func:`judge` turns one :class:`~flask_async_events.delivery.types.Outcome` into a
:class:`Verdict`: the delivery's next state (delivered, retrying at a time, dead, cancelled), what
the attempt said about its endpoint (:mod:`~flask_async_events.delivery.health`), and the signals
to send once it is recorded.
:func:`hand_back` is the verdict for a claim that was never started. Recording writes verdicts;
it decides nothing itself.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask_async_events import signals
from flask_async_events.config import Settings
from flask_async_events.delivery.health import Said, said
from flask_async_events.delivery.retry import due_at, next_delay
from flask_async_events.delivery.types import Claimed, Outcome
from flask_async_events.models import RESPONSE_EXCERPT, DeliveryState

Notice = tuple[Any, dict[str, Any]]  # a signal and what to send it with, after the commit
DEAD_REASON_LENGTH = 500


@dataclass(frozen=True)
class Verdict:
    """A delivery's next state after one outcome. ``attempted``: the attempt counts in
    ``attempt_count``; ``said``: what it says about the endpoint (its health reads this);
    ``dead_reason`` is set for a dead delivery; ``gone``: the recipient asked to be unsubscribed (410)."""

    state: str
    next_attempt_at: datetime
    attempted: bool
    round_attempts: int
    said: Said = Said.NOT_THE_ENDPOINT
    dead_reason: str | None = None
    gone: bool = False
    notices: tuple[Notice, ...] = ()


def judge(outcome: Outcome, now: datetime, settings: Settings, rng: random.Random | None = None) -> Verdict:
    """The verdict on one outcome, under the retry schedule of ``settings``."""
    item, result = outcome.item, outcome.result
    if outcome.cancelled:
        return Verdict(DeliveryState.CANCELLED, now, attempted=False, round_attempts=item.round_attempts)
    attempts_this_round = item.round_attempts + 1
    about = {"delivery_uuid": item.uuid, "event_name": item.event_name, "subscription_id": item.subscription_id}
    if result.success:
        succeeded = (signals.delivery_succeeded, {**about, "status_code": result.status_code})
        return Verdict(DeliveryState.DELIVERED, now, True, attempts_this_round, Said.SUCCEEDED, notices=(succeeded,))
    told = said(outcome)
    delay = None
    if result.retryable and not result.gone:
        delay = next_delay(
            settings.retry_schedule,
            attempts_this_round,
            jitter=settings.retry_jitter,
            retry_after=result.retry_after,
            retry_after_max=settings.retry_after_max,
            rng=rng,
        )
    failed = (signals.delivery_failed, {**about, "status_code": result.status_code, "will_retry": delay is not None})
    if delay is not None:
        return Verdict(DeliveryState.RETRYING, due_at(now, delay), True, attempts_this_round, told, notices=(failed,))
    reason = result.response_data[:DEAD_REASON_LENGTH] or (result.error_class or "failed")
    dead = (signals.delivery_dead_lettered, {**about, "reason": reason})
    return Verdict(
        DeliveryState.DEAD, now, True, attempts_this_round, told, reason, result.gone, notices=(failed, dead)
    )


def hand_back(item: Claimed, now: datetime, due: datetime | None = None) -> Verdict:
    """A claim never started: back to where it was, due now (or at ``due``: parked), nothing counted."""
    state = DeliveryState.RETRYING if item.round_attempts else DeliveryState.PENDING
    return Verdict(state, due or now, attempted=False, round_attempts=item.round_attempts)


def log_row(outcome: Outcome, now: datetime) -> dict[str, Any]:
    """The attempt log row of one outcome (a cancellation is logged too, as ``Cancelled``)."""
    item, result = outcome.item, outcome.result
    return {
        "uuid": item.uuid,
        "subscription_id": item.subscription_id,
        "delivery_id": item.id,
        "attempt": item.attempt_count + (0 if outcome.cancelled else 1),
        "success": result.success,
        "status_code": result.status_code,
        "duration_ms": outcome.duration_ms,
        "error_class": "Cancelled" if outcome.cancelled else result.error_class,
        "response_data": result.response_data[:RESPONSE_EXCERPT],
        "created": now,
        "serialized_data": None if outcome.cancelled else item.body,
    }
