"""The ``eventbridge`` notifier (the Magento module's ``event_bridge``): PutEvents to an Amazon EventBridge bus.

The recipient is a bus name, a bus ARN, or (as in the Magento module's README) a rule ARN, which is sent to
the bus the rule belongs to. Deliveries due together go out in PutEvents calls of up to 10 entries
and 256 KiB, and each entry's result counts on its own. Credentials and region come from boto3's
default chain unless configured; one client per region per process, reused. A call is bounded by
the package's connect timeout and by its timeout per read (botocore's limits: an AWS endpoint does
not drip), and botocore retries nothing itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from flask_async_events.errors import InvalidSubscription
from flask_async_events.notifiers.aws import Batch, Clients, failed_call, no_result
from flask_async_events.notifiers.base import Message, NotifyResult, Recipient

MAX_ENTRIES = 10
MAX_BATCH_BYTES = 256 * 1024
RETRYABLE_CODES = frozenset({"InternalFailure", "ThrottlingException"})
BUS_NAME = re.compile(r"^[A-Za-z0-9._\-/]{1,256}$")
ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):events:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"(?P<kind>event-bus|rule)/(?P<name>[A-Za-z0-9._\-/]+)$"
)
TIME_BYTES = 14  # how EventBridge counts an entry's Time toward the size limit


def event_bus(recipient: str) -> tuple[str | None, str]:
    """``(region or None, EventBusName)`` for a recipient; ``ValueError`` if it is neither a bus nor a rule."""
    match = ARN.match(recipient)
    if match is None:
        if recipient.startswith("arn:") or not BUS_NAME.match(recipient):
            raise InvalidSubscription(
                f"recipient_url {recipient!r} is not an EventBridge bus name or an event-bus/rule ARN "
                "(e.g. 'orders' or 'arn:aws:events:eu-west-1:123456789012:event-bus/orders')"
            )
        return None, recipient
    if match["kind"] == "event-bus":
        return match["region"], recipient
    parts = match["name"].split("/")
    if len(parts) > 2:
        raise InvalidSubscription(f"recipient_url {recipient!r}: a rule ARN ends in rule/NAME or rule/BUS/NAME")
    bus = parts[0] if len(parts) == 2 else "default"
    prefix = f"arn:{match['partition']}:events:{match['region']}:{match['account']}"
    return match["region"], f"{prefix}:event-bus/{bus}"


def entry_size(entry: dict[str, Any]) -> int:
    """An entry's size as EventBridge counts it (UTF-8 bytes of its parts)."""
    return TIME_BYTES + sum(len(str(entry[key]).encode()) for key in ("Source", "DetailType", "Detail"))


class EventBridgeNotifier:
    """Sends messages to EventBridge with PutEvents, batching what is due together."""

    uses_host_credentials = True  # the worker's AWS credentials: owners get only allow-listed targets

    def __init__(
        self,
        *,
        source: str,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_batch: int = MAX_ENTRIES,
        connect_timeout: float = 5.0,
        timeout: float = 15.0,
    ) -> None:
        self.source = source
        self.max_batch = max_batch
        self.client = Clients(
            "events", region=region, endpoint_url=endpoint_url, connect_timeout=connect_timeout, timeout=timeout
        )

    def validate_recipient(self, recipient: str) -> None:
        event_bus(recipient)

    def notify(self, recipient: Recipient, message: Message) -> NotifyResult:
        return self.notify_batch([(recipient, message)])[0]

    def notify_batch(self, batch: Sequence[tuple[Recipient, Message]]) -> list[NotifyResult]:
        """Send a batch; one result per entry, in order. Oversized entries are refused, not sent."""
        calls: Batch[str | None] = Batch(
            len(batch),
            service="EventBridge",
            size_of=entry_size,
            max_entries=MAX_ENTRIES,
            max_bytes=MAX_BATCH_BYTES,
            too_large="EntryTooLarge",
        )
        for index, (recipient, message) in enumerate(batch):
            try:
                region, bus = event_bus(recipient.recipient_url)
            except ValueError as exc:
                calls.refuse(index, NotifyResult(False, response_data=str(exc), error_class="InvalidRecipient"))
                continue
            entry = {
                "Source": self.source,
                "DetailType": message.event_name,
                "Detail": message.body,
                "EventBusName": bus,
                "Time": message.created_at,
            }
            calls.add(index, region, entry)
        return calls.send(self._put)

    def _put(self, region: str | None, entries: list[dict[str, Any]]) -> list[NotifyResult]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client(region).put_events(Entries=entries)
        except (ClientError, BotoCoreError) as exc:
            return [failed_call(exc, RETRYABLE_CODES)] * len(entries)
        results = []
        for outcome in response.get("Entries", []):
            code = outcome.get("ErrorCode")
            if code:
                results.append(
                    NotifyResult(
                        False,
                        retryable=code in RETRYABLE_CODES,
                        response_data=f"{code}: {outcome.get('ErrorMessage', '')}",
                        error_class=code,
                    )
                )
            else:
                results.append(NotifyResult(True, response_data=json.dumps({"EventId": outcome.get("EventId")})))
        return (results + [no_result("PutEvents")] * len(entries))[: len(entries)]
