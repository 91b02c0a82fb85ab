"""The worker's log speaks of deliveries: one line per attempt with what happens next, in text or
JSON; RQ's per-job chatter only with --verbose; no secret, header value or URL path in it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from flask_async_events.delivery.attempt_log import attempt_facts, attempt_line
from flask_async_events.delivery.types import Claimed, Outcome
from flask_async_events.delivery.verdicts import Verdict
from flask_async_events.models import DeliveryState
from flask_async_events.notifiers.base import NotifyResult
from tests.conftest import ROOT, AppEnv, Receiver
from tests.helpers import MAGENTO_TOKEN, place_order, subscribe

HEADER_SECRET = "hdr-value-never-logged"
NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def _claimed(**overrides: object) -> Claimed:
    fields: dict[str, object] = {
        "id": 1,
        "uuid": "d-1",
        "claim_token": "t",
        "attempt_count": 1,
        "round_attempts": 1,
        "event_id": 9,
        "event_uuid": "e-9",
        "event_name": "sales.order.created",
        "body": "{}",
        "created_at": NOW,
        "subscription_id": 7,
        "pattern": "sales.*",
        "recipient_url": "https://user:pw@shop.example/hooks?token=abc",
        "verification_token": "sealed",
        "previous_tokens": None,
        "headers": None,
        "notifier": "http",
        "store_id": 0,
        "enabled": True,
    }
    fields.update(overrides)
    return Claimed(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("result", "verdict", "cancelled", "line"),
    [
        (
            NotifyResult(True, status_code=200, response_data="ok"),
            Verdict(DeliveryState.DELIVERED, NOW, True, 2),
            False,
            "delivered sales.order.created to https://shop.example:443 (subscription 7, delivery d-1, attempt 2):"
            " 200 in 35 ms",
        ),
        (
            NotifyResult(False, retryable=True, status_code=503, response_data="busy"),
            Verdict(DeliveryState.RETRYING, NOW.replace(minute=5), True, 2),
            False,
            "retry sales.order.created to https://shop.example:443 (subscription 7, delivery d-1, attempt 2):"
            " 503 in 35 ms; retry at 2026-12-01T12:05:00+00:00",
        ),
        (
            NotifyResult(False, retryable=True, response_data="connect timed out", error_class="ConnectTimeout"),
            Verdict(DeliveryState.DEAD, NOW, True, 2, dead_reason="connect timed out"),
            False,
            "dead sales.order.created to https://shop.example:443 (subscription 7, delivery d-1, attempt 2):"
            " ConnectTimeout in 35 ms; dead: connect timed out",
        ),
        (
            NotifyResult(
                False, status_code=404, response_data="<!doctype html>\n<html>\n  <h1>Not Found</h1>\n</html>\n"
            ),
            Verdict(DeliveryState.DEAD, NOW, False, 2),
            False,
            "dead sales.order.created to https://shop.example:443 (subscription 7, delivery d-1, attempt 2):"
            " 404 in 35 ms; dead: <!doctype html> <html> <h1>Not Found</h1> </html>",  # one line, always
        ),
        (
            NotifyResult(False, response_data="the filter no longer matches"),
            Verdict(DeliveryState.CANCELLED, NOW, False, 1),
            True,
            "cancelled sales.order.created to https://shop.example:443 (subscription 7, delivery d-1, attempt 2):"
            " the filter no longer matches",
        ),
    ],
)
def test_an_attempt_line_says_what_went_where_and_what_happens_next(
    result: NotifyResult, verdict: Verdict, cancelled: bool, line: str
) -> None:
    facts = attempt_facts(Outcome(_claimed(), result, 35, cancelled=cancelled), verdict)
    assert attempt_line(facts) == line
    assert "pw" not in line and "token=abc" not in line and "/hooks" not in line


def _worker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "tests.appfactory:create_app", "async-events", "worker", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )


def test_json_lines_follow_one_delivery_through_its_retry(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[1], ASYNC_EVENTS_RETRY_JITTER=0)
    url = receiver.respond("/hook/secret-path", [503, 200]) + "?key=query-secret"
    subscribe(app, url, headers={"X-Api-Key": HEADER_SECRET})
    place_order(app)
    first = _worker("--burst", "--log-format", "json")
    time.sleep(1.5)
    second = _worker("--burst", "--log-format", "json")
    output = first.stderr + second.stderr
    records = [json.loads(line) for line in output.splitlines() if line.strip()]  # every line is JSON
    attempts = [record for record in records if record["logger"] == "flask_async_events.attempts"]
    assert [record["outcome"] for record in attempts] == ["retry", "delivered"]
    retry, delivered = attempts
    assert (retry["status"], retry["attempt"], delivered["status"], delivered["attempt"]) == (503, 1, 200, 2)
    assert retry["delivery_uuid"] == delivered["delivery_uuid"] == receiver.requests[0].headers["Webhook-Id"]
    assert datetime.fromisoformat(retry["retry_at"]) > datetime.fromisoformat(retry["time"])
    assert delivered["endpoint"].startswith("http://127.0.0.1:") and isinstance(delivered["duration_ms"], int)
    assert not [record for record in records if "Job OK" in record["message"] or "registries" in record["message"]]
    for secret in (MAGENTO_TOKEN, HEADER_SECRET, "secret-path", "query-secret"):
        assert secret not in output
    assert first.stdout == second.stdout == ""


def test_verbose_adds_rq_s_own_lines(env: AppEnv, receiver: Receiver) -> None:
    app = env.app()
    subscribe(app, receiver.respond())
    place_order(app)
    output = _worker("--burst", "--verbose").stderr
    assert "Job OK" in output
    assert len([line for line in output.splitlines() if " delivered sales.order.created " in line]) == 1


def test_an_idle_worker_writes_nothing_after_it_starts(env: AppEnv) -> None:
    env.app(ASYNC_EVENTS_MAINTENANCE_INTERVAL=1)
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "tests.appfactory:create_app", "async-events", "worker"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(8)  # RQ cleans its registries and runs maintenance several times meanwhile
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()  # a worker that did not stop fails the test, and leaves nothing behind
        process.communicate()
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert len(lines) == 1 and "serving event.trigger, event.delivery, event.retry" in lines[0], lines
