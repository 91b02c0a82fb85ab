"""The pure parts: configuration, definitions, matching, retries, signatures, HTTP outcomes, sending."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from standardwebhooks import Webhook

from flask_async_events.config import ConfigError, load_settings
from flask_async_events.crypto import SecretBox
from flask_async_events.definitions import (
    EventDefinition,
    EventRegistry,
    load_definitions_file,
    normalise_event_name,
    normalise_pattern,
    pattern_matches,
    receives,
)
from flask_async_events.delivery.nudger import Nudger
from flask_async_events.delivery.retry import next_delay
from flask_async_events.delivery.sender import Sender, Task
from flask_async_events.notifiers.http import classify, parse_retry_after
from flask_async_events.signing import (
    InvalidSignature,
    generate_secret,
    legacy_signature,
    signing_key,
    standard_signature,
    verify_legacy,
    verify_standard,
)

# --- configuration -----------------------------------------------------------------------------


def test_defaults_are_the_seeds() -> None:
    settings = load_settings({"SECRET_KEY": "x"})
    assert settings.retry_schedule == (1, 4, 9, 16, 25)
    assert (settings.connect_timeout, settings.timeout) == (5, 15)
    assert settings.signature_header == "x-magento-signature"
    assert settings.timeout < settings.job_timeout < settings.claim_lease


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("ASYNC_EVENTS_PAYLOAD_FORMAT", "xml", "ASYNC_EVENTS_PAYLOAD_FORMAT"),
        ("ASYNC_EVENTS_RETRY_SCHEDULE", ["soon"], "ASYNC_EVENTS_RETRY_SCHEDULE"),
        ("ASYNC_EVENTS_RETRY_SCHEDULE", [-1], "ASYNC_EVENTS_RETRY_SCHEDULE"),
        ("ASYNC_EVENTS_RETRY_JITTER", 2, "ASYNC_EVENTS_RETRY_JITTER"),
        ("ASYNC_EVENTS_TIMEOUT", 0, "ASYNC_EVENTS_TIMEOUT"),
        ("ASYNC_EVENTS_BATCH_SIZE", 1.5, "ASYNC_EVENTS_BATCH_SIZE"),
        ("ASYNC_EVENTS_BATCH_SIZE", "many", "ASYNC_EVENTS_BATCH_SIZE"),
        ("ASYNC_EVENTS_ENDPOINT_CONCURRENCY", True, "ASYNC_EVENTS_ENDPOINT_CONCURRENCY"),
    ],
)
def test_bad_configuration_names_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({"SECRET_KEY": "x", key: value})


def test_a_secret_is_required_to_encrypt_tokens() -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY or ASYNC_EVENTS_ENCRYPTION_KEYS"):
        load_settings({})


def test_schedule_from_an_environment_string() -> None:
    assert load_settings({"SECRET_KEY": "x", "ASYNC_EVENTS_RETRY_SCHEDULE": "5, 300 1800"}).retry_schedule == (
        5,
        300,
        1800,
    )


# --- secrets at rest ---------------------------------------------------------------------------


def test_tokens_are_encrypted_and_keys_rotate() -> None:
    old = SecretBox(["derive:old"])
    stored = old.encrypt("fD03@NpYbXYg")
    assert "fD03" not in stored
    rotated = SecretBox(["derive:new", "derive:old"])
    assert rotated.decrypt(stored) == "fD03@NpYbXYg"
    with pytest.raises(ValueError, match="ASYNC_EVENTS_ENCRYPTION_KEYS"):
        SecretBox(["derive:new"]).decrypt(stored)
    with pytest.raises(ValueError, match="not a Fernet key"):
        SecretBox(["short"])


# --- definitions and matching ------------------------------------------------------------------


def test_event_names_are_lower_case_and_checked() -> None:
    assert normalise_event_name(" Sales.Order.Created ") == "sales.order.created"
    with pytest.raises(ValueError, match="invalid event name"):
        normalise_event_name("sales order")
    with pytest.raises(ValueError, match="invalid event name"):
        normalise_event_name("sales.*")
    assert normalise_pattern("Sales.*") == "sales.*"


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("sales.order.created", "sales.order.created", True),
        ("sales.order.*", "sales.order.created", True),
        ("sales.order.*", "sales.order.item.added", True),  # * crosses dots
        ("sales.order.*", "sales.orders.created", False),
        ("*.created", "customer.created", True),
        ("*.created", "customer.created.late", False),  # anchored at the end
        ("*", "anything.at.all", True),
        ("sales.*.created", "sales.order.created", True),
        ("sales.order", "sales.order.created", False),
        ("sales.order.created", "sales.order.createdx", False),
        ("a.b", "axb", False),  # dots are literal
    ],
)
def test_wildcards(pattern: str, name: str, expected: bool) -> None:
    assert pattern_matches(pattern, name) is expected


def test_store_scope() -> None:
    assert receives("e", 5, "e", 0)  # store 0 reaches everyone
    assert receives("e", 5, "e", 5)
    assert not receives("e", 0, "e", 5)  # a store-N event skips unscoped subscriptions
    assert not receives("e", 4, "e", 5)


def service(id: int, verbose: bool = False) -> dict[str, int]:
    return {"id": id}


def test_bind_drops_extra_arguments_and_requires_missing_ones() -> None:
    definition = EventDefinition("x", service)
    assert definition.bind({"id": 1, "unknown": 2}) == {"id": 1}
    with pytest.raises(TypeError, match="missing a required argument: 'id'"):
        definition.bind({})


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "events.toml"
    path.write_text(text)
    return str(path)


def test_toml_definitions_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[async_event]]\nname = "Sales.Order.Created"\nservice = "tests.test_units:service"\n'
        'resources = ["Magento_Sales::actions_view"]\ndescription = "placed"\n',
    )
    registry = EventRegistry()
    load_definitions_file(path, registry)
    definition = registry.get("sales.order.created")
    assert definition is not None
    assert definition.service is service
    assert definition.resources == ("Magento_Sales::actions_view",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[async_event]]\nname = "a"\nservice = "tests.test_units:service"\nclass = "x"\n', "unknown keys"),
        ('[[async_event]]\nname = "a"\nservice = "tests.nowhere:service"\n', "No module named"),
        ('[[async_event]]\nname = "a"\nservice = "tests.test_units:absent"\n', "absent"),
        ('[[async_event]]\nname = "a"\n', "'service' is required"),
        ('[[async_event]]\nname = "a b"\nservice = "tests.test_units:service"\n', "invalid event name"),
        ('[[async_event]]\nname = "a"\nservice = "tests.test_units:service"\n' * 2, "defined twice"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_toml_errors_name_the_file_and_entry(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=message) as error:
        load_definitions_file(path, EventRegistry())
    assert path in str(error.value)


# --- retries -----------------------------------------------------------------------------------


def test_the_seed_schedule_gives_six_attempts() -> None:
    schedule = (1, 4, 9, 16, 25)
    assert [next_delay(schedule, attempt) for attempt in range(1, 7)] == [1, 4, 9, 16, 25, None]


def test_jitter_stays_within_its_fraction() -> None:
    delays = {next_delay((100,), 1, jitter=0.1) for _ in range(200)}
    assert all(90 <= delay <= 110 for delay in delays if delay is not None)
    assert len(delays) > 1


def test_retry_after_is_a_floor_with_a_cap() -> None:
    assert next_delay((1,), 1, retry_after=30) == 30
    assert next_delay((60,), 1, retry_after=5) == 60
    assert next_delay((1,), 1, retry_after=10_000, retry_after_max=600) == 600


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90
    assert parse_retry_after("garbage", now) is None
    assert parse_retry_after(None, now) is None


# --- signatures --------------------------------------------------------------------------------


def test_standard_signature_matches_the_reference_library() -> None:
    secret = generate_secret()
    body = b'{"data":{"id":1}}'
    timestamp = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_signature([signing_key(secret)], "msg_1", timestamp, body),
    }
    assert Webhook(secret).verify(body, headers) == {"data": {"id": 1}}
    verify_standard(secret, headers, body)
    with pytest.raises(InvalidSignature):
        verify_standard(secret, headers, body + b" ")
    with pytest.raises(InvalidSignature, match="tolerance"):
        verify_standard(secret, headers, body, now=timestamp + 3600)


def test_rotation_sends_one_signature_per_key() -> None:
    old, new = generate_secret(), generate_secret()
    body = b"{}"
    signature = standard_signature([signing_key(new), signing_key(old)], "m", 1, body)
    assert len(signature.split(" ")) == 2
    for secret in (old, new):
        verify_standard(
            secret, {"webhook-id": "m", "webhook-timestamp": "1", "webhook-signature": signature}, body, now=1
        )


def test_legacy_signature_is_hex_hmac_of_the_body() -> None:
    # echo -n '{"data":1}' | openssl dgst -sha256 -hmac 'fD03@NpYbXYg'
    expected = "0194ce703ae0b80c45030f5b88c0b815be79976257e7aff8d86d79529925e0fa"
    assert legacy_signature(b"fD03@NpYbXYg", b'{"data":1}') == expected
    verify_legacy("fD03@NpYbXYg", b'{"data":1}', expected.upper())
    with pytest.raises(InvalidSignature):
        verify_legacy("fD03@NpYbXYg", b'{"data":2}', expected)


def test_a_whsec_token_keys_with_its_decoded_bytes() -> None:
    assert signing_key("whsec_AAEC") == b"\x00\x01\x02"
    assert signing_key("plain") == b"plain"
    assert signing_key("whsec_not base64!") == b"whsec_not base64!"


# --- HTTP outcomes -----------------------------------------------------------------------------


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


# --- the sender --------------------------------------------------------------------------------


class Collected:
    """What a sender's callbacks received, by task payload."""

    def __init__(self) -> None:
        self.finished: dict[int, object] = {}
        self.expired: list[int] = []
        self.lock = threading.Lock()

    def finish(self, task: Task[object, int], result: object) -> None:
        with self.lock:
            self.finished[task.payload] = result

    def expire(self, task: Task[object, int]) -> None:
        with self.lock:
            self.expired.append(task.payload)


def test_the_per_endpoint_cap_leaves_threads_for_others() -> None:
    collected = Collected()
    sender: Sender[object, int] = Sender(4, 2, collected.finish, collected.expire)
    running: dict[str, int] = {"slow": 0, "fast": 0}
    peak: dict[str, int] = {"slow": 0, "fast": 0}
    lock = threading.Lock()

    def work(endpoint: str, seconds: float) -> Callable[[], str]:
        def run() -> str:
            with lock:
                running[endpoint] += 1
                peak[endpoint] = max(peak[endpoint], running[endpoint])
            time.sleep(seconds)
            with lock:
                running[endpoint] -= 1
            return endpoint

        return run

    deadline = time.monotonic() + 10
    started = time.monotonic()
    sender.submit(Task("slow", work("slow", 0.2), deadline, index) for index in range(6))
    sender.submit(Task("fast", work("fast", 0.01), deadline, index) for index in range(6, 12))
    idle = sender.wait_idle(5)
    sender.shutdown()
    assert idle and collected.expired == [] and len(collected.finished) == 12
    assert peak["slow"] == 2  # never more than the cap for one endpoint
    assert peak["fast"] == 2  # the other threads were free for the second endpoint
    assert time.monotonic() - started < 1.5


def test_the_sender_does_not_start_a_task_past_its_deadline() -> None:
    collected = Collected()
    sender: Sender[object, int] = Sender(1, 1, collected.finish, collected.expire)
    deadline = time.monotonic() + 0.1
    sender.submit(Task("e", lambda: time.sleep(0.2), deadline, index) for index in range(5))
    assert sender.wait_idle(5)
    sender.shutdown()
    assert list(collected.finished) == [0] and sorted(collected.expired) == [1, 2, 3, 4]


def test_a_full_endpoint_is_saturated_and_its_waiting_tasks_leave_room_for_others() -> None:
    collected = Collected()
    release = threading.Event()
    sender: Sender[object, int] = Sender(4, 2, collected.finish, collected.expire)
    deadline = time.monotonic() + 10
    sender.submit(Task("hung", release.wait, deadline, index) for index in range(5))
    assert {task.endpoint for task in sender.saturated()} == {"hung"}
    assert sender.startable() == 2  # two threads busy with the hung endpoint, its queue waits
    sender.sweep(everything=True)  # a worker asked to stop hands back what has not started
    assert sorted(collected.expired) == [2, 3, 4]
    release.set()
    assert sender.wait_idle(5)
    sender.shutdown()
    assert sorted(collected.finished) == [0, 1]


# --- the nudger --------------------------------------------------------------------------------


def test_the_nudger_enqueues_in_the_background_and_survives_a_redis_failure() -> None:
    sent: list[int] = []
    failing = threading.Event()
    failing.set()

    def enqueue(event_ids: Sequence[int]) -> None:
        if failing.is_set():
            failing.clear()
            raise RedisConnectionError("Redis is down")
        sent.extend(event_ids)

    nudger = Nudger(enqueue)
    nudger.nudge([1, 2])  # lost: the outbox relays these events later
    assert nudger.flush(5)
    nudger.nudge([3])
    nudger.nudge([4])
    assert nudger.flush(5)
    assert sorted(sent) == [3, 4]


def test_a_task_that_raises_is_handed_back_not_lost() -> None:
    collected = Collected()
    sender: Sender[object, int] = Sender(2, 1, collected.finish, collected.expire)

    def broken() -> object:
        raise RuntimeError("a notifier bug")

    sender.submit([Task("e", broken, time.monotonic() + 10, 1), Task("e", lambda: "ok", time.monotonic() + 10, 2)])
    assert sender.wait_idle(5)
    sender.shutdown()
    assert collected.expired == [1] and collected.finished == {2: "ok"}
