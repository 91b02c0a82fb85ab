"""Recording what happened to claimed deliveries, in one transaction per batch of results: a log row
per attempt, and per delivery ``delivered``, ``retrying`` at a time, ``dead`` or ``cancelled``, or
handed back untouched if it was never started. Only the holder of a claim's token may write its
outcome (a fence against a second worker after a lease ran out). Retries are scheduled in RQ only
after the commit.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import Boolean, Integer, Table, bindparam, case, func, insert, null, select

from flask_async_events import signals
from flask_async_events.models import Delivery, DeliveryAttempt, DeliveryState, Subscription, UTCDateTime, utcnow
from flask_async_events.notifiers.base import NotifyResult
from flask_async_events.notifiers.http import RESPONSE_EXCERPT
from flask_async_events.retry import next_delay
from flask_async_events.state import AppState
from flask_async_events.subscriptions import disable_subscriptions

log = logging.getLogger("flask_async_events")

GONE_REASON = "The recipient answered 410 Gone"
Notice = tuple[Any, dict[str, Any]]  # a signal and what to send it with, after the commit


@dataclass
class Claimed:
    """A claimed delivery with what sending it needs, read before the claim's commit."""

    id: int
    uuid: str
    claim_token: str
    attempt_count: int
    round_attempts: int
    event_id: int
    event_uuid: str
    event_name: str
    body: str | None
    created_at: datetime
    subscription_id: int
    pattern: str
    recipient_url: str
    verification_token: str
    notifier: str
    store_id: int
    enabled: bool

    @property
    def attempt_key(self) -> tuple[int, int]:
        """This claim's attempt: the delivery and the attempt's number (its journal key)."""
        return self.id, self.attempt_count + 1


@dataclass
class Outcome:
    """How one attempt ended (or that the delivery was cancelled without one). An ``interrupted``
    attempt was cut short by a lost worker: it counts as an attempt, not against the endpoint."""

    item: Claimed
    result: NotifyResult
    duration_ms: int | None = None
    cancelled: bool = False
    interrupted: bool = False


def _due_at(now: datetime, delay: float) -> datetime:
    """Whole seconds, rounded up: RQ's scheduler keeps whole seconds, and must never run early."""
    if delay <= 0:
        return now
    due = now + timedelta(seconds=delay)
    return datetime.fromtimestamp(math.ceil(due.timestamp()), tz=due.tzinfo)


_DELIVERY = cast(Table, Delivery.__table__)
_UPDATE_DELIVERY = (
    _DELIVERY.update()
    .where(_DELIVERY.c.id == bindparam("b_id"), _DELIVERY.c.claim_token == bindparam("b_token"))
    .values(
        state=bindparam("b_state"),
        next_attempt_at=bindparam("b_next"),
        attempt_count=_DELIVERY.c.attempt_count + bindparam("b_inc"),
        round_attempts=bindparam("b_round"),
        claim_token=None,
        lease_until=None,
        updated_at=bindparam("b_now"),
    )
)
_SUBSCRIBER = cast(Table, Subscription.__table__)
# One row per endpoint, in id order: recording threads of several workers lock the same rows in
# the same order, so they never deadlock.
_NOW = bindparam("b_now", type_=UTCDateTime())
_SUCCEEDED = bindparam("b_ok", type_=Boolean())
_HEALTH = (
    _SUBSCRIBER.update()
    .where(_SUBSCRIBER.c.subscription_id == bindparam("b_sid"))
    .values(
        consecutive_failures=case(
            (_SUCCEEDED, 0), else_=_SUBSCRIBER.c.consecutive_failures + bindparam("b_n", type_=Integer())
        ),
        failing_since=case((_SUCCEEDED, null()), else_=func.coalesce(_SUBSCRIBER.c.failing_since, _NOW)),
        last_success_at=case((_SUCCEEDED, _NOW), else_=_SUBSCRIBER.c.last_success_at),
    )
)


def record(state: AppState, outcomes: list[Outcome], released: list[Claimed]) -> None:
    """Write ``outcomes`` and hand back ``released`` (never started), then tell RQ and signal."""
    settings = state.settings
    session = state.db.session
    now = utcnow()
    logs: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    retries: dict[datetime, list[int]] = defaultdict(list)
    dead: list[tuple[int, str, str]] = []
    succeeded: set[int] = set()
    failures: dict[int, int] = defaultdict(int)
    gone: set[int] = set()
    notices: list[Notice] = []

    for outcome in outcomes:
        item, result = outcome.item, outcome.result
        base = {"b_id": item.id, "b_token": item.claim_token, "b_now": now, "b_next": now}
        logs.append(
            {
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
        )
        if outcome.cancelled:
            updates.append({**base, "b_state": DeliveryState.CANCELLED, "b_inc": 0, "b_round": item.round_attempts})
            continue
        attempts_this_round = item.round_attempts + 1
        update_row = {**base, "b_inc": 1, "b_round": attempts_this_round}
        event_info = {"delivery_id": item.uuid, "event_name": item.event_name, "subscription_id": item.subscription_id}
        if result.success:
            succeeded.add(item.subscription_id)
            updates.append({**update_row, "b_state": DeliveryState.DELIVERED})
            notices.append((signals.delivery_succeeded, {**event_info, "status_code": result.status_code}))
            continue
        if not outcome.interrupted:
            failures[item.subscription_id] += 1
        if result.gone:
            gone.add(item.subscription_id)
        delay = None
        if result.retryable and not result.gone:
            delay = next_delay(
                settings.retry_schedule,
                attempts_this_round,
                jitter=settings.retry_jitter,
                retry_after=result.retry_after,
                retry_after_max=settings.retry_after_max,
            )
        notices.append(
            (
                signals.delivery_failed,
                {**event_info, "status_code": result.status_code, "will_retry": delay is not None},
            )
        )
        if delay is None:
            reason = result.response_data[:500] or (result.error_class or "failed")
            dead.append((item.id, item.uuid, reason))
            updates.append({**update_row, "b_state": DeliveryState.DEAD})
            notices.append((signals.delivery_dead_lettered, {**event_info, "reason": reason}))
        else:
            due = _due_at(now, delay)
            retries[due].append(item.id)
            updates.append({**update_row, "b_state": DeliveryState.RETRYING, "b_next": due})

    for item in released:  # never started: hand back untouched, due now
        state_name = DeliveryState.RETRYING if item.round_attempts else DeliveryState.PENDING
        updates.append(
            {
                "b_id": item.id,
                "b_token": item.claim_token,
                "b_now": now,
                "b_next": now,
                "b_state": state_name,
                "b_inc": 0,
                "b_round": item.round_attempts,
            }
        )

    if logs:
        session.execute(insert(DeliveryAttempt), logs)
    if updates:
        session.execute(_UPDATE_DELIVERY, updates)
    stale = _record_health(state, now, succeeded, failures)
    reasons = {subscription_id: _stale_reason(settings.disable_after) for subscription_id in stale - gone}
    reasons.update(dict.fromkeys(gone, GONE_REASON))
    _disable(state, reasons, now, notices)
    session.commit()

    _after_commit(state, now, retries, dead, [item.id for item in released])
    _send_signals(notices)


def _disable(
    state: AppState, reasons: dict[int, str], now: datetime, notices: list[tuple[Any, dict[str, Any]]]
) -> None:
    """Disable subscriptions (their open deliveries are cancelled), a log line per reason and a
    ``subscription_disabled`` signal each, sent after the commit."""
    by_reason: dict[str, list[int]] = defaultdict(list)
    for subscription_id, reason in reasons.items():
        by_reason[reason].append(subscription_id)
    for reason, subscription_ids in by_reason.items():
        disable_subscriptions(state.db.session, subscription_ids, reason, now=now)
        log.warning("Disabled subscription(s) %s: %s", ", ".join(map(str, sorted(subscription_ids))), reason)
    notices.extend(
        (signals.subscription_disabled, {"subscription_id": subscription_id, "reason": reason})
        for subscription_id, reason in reasons.items()
    )


def _send_signals(notices: list[Notice]) -> None:
    """Signal what was recorded. A receiver that fails is logged: it must not undo the record."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    for signal, payload in notices:
        if not signal.receivers:
            continue
        try:
            signal.send(app, **payload)
        except Exception:  # a receiver is the host's code
            log.exception("A receiver of %s failed", signal.name)


def _record_health(state: AppState, now: datetime, succeeded: set[int], failures: dict[int, int]) -> set[int]:
    """Track each endpoint's health: a success resets it, failures count up from the first.
    Return the enabled subscriptions that have now failed, without a success, for longer than
    ``ASYNC_EVENTS_DISABLE_AFTER`` (0: never)."""
    session = state.db.session
    touched = sorted({*succeeded, *failures})
    if not touched:
        return set()
    session.execute(
        _HEALTH,
        [{"b_sid": sid, "b_ok": sid in succeeded, "b_n": failures.get(sid, 0), "b_now": now} for sid in touched],
    )
    failing = [sid for sid in touched if sid not in succeeded]
    if not failing:
        return set()
    window = state.settings.disable_after
    if not window:
        return set()
    return set(
        session.scalars(
            select(Subscription.subscription_id).where(
                Subscription.subscription_id.in_(failing),
                Subscription.status.is_(True),
                Subscription.failing_since <= now - timedelta(seconds=window),
            )
        )
    )


def _stale_reason(window: float) -> str:
    days, hours = window / 86400, window / 3600
    span = f"{days:g} days" if days >= 1 else f"{hours:g} hours" if hours >= 1 else f"{window:g} seconds"
    return f"No successful delivery for {span}"


def _after_commit(
    state: AppState,
    now: datetime,
    retries: dict[datetime, list[int]],
    dead: list[tuple[int, str, str]],
    released: list[int],
) -> None:
    """Tell RQ what the database now says. If Redis fails here, maintenance catches up from the rows."""
    try:
        state.queues.schedule_deliveries(retries, now)
        state.queues.record_dead_letters(dead)
        state.queues.enqueue_deliveries(released)
    except RedisError as exc:
        log.warning("Could not schedule follow-up jobs (%s); maintenance will re-enqueue them", exc)
