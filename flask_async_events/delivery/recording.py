"""Recording what happened to claimed deliveries, in one transaction per batch of results: a log row
per attempt, and per delivery the state its verdict (:mod:`~flask_async_events.delivery.verdicts`)
names, or handed back untouched if it was never started. Only the holder of a claim's token may
write its outcome (a fence against a second worker after a lease ran out). Endpoint health is
updated here too, and a subscription whose endpoint is gone or stale is disabled in the same
transaction. Retries are scheduled in RQ only after the commit.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any, cast

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import Boolean, Integer, Table, bindparam, case, func, null, select, text
from sqlalchemy.exc import SQLAlchemyError

from flask_async_events import signals
from flask_async_events.delivery.attempt_log import report_attempts
from flask_async_events.delivery.attempt_stats import write_attempts
from flask_async_events.delivery.circuits import endpoint_key
from flask_async_events.delivery.dialects import update_rows
from flask_async_events.delivery.flow import feed, hold, release
from flask_async_events.delivery.health import Said
from flask_async_events.delivery.operational import publish_endpoint, publish_failures
from flask_async_events.delivery.subscription_status import disable_subscriptions
from flask_async_events.delivery.types import Claimed, Outcome, Parked, Released
from flask_async_events.delivery.verdicts import Notice, Verdict, hand_back, judge, log_row
from flask_async_events.models import Delivery, DeliveryState, Subscription, UTCDateTime, utcnow
from flask_async_events.state import AppState

log = logging.getLogger("flask_async_events")

GONE_REASON = "The recipient answered 410 Gone"


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
# The same, for a whole batch in one statement on PostgreSQL (the rows in id order, so that two
# transactions lock shared rows in the same order).
_UPDATE_DELIVERIES = text(
    f"""UPDATE {_DELIVERY.name} AS d SET state = v.state, next_attempt_at = v.next,
    attempt_count = d.attempt_count + v.inc, round_attempts = v.round, claim_token = NULL,
    lease_until = NULL, updated_at = v.now
    FROM unnest(CAST(:b_id AS BIGINT[]), CAST(:b_token AS VARCHAR[]), CAST(:b_state AS VARCHAR[]),
        CAST(:b_next AS TIMESTAMP[]), CAST(:b_inc AS INTEGER[]), CAST(:b_round AS INTEGER[]),
        CAST(:b_now AS TIMESTAMP[])) AS v(id, token, state, next, inc, round, now)
    WHERE d.id = v.id AND d.claim_token = v.token"""
)
_SUBSCRIBER = cast(Table, Subscription.__table__)
_FAILING_AMONG = select(Subscription.subscription_id).where(  # built once: it is asked for every batch
    Subscription.subscription_id.in_(bindparam("b_sids", expanding=True)), Subscription.failing_since.is_not(None)
)
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


@dataclass(frozen=True)
class Judged:
    """One claimed delivery and its verdict; ``outcome`` is None for one handed back unsent."""

    item: Claimed
    verdict: Verdict
    outcome: Outcome | None = None


@dataclass(frozen=True)
class Written:
    """What a committed batch leaves to do: subscriptions that answer again, and notices to send."""

    recovered: set[int]
    notices: list[Notice]


def record(state: AppState, ends: Sequence[Outcome | Released | Parked]) -> set[str]:
    """Write how claims ended: attempts' ``Outcome``s, ``Released`` deliveries (never started) due
    now, ``Parked`` ones due later; then tell RQ, the endpoints' circuits, and the signals'
    receivers. Return the endpoints whose circuit these outcomes opened: what waits to be sent there
    should wait in the database."""
    now = utcnow()
    judged = [_judged(state, now, end) for end in ends]
    outcomes = [end for end in ends if isinstance(end, Outcome)]
    written = _write(state, now, judged)
    _report(judged)
    changes = feed(state, outcomes)  # before the retries are enqueued: a retry due now meets the circuit it opened
    opened = _hold_opened(state, now, changes, outcomes)
    due_now = _released(ends) + _release_answering(state, now, changes, outcomes, written.recovered)
    _after_commit(state, now, _retries(judged, ends), _dead(judged), due_now)
    _send_signals(written.notices)
    return opened


def _judged(state: AppState, now: datetime, end: Outcome | Released | Parked) -> Judged:
    """The verdict on an outcome, or on a delivery handed back (due now, or parked until later)."""
    if isinstance(end, Outcome):
        return Judged(end.item, judge(end, now, state.settings), end)
    return Judged(end.item, hand_back(end.item, now, end.until if isinstance(end, Parked) else None))


def _write(state: AppState, now: datetime, judged: list[Judged]) -> Written:
    """One transaction: the log rows, the deliveries' states (fenced by their claims), the
    subscriptions' health, those to disable (410, or failing too long), and what operational
    events that publishes."""
    session = state.db.session
    write_attempts(session, [log_row(entry.outcome, now) for entry in judged if entry.outcome is not None])
    rows = sorted((_delivery_row(entry.item, entry.verdict, now) for entry in judged), key=itemgetter("b_id"))
    update_rows(session, _UPDATE_DELIVERY, _UPDATE_DELIVERIES, rows)
    succeeded = {entry.item.subscription_id for entry in judged if entry.verdict.said is Said.SUCCEEDED}
    failures = Counter(entry.item.subscription_id for entry in judged if entry.verdict.said.against_subscription)
    recovered = _recovering(state, succeeded)  # answering again: what waits behind its endpoint may go
    stale = _record_health(state, now, succeeded, failures)
    reasons = _disable_reasons(state, judged, stale)
    notices = [notice for entry in judged for notice in entry.verdict.notices]
    _disable(state, reasons, now, notices)
    _publish_failures(state, judged, reasons)
    session.commit()
    return Written(recovered, notices)


def _disable_reasons(state: AppState, judged: list[Judged], stale: set[int]) -> dict[int, str]:
    """Why each subscription to disable is disabled: its endpoint answered 410, or it has failed
    without a success for longer than ``ASYNC_EVENTS_DISABLE_AFTER``."""
    gone = {entry.item.subscription_id for entry in judged if entry.verdict.gone}
    reasons = {subscription_id: _stale_reason(state.settings.disable_after) for subscription_id in stale - gone}
    reasons.update(dict.fromkeys(gone, GONE_REASON))
    return reasons


def _publish_failures(state: AppState, judged: list[Judged], reasons: dict[int, str]) -> None:
    """``subscription.disabled`` for the subscriptions disabled, ``delivery.dead`` for what died."""
    attempted = [(entry.outcome, entry.verdict) for entry in judged if entry.outcome is not None]
    failed = [outcome for outcome, _ in attempted if not outcome.result.success] if reasons else []
    errors = {outcome.item.subscription_id: _error_of(outcome) for outcome in failed}
    dead = [_dead_entry(outcome, verdict) for outcome, verdict in attempted if verdict.dead_reason]
    publish_failures(state, {sid: (reason, errors.get(sid)) for sid, reason in reasons.items()}, dead)


def _retries(judged: list[Judged], ends: Sequence[Outcome | Released | Parked]) -> dict[datetime, list[int]]:
    """The deliveries RQ's scheduler must start, by due time: retries, and the parked ones."""
    retries: dict[datetime, list[int]] = defaultdict(list)
    for entry in judged:
        if entry.verdict.state == DeliveryState.RETRYING and entry.verdict.attempted:
            retries[entry.verdict.next_attempt_at].append(entry.item.id)
    for end in ends:
        if isinstance(end, Parked):
            retries[end.until].append(end.item.id)
    return retries


def _released(ends: Sequence[Outcome | Released | Parked]) -> list[int]:
    """The deliveries handed back due now, for RQ to start."""
    return [end.item.id for end in ends if isinstance(end, Released)]


def _report(judged: list[Judged]) -> None:
    """Log each attempt and end its span; end the spans of the deliveries handed back unsent."""
    report_attempts(
        ((entry.outcome, entry.verdict) for entry in judged if entry.outcome is not None),
        [entry.item for entry in judged if entry.outcome is None],
    )


def _dead(judged: list[Judged]) -> list[tuple[int, str, str]]:
    """The dead letters to note in RQ's failed-job registry: id, uuid and why."""
    return [
        (entry.item.id, entry.item.uuid, entry.verdict.dead_reason)
        for entry in judged
        if entry.verdict.dead_reason is not None
    ]


def _hold_opened(state: AppState, now: datetime, changes: dict[str, str], outcomes: list[Outcome]) -> set[str]:
    """The endpoints whose circuit just opened (or reopened), with what waits for them held back."""
    opened = {endpoint for endpoint, change in changes.items() if change != "closed"}
    if opened:
        first = {endpoint for endpoint in opened if changes[endpoint] == "opened"}  # not a failed probe's reopening
        _hold(state, opened, now, {outcome.item.id for outcome in outcomes}, first)
    return opened


def _release_answering(
    state: AppState, now: datetime, changes: dict[str, str], outcomes: list[Outcome], recovered: set[int]
) -> list[int]:
    """An endpoint that answers again (its circuit closed, or a failing subscription succeeded,
    which Redis cannot forget): the ids of what waits for it, due now."""
    closed = {endpoint for endpoint, change in changes.items() if change == "closed"}
    answering = closed | {
        endpoint_key(o.item.recipient_url) or "" for o in outcomes if o.item.subscription_id in recovered
    }
    answering.discard("")
    return _release(state, sorted(answering), now, closed) if answering else []


def _hold(state: AppState, endpoints: set[str], now: datetime, keep: set[int], first: set[str]) -> None:
    """What waits for endpoints whose circuit just opened, moved out of the way (until twice the
    longest cool-down at most), and ``endpoint.failing`` published for those that were closed
    (``first``). If the database fails here the batch is still recorded: those deliveries come
    back as they were and meet the open circuit one by one instead."""
    session = state.db.session
    try:
        hold(session, endpoints, now + timedelta(seconds=2 * state.settings.circuit_max_cooldown), keep)
        publish_endpoint(state, first, failing=True)
        session.commit()
    except SQLAlchemyError:
        log.exception("Could not hold back the deliveries waiting on %s", sorted(endpoints))
        session.rollback()


def _release(state: AppState, endpoints: list[str], now: datetime, closed: set[str]) -> list[int]:
    """The deliveries waiting on endpoints that answer again, made due now (and, for circuits that
    closed, ``endpoint.recovered`` published). If the database fails here the batch is still
    recorded: they come back at their fallback due time instead."""
    session = state.db.session
    try:
        ids = release(session, endpoints, now)
        publish_endpoint(state, closed, failing=False)
        session.commit()
    except SQLAlchemyError:
        log.exception("Could not release the deliveries waiting on %s; they wait for their due time", endpoints)
        session.rollback()
        return []
    if ids:
        log.info("%s answer(s) again: %d waiting deliveries are due now", ", ".join(endpoints), len(ids))
    return ids


def _error_of(outcome: Outcome) -> str:
    """A failed attempt's error, as an operational event reports it."""
    result = outcome.result
    head = f"{result.status_code}" if result.status_code else result.error_class or "failed"
    return f"{head}: {result.response_data[:200]}" if result.response_data else head


def _dead_entry(outcome: Outcome, verdict: Verdict) -> dict[str, Any]:
    """What ``async_events.delivery.dead`` says of a delivery that failed for good."""
    item = outcome.item
    return {
        "subscription_id": item.subscription_id,
        "delivery_uuid": item.uuid,
        "event_name": item.event_name,
        "attempts": item.attempt_count + (1 if verdict.attempted else 0),
        "status_code": outcome.result.status_code,
        "error": _error_of(outcome),
        "reason": verdict.dead_reason,
    }


def _delivery_row(item: Claimed, verdict: Verdict, now: datetime) -> dict[str, Any]:
    """The parameters of :data:`_UPDATE_DELIVERY` for one verdict (fenced by the claim's token)."""
    return {
        "b_id": item.id,
        "b_token": item.claim_token,
        "b_now": now,
        "b_state": verdict.state,
        "b_next": verdict.next_attempt_at,
        "b_inc": 1 if verdict.attempted else 0,
        "b_round": verdict.round_attempts,
    }


def _disable(state: AppState, reasons: dict[int, str], now: datetime, notices: list[Notice]) -> None:
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


def _recovering(state: AppState, succeeded: set[int]) -> set[int]:
    """The subscriptions among ``succeeded`` that were failing until now (read before the health
    update: a snapshot taken at claim time could be stale, and a release missed)."""
    if not succeeded:
        return set()
    return set(state.db.session.scalars(_FAILING_AMONG, {"b_sids": sorted(succeeded)}))


def _record_health(state: AppState, now: datetime, succeeded: set[int], failures: Counter[int]) -> set[int]:
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
