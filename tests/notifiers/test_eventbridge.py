"""EventBridge delivery against moto in server mode: real boto3 calls over HTTP, on loopback only."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_async_events.notifiers.eventbridge import EventBridgeNotifier, event_bus
from flask_async_events.state import get_state
from tests.appfactory import db, events
from tests.conftest import AppEnv, drain, run_burst
from tests.helpers import attempts, publish, states, subscribe
from tests.notifiers.hostile import hostile, never_answer
from tests.notifiers.moto import ACCOUNT, REGION, boto


def bus_to_queue(url: str, bus: str, source: str) -> str:
    """A bus whose rule forwards events from ``source`` to a new SQS queue; returns the queue URL."""
    eventbridge, sqs = boto("events", url), boto("sqs", url)
    if bus != "default":
        eventbridge.create_event_bus(Name=bus)
    queue_url = sqs.create_queue(QueueName=f"{bus}-queue")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    eventbridge.put_rule(Name="to-queue", EventBusName=bus, EventPattern=json.dumps({"source": [source]}))
    eventbridge.put_targets(Rule="to-queue", EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])
    return str(queue_url)


def received(url: str, queue_url: str, expected: int) -> list[dict[str, Any]]:
    sqs = boto("sqs", url)
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(messages) < expected and time.monotonic() < deadline:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        for message in batch:
            messages.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return messages


def eventbridge_app(env: AppEnv, url: str, **config: Any) -> Flask:
    return env.app(
        ASYNC_EVENTS_EVENTBRIDGE_ENDPOINT_URL=url,
        ASYNC_EVENTS_EVENTBRIDGE_SOURCE="shop.example",
        **config,
    )


def count_put_events(app: Flask, region: str | None = None) -> list[int]:
    """Record the number of entries in every PutEvents call the app's notifier makes."""
    calls: list[int] = []
    notifier = get_state(app).notifier("eventbridge")
    assert isinstance(notifier, EventBridgeNotifier)

    def before(params: dict[str, Any], **kwargs: Any) -> None:
        calls.append(len(params["Entries"]))

    notifier.client(region).meta.events.register("provide-client-params.events.PutEvents", before)
    return calls


def test_an_event_reaches_sqs_through_a_bus_and_rule(env: AppEnv, aws: str) -> None:
    queue_url = bus_to_queue(aws, "orders", "shop.example")
    app = eventbridge_app(env, aws)
    # The Magento module's notifier name, event_bridge, is an alias of eventbridge.
    subscribe(app, "orders", event_name="customer.created", metadata="event_bridge", token="aIW0G9n3*9wN")
    publish(app, "customer.created", id=7)
    run_burst(app)

    [message] = received(aws, queue_url, 1)
    assert message["source"] == "shop.example"
    assert message["detail-type"] == "customer.created"
    assert message["detail"] == {"data": {"id": 7}}  # the same payload the HTTP notifier sends
    assert states(app) == ["delivered"]
    [attempt] = attempts(app)
    assert attempt.success and "EventId" in attempt.response_data


def test_a_bus_arn_and_the_magento_rule_arn_are_accepted(env: AppEnv, aws: str) -> None:
    queue_url = bus_to_queue(aws, "default", "shop.example")
    app = eventbridge_app(env, aws)
    # As in the Magento module's README: a rule ARN, delivered to the bus the rule is on (here the default bus).
    subscribe(
        app,
        f"arn:aws:events:{REGION}:{ACCOUNT}:rule/Test.EventBridge.Rule",
        metadata="event_bridge",
        event_name="customer.created",
    )
    publish(app, "customer.created", id=1)
    run_burst(app)
    assert [m["detail"]["data"]["id"] for m in received(aws, queue_url, 1)] == [1]


def test_recipients_are_validated_at_subscribe_time(app: Flask) -> None:
    with app.app_context():
        for bad in ("has space", "arn:aws:sqs:us-east-1:123456789012:queue", "arn:aws:events:us-east-1:1:event-bus/x"):
            with pytest.raises(ValueError, match="not an EventBridge bus name"):
                events.subscribe("customer.created", bad, verification_token="t", metadata="eventbridge")
        db.session.rollback()


@pytest.mark.parametrize(
    ("recipient", "expected"),
    [
        ("orders", (None, "orders")),
        (
            f"arn:aws:events:eu-west-1:{ACCOUNT}:event-bus/orders",
            ("eu-west-1", f"arn:aws:events:eu-west-1:{ACCOUNT}:event-bus/orders"),
        ),
        (
            f"arn:aws:events:eu-west-1:{ACCOUNT}:rule/r1",
            ("eu-west-1", f"arn:aws:events:eu-west-1:{ACCOUNT}:event-bus/default"),
        ),
        (
            f"arn:aws:events:eu-west-1:{ACCOUNT}:rule/orders/r1",
            ("eu-west-1", f"arn:aws:events:eu-west-1:{ACCOUNT}:event-bus/orders"),
        ),
    ],
)
def test_event_bus_of_a_recipient(recipient: str, expected: tuple[str | None, str]) -> None:
    assert event_bus(recipient) == expected


def test_25_due_deliveries_go_out_in_3_put_events_calls(env: AppEnv, aws: str) -> None:
    queue_url = bus_to_queue(aws, "orders", "shop.example")
    app = eventbridge_app(env, aws)
    calls = count_put_events(app)
    subscribe(app, "orders", event_name="customer.created", metadata="eventbridge")
    with app.app_context():
        for customer in range(25):
            events.publish("customer.created", id=customer)
        db.session.commit()
    run_burst(app)
    assert sorted(calls) == [5, 10, 10]  # the batches are sent on parallel threads, in any order
    assert sorted(m["detail"]["data"]["id"] for m in received(aws, queue_url, 25)) == list(range(25))
    assert states(app) == ["delivered"] * 25


def test_partial_failures_retry_only_the_failed_entries(env: AppEnv, aws: str) -> None:
    bus_to_queue(aws, "orders", "shop.example")
    app = eventbridge_app(env, aws, ASYNC_EVENTS_RETRY_SCHEDULE=[0])
    notifier = get_state(app).notifier("eventbridge")
    assert isinstance(notifier, EventBridgeNotifier)
    sent: list[list[int]] = []
    failed_once: set[int] = set()

    def before(params: dict[str, Any], **kwargs: Any) -> None:
        sent.append([json.loads(entry["Detail"])["data"]["id"] for entry in params["Entries"]])

    def after(parsed: dict[str, Any], **kwargs: Any) -> None:
        # AWS can fail single entries of a call; moto never does, so the answer is rewritten here.
        for customer, entry in zip(sent[-1], parsed["Entries"], strict=True):
            if customer == 1 and customer not in failed_once:
                failed_once.add(customer)
                entry.clear()
                entry.update(ErrorCode="ThrottlingException", ErrorMessage="Rate exceeded")
            elif customer == 2:
                entry.clear()
                entry.update(ErrorCode="ValidationException", ErrorMessage="Detail is not valid")

    client = notifier.client(None)
    client.meta.events.register("provide-client-params.events.PutEvents", before)
    client.meta.events.register("after-call.events.PutEvents", after)
    subscribe(app, "orders", event_name="customer.created", metadata="eventbridge")
    with app.app_context():
        for customer in range(4):
            events.publish("customer.created", id=customer)
        db.session.commit()
    drain(app, lambda: "retrying" not in states(app) and "pending" not in states(app))

    assert sent == [[0, 1, 2, 3], [1]]  # only the throttled entry is sent again
    assert states(app) == ["delivered", "delivered", "dead", "delivered"]
    dead = [a for a in attempts(app) if a.error_class == "ValidationException"]
    assert len(dead) == 1 and dead[0].response_data == "ValidationException: Detail is not valid"


def test_an_oversized_entry_is_dead_lettered_and_never_sent(env: AppEnv, aws: str) -> None:
    bus_to_queue(aws, "orders", "shop.example")
    app = eventbridge_app(env, aws)
    calls = count_put_events(app)
    subscribe(app, "orders", event_name="sized.event", metadata="eventbridge")
    with app.app_context():
        events.publish("sized.event", id=1, size=300 * 1024)
        events.publish("sized.event", id=2, size=10)
        db.session.commit()
    run_burst(app)
    assert calls == [1]  # only the small one went out
    assert states(app) == ["dead", "delivered"]
    too_large = next(a for a in attempts(app) if not a.success)
    assert too_large.error_class == "EntryTooLarge"
    assert "over EventBridge's 262144-byte limit; not sent" in too_large.response_data


def test_no_endpoint_is_retried_not_lost(env: AppEnv, aws: str) -> None:
    app = eventbridge_app(env, "http://127.0.0.1:9", ASYNC_EVENTS_RETRY_SCHEDULE=[60])
    subscribe(app, "orders", event_name="customer.created", metadata="eventbridge")
    publish(app, "customer.created", id=1)
    run_burst(app)
    assert states(app) == ["retrying"]
    assert attempts(app)[0].error_class == "EndpointConnectionError"


def test_an_endpoint_that_never_answers_is_one_bounded_attempt(env: AppEnv, aws: str) -> None:
    with hostile(never_answer) as (silent,):
        endpoint = silent.url.removesuffix("/hook")
        app = eventbridge_app(env, endpoint, ASYNC_EVENTS_TIMEOUT=1, ASYNC_EVENTS_RETRY_SCHEDULE=[60])
        subscribe(app, "orders", event_name="customer.created", metadata="eventbridge")
        publish(app, "customer.created", id=1)
        run_burst(app)
        assert silent.requests == 1  # botocore retried nothing by itself
    [attempt] = attempts(app)
    assert attempt.error_class == "ReadTimeoutError" and states(app) == ["retrying"]
    assert attempt.duration_ms is not None and attempt.duration_ms < 2000


PLUGIN = textwrap.dedent(
    """
    from flask_async_events import NotifyResult

    SENT = []

    class Recorder:
        def __init__(self, app):
            self.prefix = app.config.get("RECORDER_PREFIX", "")

        def validate_recipient(self, recipient):
            if not recipient.startswith("bin:"):
                raise ValueError("recipient_url must start with bin:")

        def notify(self, recipient, message):
            SENT.append((self.prefix + recipient.recipient_url, message.body))
            return NotifyResult(True, response_data="recorded")
    """
)


def test_a_notifier_from_an_entry_point_is_picked_up_and_used(
    env: AppEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "recorder_plugin"
    package.mkdir()
    (package / "__init__.py").write_text(PLUGIN)
    dist_info = tmp_path / "recorder_plugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: recorder-plugin\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[flask_async_events.notifiers]\nrecorder = recorder_plugin:Recorder\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    app = env.app(RECORDER_PREFIX="seen:")
    assert "recorder" in get_state(app).notifier_names()
    listing = json.loads(app.test_cli_runner().invoke(args=["async-events", "list", "--json"]).output)
    assert "recorder" in listing["notifiers"]
    with app.app_context(), pytest.raises(ValueError, match="must start with bin:"):
        events.subscribe("customer.created", "elsewhere", verification_token="t", metadata="recorder")
    subscribe(app, "bin:tray", event_name="customer.created", metadata="recorder")
    publish(app, "customer.created", id=3)
    run_burst(app)
    import recorder_plugin  # type: ignore[import-not-found]

    assert recorder_plugin.SENT == [("seen:bin:tray", '{"data":{"id":3}}')]
    assert states(app) == ["delivered"]
    sys.modules.pop("recorder_plugin", None)
