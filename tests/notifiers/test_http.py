"""The http notifier's reading of an answer: status codes and Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from flask_async_events.notifiers.http import classify, parse_retry_after


@pytest.mark.parametrize(
    ("status", "success", "retryable", "gone"),
    [
        (200, True, False, False),
        (204, True, False, False),
        (301, False, False, False),
        (400, False, False, False),
        (404, False, False, False),
        (408, False, True, False),
        (410, False, False, True),
        (429, False, True, False),
        (500, False, True, False),
        (503, False, True, False),
    ],
)
def test_http_outcomes(status: int, success: bool, retryable: bool, gone: bool) -> None:
    result = classify(status, "", "7")
    assert (result.success, result.retryable, result.gone) == (success, retryable, gone)
    assert result.retry_after == (7 if retryable else None)


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90
    assert parse_retry_after("garbage", now) is None
    assert parse_retry_after(None, now) is None
