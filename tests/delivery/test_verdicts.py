"""The verdict on an attempt's outcome, decided without a database or Redis: a table of outcomes and
the state, due time, dead reason, endpoint health and signals each must give."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from flask_async_events import signals
from flask_async_events.config import load_settings
from flask_async_events.delivery.health import Said
from flask_async_events.delivery.types import Claimed, Outcome
from flask_async_events.delivery.verdicts import hand_back, judge, log_row
from flask_async_events.models import RESPONSE_EXCERPT, DeliveryState
from flask_async_events.notifiers.base import NotifyResult

NOW = datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)
SETTINGS = load_settings({"SECRET_KEY": "x", "ASYNC_EVENTS_RETRY_AFTER_MAX": 60})
ITEM = Claimed(
    id=7,
    uuid="5a1d7c1e-0000-4000-8000-000000000007",
    claim_token="owner.claim",
    attempt_count=0,
    round_attempts=0,
    event_id=3,
    event_uuid="e",
    event_name="sales.order.created",
    body='{"data":{"id":1}}',
    created_at=NOW,
    subscription_id=2,
    pattern="sales.*",
    recipient_url="https://example.com/hook",
    verification_token="encrypted",
    previous_tokens=None,
    headers=None,
    notifier="http",
    store_id=0,
    enabled=True,
)
OK = NotifyResult(True, status_code=200, response_data="thanks")
ERROR_500 = NotifyResult(False, retryable=True, status_code=500, response_data="boom")
REFUSED_400 = NotifyResult(False, status_code=400, response_data="bad request")
GONE_410 = NotifyResult(False, status_code=410, response_data="", gone=True)
GONE_BUT_RETRYABLE = NotifyResult(False, retryable=True, status_code=410, gone=True, error_class="Gone")
THROTTLED = NotifyResult(False, retryable=True, retry_after=30, status_code=429, response_data="slow down")
THROTTLED_LONG = NotifyResult(False, retryable=True, retry_after=3600, status_code=429)
TIMED_OUT = NotifyResult(False, retryable=True, error_class="Timeout")
NO_WORDS = NotifyResult(False)

RETRYING, DEAD, DELIVERED = DeliveryState.RETRYING, DeliveryState.DEAD, DeliveryState.DELIVERED
FAILED, SUCCEEDED, REFUSED, UNCHANGED = Said.FAILED, Said.SUCCEEDED, Said.REFUSED, Said.NOT_THE_ENDPOINT
UNRESOLVED = NotifyResult(False, retryable=True, error_class="ResolveError", response_data="LookupError")


@pytest.mark.parametrize(
    ("result", "round_attempts", "interrupted", "state", "delay", "health", "dead_reason", "gone"),
    [
        # outcome                  round  lost   next state  due in  endpoint   dead reason     410
        (OK, 0, False, DELIVERED, 0, SUCCEEDED, None, False),
        (OK, 5, False, DELIVERED, 0, SUCCEEDED, None, False),
        (ERROR_500, 0, False, RETRYING, 1, FAILED, None, False),  # the Magento module's schedule: 1, 4, 9, 16, 25
        (ERROR_500, 1, False, RETRYING, 4, FAILED, None, False),
        (ERROR_500, 4, False, RETRYING, 25, FAILED, None, False),
        (ERROR_500, 5, False, DEAD, 0, FAILED, "boom", False),  # the sixth attempt was the last
        (REFUSED_400, 0, False, DEAD, 0, REFUSED, "bad request", False),  # other 4xx: not retried
        (GONE_410, 0, False, DEAD, 0, REFUSED, "failed", True),
        (GONE_BUT_RETRYABLE, 0, False, DEAD, 0, FAILED, "Gone", True),  # gone wins over retryable
        (THROTTLED, 0, False, RETRYING, 30, FAILED, None, False),  # Retry-After is a floor
        (THROTTLED_LONG, 0, False, RETRYING, 60, FAILED, None, False),  # ... capped by RETRY_AFTER_MAX
        (TIMED_OUT, 2, False, RETRYING, 9, FAILED, None, False),
        (TIMED_OUT, 0, True, RETRYING, 1, UNCHANGED, None, False),  # a lost worker's attempt
        (NO_WORDS, 0, False, DEAD, 0, REFUSED, "failed", False),
        (UNRESOLVED, 0, False, RETRYING, 1, UNCHANGED, None, False),  # the host's code: never the endpoint's
    ],
)
def test_the_verdict_on_each_outcome(
    result: NotifyResult,
    round_attempts: int,
    interrupted: bool,
    state: str,
    delay: int,
    health: Said,
    dead_reason: str | None,
    gone: bool,
) -> None:
    item = replace(ITEM, round_attempts=round_attempts, attempt_count=round_attempts + 3)
    verdict = judge(Outcome(item, result, interrupted=interrupted), NOW, SETTINGS)
    assert verdict.state == state
    assert verdict.next_attempt_at == NOW + timedelta(seconds=delay)
    assert verdict.attempted and verdict.round_attempts == round_attempts + 1
    assert verdict.said is health
    assert verdict.dead_reason == dead_reason
    assert verdict.gone is gone


def test_the_signals_each_verdict_sends_once_recorded() -> None:
    about = {"delivery_uuid": ITEM.uuid, "event_name": "sales.order.created", "subscription_id": 2}
    delivered = judge(Outcome(ITEM, OK), NOW, SETTINGS)
    assert delivered.notices == ((signals.delivery_succeeded, {**about, "status_code": 200}),)
    retrying = judge(Outcome(ITEM, ERROR_500), NOW, SETTINGS)
    assert retrying.notices == ((signals.delivery_failed, {**about, "status_code": 500, "will_retry": True}),)
    dead = judge(Outcome(ITEM, REFUSED_400), NOW, SETTINGS)
    assert dead.notices == (
        (signals.delivery_failed, {**about, "status_code": 400, "will_retry": False}),
        (signals.delivery_dead_lettered, {**about, "reason": "bad request"}),
    )


def test_a_cancelled_delivery_is_not_an_attempt() -> None:
    verdict = judge(Outcome(replace(ITEM, round_attempts=2), OK, cancelled=True), NOW, SETTINGS)
    assert (verdict.state, verdict.attempted, verdict.round_attempts) == (DeliveryState.CANCELLED, False, 2)
    assert verdict.said is Said.NOT_THE_ENDPOINT and verdict.notices == ()


def test_a_retry_is_due_on_a_whole_second_and_never_early() -> None:
    jittery = replace(SETTINGS, retry_schedule=(1.2,), retry_jitter=0.5)
    for seed in range(20):
        due = judge(Outcome(ITEM, ERROR_500), NOW, jittery, random.Random(seed)).next_attempt_at
        assert due.microsecond == 0 and NOW + timedelta(seconds=0.6) <= due <= NOW + timedelta(seconds=2)
    at_half_past = NOW + timedelta(milliseconds=500)
    assert judge(Outcome(ITEM, ERROR_500), at_half_past, SETTINGS).next_attempt_at == NOW + timedelta(seconds=2)


@pytest.mark.parametrize(("round_attempts", "state"), [(0, DeliveryState.PENDING), (2, DeliveryState.RETRYING)])
def test_a_claim_never_started_goes_back_as_it_was(round_attempts: int, state: str) -> None:
    verdict = hand_back(replace(ITEM, round_attempts=round_attempts), NOW)
    assert (verdict.state, verdict.next_attempt_at, verdict.attempted) == (state, NOW, False)
    assert verdict.round_attempts == round_attempts and verdict.said is Said.NOT_THE_ENDPOINT


def test_the_log_row_of_an_attempt_and_of_a_cancellation() -> None:
    long_answer = NotifyResult(False, retryable=True, status_code=502, response_data="x" * (RESPONSE_EXCERPT + 10))
    row = log_row(Outcome(replace(ITEM, attempt_count=3), long_answer, duration_ms=12), NOW)
    assert (row["attempt"], row["status_code"], row["duration_ms"], row["success"]) == (4, 502, 12, False)
    assert len(row["response_data"]) == RESPONSE_EXCERPT and row["serialized_data"] == ITEM.body
    cancelled = log_row(Outcome(replace(ITEM, attempt_count=3), NotifyResult(False), cancelled=True), NOW)
    assert (cancelled["attempt"], cancelled["error_class"], cancelled["serialized_data"]) == (3, "Cancelled", None)
