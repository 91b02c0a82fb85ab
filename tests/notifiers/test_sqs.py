"""SQS delivery against moto in server mode: real boto3 calls over HTTP, on loopback only."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask

from flask_async_events.notifiers.sqs import SqsNotifier, parse_queue
from flask_async_events.signing import verify_standard
from flask_async_events.state import get_state
from tests.appfactory import db, events
from tests.conftest import AppEnv, drain, run_burst
from tests.helpers import MAGENTO_TOKEN, attempts, deliveries, publish, states, subscribe
from tests.notifiers.moto import ACCOUNT, REGION, boto


def sqs_app(env: AppEnv, url: str, **config: Any) -> Flask:
    return env.app(ASYNC_EVENTS_SQS_ENDPOINT_URL=url, **config)


def create_queue(url: str, name: str) -> str:
    attributes = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
    return str(boto("sqs", url).create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])


def received(url: str, queue_url: str, expected: int) -> list[dict[str, Any]]:
    """Up to ``expected`` messages from the queue, with their attributes, deleted as read."""
    sqs = boto("sqs", url)
    messages: list[dict[str, Any]] = []
    for _ in range(20):
        if len(messages) >= expected:
            break
        answer = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
        )
        for message in answer.get("Messages", []):
            messages.append(message)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return messages


def count_batches(app: Flask) -> list[int]:
    """The number of entries of every SendMessageBatch call the app's notifier makes."""
    calls: list[int] = []
    notifier = get_state(app).notifier("sqs")
    assert isinstance(notifier, SqsNotifier)
    notifier.client(None).meta.events.register(
        "provide-client-params.sqs.SendMessageBatch", lambda params, **_: calls.append(len(params["Entries"]))
    )
    return calls


def test_a_delivery_reaches_a_queue_signed_and_logged(env: AppEnv, aws: str) -> None:
    queue_url = create_queue(aws, "orders")
    app = sqs_app(env, aws)
    subscribe(app, queue_url, event_name="customer.created", metadata="sqs")
    publish(app, "customer.created", id=7)
    run_burst(app)
    [message] = received(aws, queue_url, 1)
    assert message["Body"] == '{"data":{"id":7}}'  # the bytes the HTTP notifier would send
    attributes = {name: value["StringValue"] for name, value in message["MessageAttributes"].items()}
    [delivery] = deliveries(app)
    assert attributes["event"] == "customer.created" and attributes["webhook-id"] == delivery.uuid
    verify_standard(MAGENTO_TOKEN, attributes, message["Body"].encode(), tolerance=3600)  # a consumer can check it
    assert states(app) == ["delivered"]
    [attempt] = attempts(app)
    assert attempt.success and json.loads(attempt.response_data)["MessageId"] == message["MessageId"]


def test_a_fifo_queue_gets_the_subscription_as_group_and_the_delivery_as_deduplication_id(
    env: AppEnv, aws: str
) -> None:
    queue_url = create_queue(aws, "orders.fifo")
    app = sqs_app(env, aws)
    subscription_id = subscribe(app, queue_url, event_name="customer.created", metadata="sqs")
    for customer in range(3):
        publish(app, "customer.created", id=customer)
    run_burst(app)
    messages = received(aws, queue_url, 3)
    assert sorted(json.loads(m["Body"])["data"]["id"] for m in messages) == [0, 1, 2]
    assert {m["Attributes"]["MessageGroupId"] for m in messages} == {str(subscription_id)}
    by_uuid = {m["Attributes"]["MessageDeduplicationId"]: m["MessageAttributes"]["webhook-id"] for m in messages}
    assert sorted(by_uuid) == sorted(d.uuid for d in deliveries(app))
    assert all(uuid == attribute["StringValue"] for uuid, attribute in by_uuid.items())


def test_a_queue_arn_is_looked_up_and_25_deliveries_go_out_in_3_calls(env: AppEnv, aws: str) -> None:
    queue_url = create_queue(aws, "bulk")
    app = sqs_app(env, aws, ASYNC_EVENTS_SQS_REGION=REGION)
    calls = count_batches(app)
    subscribe(app, f"arn:aws:sqs:{REGION}:{ACCOUNT}:bulk", event_name="customer.created", metadata="sqs")
    with app.app_context():
        for customer in range(25):
            events.publish("customer.created", id=customer)
        db.session.commit()
    run_burst(app)
    assert sorted(calls) == [5, 10, 10]  # the batches go out on parallel threads
    assert sorted(json.loads(m["Body"])["data"]["id"] for m in received(aws, queue_url, 25)) == list(range(25))
    assert states(app) == ["delivered"] * 25


def test_partial_failures_retry_only_what_sqs_may_accept_later(env: AppEnv, aws: str) -> None:
    queue_url = create_queue(aws, "partial")
    app = sqs_app(env, aws, ASYNC_EVENTS_RETRY_SCHEDULE=[0])
    notifier = get_state(app).notifier("sqs")
    assert isinstance(notifier, SqsNotifier)
    sent: list[list[int]] = []
    failed_once: set[int] = set()

    def before(params: dict[str, Any], **kwargs: Any) -> None:
        sent.append([json.loads(entry["MessageBody"])["data"]["id"] for entry in params["Entries"]])

    def after(parsed: dict[str, Any], **kwargs: Any) -> None:
        # SQS can fail single entries of a call; moto never does, so the answer is rewritten here.
        ids = dict(zip(sent[-1], [entry["Id"] for entry in parsed["Successful"]], strict=True))
        failures = []
        if 1 in ids and 1 not in failed_once:
            failed_once.add(1)
            failures.append({"Id": ids[1], "SenderFault": False, "Code": "InternalError", "Message": "try again"})
        if 2 in ids:
            failures.append({"Id": ids[2], "SenderFault": True, "Code": "InvalidParameterValue", "Message": "bad"})
        failed = {failure["Id"] for failure in failures}
        parsed["Successful"] = [entry for entry in parsed["Successful"] if entry["Id"] not in failed]
        parsed["Failed"] = failures

    client = notifier.client(None)
    client.meta.events.register("provide-client-params.sqs.SendMessageBatch", before)
    client.meta.events.register("after-call.sqs.SendMessageBatch", after)
    subscribe(app, queue_url, event_name="customer.created", metadata="sqs")
    with app.app_context():
        for customer in range(4):
            events.publish("customer.created", id=customer)
        db.session.commit()
    drain(app, lambda: "retrying" not in states(app) and "pending" not in states(app))
    assert sent == [[0, 1, 2, 3], [1]]  # only the one SQS failed on its side is sent again
    assert states(app) == ["delivered", "delivered", "dead", "delivered"]
    [dead] = [a for a in attempts(app) if a.error_class == "InvalidParameterValue"]
    assert dead.response_data == "InvalidParameterValue: bad"


def test_an_oversized_message_and_a_missing_queue_are_dead_lettered(env: AppEnv, aws: str) -> None:
    queue_url = create_queue(aws, "sized")
    app = sqs_app(env, aws)
    calls = count_batches(app)
    subscribe(app, queue_url, event_name="sized.event", metadata="sqs")
    subscribe(app, f"{aws}/{ACCOUNT}/never-created", event_name="customer.created", metadata="sqs")
    with app.app_context():
        events.publish("sized.event", id=1, size=300 * 1024)
        events.publish("sized.event", id=2, size=10)
        events.publish("customer.created", id=3)
        db.session.commit()
    run_burst(app)
    assert calls == [1, 1]  # the small one, and one try at the missing queue
    assert states(app) == ["dead", "delivered", "dead"]
    too_long, missing = (a for a in attempts(app) if not a.success)
    assert (
        too_long.error_class == "MessageTooLong" and "over SQS's 262144-byte limit; not sent" in too_long.response_data
    )
    assert "NonExistentQueue" in (missing.error_class or "") or "QueueDoesNotExist" in (missing.error_class or "")
    assert len(received(aws, queue_url, 1)) == 1


def test_no_endpoint_is_retried_not_lost(env: AppEnv, aws: str) -> None:
    app = sqs_app(env, "http://127.0.0.1:9", ASYNC_EVENTS_RETRY_SCHEDULE=[60])
    subscribe(app, f"http://127.0.0.1:9/{ACCOUNT}/orders", event_name="customer.created", metadata="sqs")
    publish(app, "customer.created", id=1)
    run_burst(app)
    assert states(app) == ["retrying"]
    assert attempts(app)[0].error_class == "EndpointConnectionError"


@pytest.mark.parametrize(
    ("recipient", "message"),
    [
        ("orders", "is not an SQS queue URL or ARN"),
        ("arn:aws:sqs:us-east-1:123:orders", "is not an SQS queue URL or ARN"),
        (f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/has space", "is not an SQS queue URL or ARN"),
        (f"https://attacker.example/{ACCOUNT}/orders", "must be on SQS's own https host"),
        (f"http://sqs.us-east-1.amazonaws.com/{ACCOUNT}/orders", "must be on SQS's own https host"),
        (f"http://127.0.0.2:9/{ACCOUNT}/orders", "must be on SQS's own https host"),
    ],
)
def test_recipients_are_validated_at_subscribe_time(app: Flask, recipient: str, message: str) -> None:
    with app.app_context():
        with pytest.raises(ValueError, match=message):
            events.subscribe("customer.created", recipient, verification_token="t", metadata="sqs")
        db.session.rollback()


def test_queue_of_a_recipient() -> None:
    url = f"https://sqs.eu-west-1.amazonaws.com/{ACCOUNT}/orders.fifo"
    queue = parse_queue(url)
    assert (queue.region, queue.url, queue.name, queue.fifo) == ("eu-west-1", url, "orders.fifo", True)
    arn = parse_queue(f"arn:aws:sqs:eu-west-1:{ACCOUNT}:orders")
    assert (arn.region, arn.url, arn.account, arn.fifo) == ("eu-west-1", None, ACCOUNT, False)
    local = parse_queue(f"http://127.0.0.1:4566/{ACCOUNT}/orders", "http://127.0.0.1:4566")
    assert (local.region, local.url) == (None, f"http://127.0.0.1:4566/{ACCOUNT}/orders")
