"""The ``sqs`` notifier: SendMessageBatch to an Amazon SQS queue.

The recipient is a queue URL (``https://sqs.eu-west-1.amazonaws.com/123456789012/orders``) or ARN
(``arn:aws:sqs:eu-west-1:123456789012:orders``). A URL's host must be SQS's own or the configured
endpoint's, so a subscriber cannot aim the worker's AWS credentials at another host. Deliveries
due together go out in calls of up to 10 messages and 256 KiB per queue, and each message's result
counts on its own. Each message carries its body byte for byte and, as attributes, the event name and
the Standard Webhooks ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``, so a consumer can
check it like an HTTP receiver. A FIFO queue (``.fifo``) gets ``MessageGroupId`` = the subscription id
(its events stay in order) and ``MessageDeduplicationId`` = the delivery uuid (a retry within SQS's
five minutes after a lost answer is not queued twice).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask_async_events.errors import InvalidSubscription
from flask_async_events.notifiers.aws import Batch, Clients, failed_call, no_result
from flask_async_events.notifiers.base import Message, NotifyResult, Recipient
from flask_async_events.signing import signing_key, standard_signature

MAX_ENTRIES = 10
MAX_BATCH_BYTES = 256 * 1024
RETRYABLE_CODES = frozenset({"ServiceUnavailable", "InternalError", "ThrottlingException", "RequestThrottled"})
ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):sqs:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):(?P<name>[A-Za-z0-9_-]{1,80}(?:\.fifo)?)$"
)
URL_PATH = re.compile(r"^/(?P<account>\d{12})/(?P<name>[A-Za-z0-9_-]{1,80}(?:\.fifo)?)$")
AWS_HOST = re.compile(
    r"^(?:sqs\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?|(?P<legacy>[a-z0-9-]+)\.queue\.amazonaws\.com)$"
)


@dataclass(frozen=True)
class Queue:
    """Where a recipient's messages go: its region (None: the configured one) and queue URL, or
    for an ARN the name and account to look the URL up with."""

    region: str | None
    url: str | None
    name: str
    account: str

    @property
    def fifo(self) -> bool:
        return self.name.endswith(".fifo")


def parse_queue(recipient: str, endpoint_url: str | None = None) -> Queue:
    """The queue a recipient names; ``ValueError`` naming ``recipient_url`` otherwise."""
    match = ARN.match(recipient)
    if match is not None:
        return Queue(match["region"], None, match["name"], match["account"])
    example = "'https://sqs.eu-west-1.amazonaws.com/123456789012/orders' or 'arn:aws:sqs:eu-west-1:123456789012:orders'"
    try:
        parts = urlsplit(recipient)
        port = parts.port
    except ValueError:
        raise InvalidSubscription(f"recipient_url {recipient!r} is not an SQS queue URL or ARN ({example})") from None
    path = URL_PATH.match(parts.path)
    if parts.scheme not in ("http", "https") or not parts.hostname or path is None or parts.query or parts.fragment:
        raise InvalidSubscription(f"recipient_url {recipient!r} is not an SQS queue URL or ARN ({example})")
    host = AWS_HOST.match(parts.hostname)
    if host is not None and parts.scheme == "https":
        return Queue(host["region"] or host["legacy"], recipient, path["name"], path["account"])
    if endpoint_url is not None:
        endpoint = urlsplit(endpoint_url)
        if (parts.scheme, parts.hostname, port) == (endpoint.scheme, endpoint.hostname, endpoint.port):
            return Queue(None, recipient, path["name"], path["account"])
    raise InvalidSubscription(
        f"recipient_url {recipient!r}: an SQS queue URL must be on SQS's own https host"
        " (sqs.<region>.amazonaws.com) or on ASYNC_EVENTS_SQS_ENDPOINT_URL"
    )


class SqsNotifier:
    """Sends messages to SQS queues with SendMessageBatch, batching what is due together per queue."""

    uses_host_credentials = True  # the worker's AWS credentials: owners get only allow-listed targets

    def __init__(
        self,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        connect_timeout: float = 5.0,
        timeout: float = 15.0,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.max_batch = MAX_ENTRIES
        self.client = Clients(
            "sqs", region=region, endpoint_url=endpoint_url, connect_timeout=connect_timeout, timeout=timeout
        )
        self._urls: dict[tuple[str | None, str, str], str] = {}

    def validate_recipient(self, recipient: str) -> None:
        parse_queue(recipient, self.endpoint_url)

    def notify(self, recipient: Recipient, message: Message) -> NotifyResult:
        return self.notify_batch([(recipient, message)])[0]

    def notify_batch(self, batch: Sequence[tuple[Recipient, Message]]) -> list[NotifyResult]:
        """Send a batch; one result per message, in order. Oversized messages are refused, not sent."""
        calls: Batch[Queue] = Batch(
            len(batch),
            service="SQS",
            size_of=_size,
            max_entries=MAX_ENTRIES,
            max_bytes=MAX_BATCH_BYTES,
            too_large="MessageTooLong",
        )
        timestamp = int(time.time())
        for index, (recipient, message) in enumerate(batch):
            try:
                queue = parse_queue(recipient.recipient_url, self.endpoint_url)
            except ValueError as exc:
                calls.refuse(index, NotifyResult(False, response_data=str(exc), error_class="InvalidRecipient"))
                continue
            calls.add(index, queue, _entry(recipient, message, queue, timestamp))
        return calls.send(self._send)

    def _queue_url(self, queue: Queue) -> str:
        """A queue's URL; for an ARN, looked up once per process."""
        if queue.url is not None:
            return queue.url
        key = (queue.region, queue.account, queue.name)
        if key not in self._urls:
            answer = self.client(queue.region).get_queue_url(QueueName=queue.name, QueueOwnerAWSAccountId=queue.account)
            self._urls[key] = answer["QueueUrl"]
        return self._urls[key]

    def _send(self, queue: Queue, entries: list[dict[str, Any]]) -> list[NotifyResult]:
        from botocore.exceptions import BotoCoreError, ClientError

        for number, entry in enumerate(entries):
            entry["Id"] = str(number)
        try:
            response = self.client(queue.region).send_message_batch(QueueUrl=self._queue_url(queue), Entries=entries)
        except (ClientError, BotoCoreError) as exc:
            return [failed_call(exc, RETRYABLE_CODES)] * len(entries)
        by_id: dict[str, NotifyResult] = {}
        for success in response.get("Successful", []):
            by_id[success["Id"]] = NotifyResult(True, response_data=json.dumps({"MessageId": success.get("MessageId")}))
        for failure in response.get("Failed", []):
            code = failure.get("Code", "Failed")
            by_id[failure["Id"]] = NotifyResult(
                False,
                # SenderFault: the message itself is wrong (final); otherwise SQS's side (retried).
                retryable=not failure.get("SenderFault", False) or code in RETRYABLE_CODES,
                response_data=f"{code}: {failure.get('Message', '')}",
                error_class=code,
            )
        missing = no_result("SendMessageBatch")
        return [by_id.get(entry["Id"], missing) for entry in entries]


def _entry(recipient: Recipient, message: Message, queue: Queue, timestamp: int) -> dict[str, Any]:
    """One SendMessageBatch entry (its ``Id`` is given per call)."""
    body = message.body.encode("utf-8")
    keys = [signing_key(token) for token in (recipient.verification_token, *recipient.previous_tokens)]
    attributes = {
        "event": message.event_name,
        "webhook-id": message.delivery_uuid,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_signature(keys, message.delivery_uuid, timestamp, body),
        "content-type": message.content_type,
    }
    entry: dict[str, Any] = {
        "MessageBody": message.body,
        "MessageAttributes": {name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()},
    }
    if queue.fifo:
        entry["MessageGroupId"] = str(recipient.subscription_id)
        entry["MessageDeduplicationId"] = message.delivery_uuid
    return entry


def _size(entry: dict[str, Any]) -> int:
    """A message's size as SQS counts it: its body, and each attribute's name, type and value."""
    attributes = entry["MessageAttributes"]
    return len(entry["MessageBody"].encode("utf-8")) + sum(
        len(name) + len(value["DataType"]) + len(value["StringValue"].encode("utf-8"))
        for name, value in attributes.items()
    )
