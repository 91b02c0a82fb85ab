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
import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

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
            raise ValueError(
                f"recipient_url {recipient!r} is not an EventBridge bus name or an event-bus/rule ARN "
                "(e.g. 'orders' or 'arn:aws:events:eu-west-1:123456789012:event-bus/orders')"
            )
        return None, recipient
    if match["kind"] == "event-bus":
        return match["region"], recipient
    parts = match["name"].split("/")
    if len(parts) > 2:
        raise ValueError(f"recipient_url {recipient!r}: a rule ARN ends in rule/NAME or rule/BUS/NAME")
    bus = parts[0] if len(parts) == 2 else "default"
    prefix = f"arn:{match['partition']}:events:{match['region']}:{match['account']}"
    return match["region"], f"{prefix}:event-bus/{bus}"


def entry_size(entry: dict[str, Any]) -> int:
    """An entry's size as EventBridge counts it (UTF-8 bytes of its parts)."""
    return TIME_BYTES + sum(len(str(entry[key]).encode()) for key in ("Source", "DetailType", "Detail"))


class EventBridgeNotifier:
    """Sends messages to EventBridge with PutEvents, batching what is due together."""

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
        self.region = region
        self.endpoint_url = endpoint_url
        self.max_batch = max_batch
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self._clients: dict[str | None, Any] = {}
        self._lock = threading.Lock()

    def validate_recipient(self, recipient: str) -> None:
        event_bus(recipient)

    def client(self, region: str | None) -> Any:
        """The boto3 ``events`` client for a region (default: configured, then boto3's chain)."""
        region = region or self.region
        with self._lock:
            if region not in self._clients:
                import boto3  # imported on first use: web processes that never send do not pay for it
                from botocore.config import Config

                # The package's timeouts, and no retries of botocore's own: a failed call is an
                # attempt like any other, retried on the delivery's schedule.
                config = Config(
                    connect_timeout=self.connect_timeout,
                    read_timeout=self.timeout,
                    retries={"total_max_attempts": 1},
                )
                self._clients[region] = boto3.session.Session().client(
                    "events", region_name=region, endpoint_url=self.endpoint_url, config=config
                )
            return self._clients[region]

    def notify(self, recipient: Recipient, message: Message) -> NotifyResult:
        return self.notify_batch([(recipient, message)])[0]

    def notify_batch(self, batch: Sequence[tuple[Recipient, Message]]) -> list[NotifyResult]:
        """Send a batch; one result per entry, in order. Oversized entries are refused, not sent."""
        results: list[NotifyResult | None] = [None] * len(batch)
        by_region: dict[str | None, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        for index, (recipient, message) in enumerate(batch):
            try:
                region, bus = event_bus(recipient.recipient_url)
            except ValueError as exc:
                results[index] = NotifyResult(False, response_data=str(exc), error_class="InvalidRecipient")
                continue
            entry = {
                "Source": self.source,
                "DetailType": message.event_name,
                "Detail": message.body,
                "EventBusName": bus,
                "Time": message.created_at,
            }
            size = entry_size(entry)
            if size > MAX_BATCH_BYTES:
                reason = f"Entry is {size} bytes, over EventBridge's {MAX_BATCH_BYTES}-byte limit; not sent"
                results[index] = NotifyResult(False, response_data=reason, error_class="EntryTooLarge")
                continue
            by_region[region].append((index, entry))
        for region, entries in by_region.items():
            for chunk in _chunks_within_limits(entries):
                for index, result in zip((i for i, _ in chunk), self._put(region, [e for _, e in chunk]), strict=True):
                    results[index] = result
        return [result for result in results if result is not None]

    def _put(self, region: str | None, entries: list[dict[str, Any]]) -> list[NotifyResult]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client(region).put_events(Entries=entries)
        except ClientError as exc:  # the whole call failed: throttling and server errors are retried
            error = exc.response.get("Error", {})
            code = error.get("Code", "ClientError")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            retryable = code in RETRYABLE_CODES or status is None or status == 429 or status >= 500
            failure = NotifyResult(
                False,
                retryable=retryable,
                status_code=status,
                response_data=f"{code}: {error.get('Message', '')}",
                error_class=code,
            )
            return [failure] * len(entries)
        except BotoCoreError as exc:  # no credentials, no region, endpoint unreachable: fixable, so retried
            failure = NotifyResult(False, retryable=True, response_data=str(exc), error_class=type(exc).__name__)
            return [failure] * len(entries)
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
        if len(results) != len(entries):
            missing = NotifyResult(False, retryable=True, response_data="PutEvents returned no result for this entry")
            results.extend([missing] * (len(entries) - len(results)))
        return results


def _chunks_within_limits(entries: list[tuple[int, dict[str, Any]]]) -> list[list[tuple[int, dict[str, Any]]]]:
    """Split entries into PutEvents calls of at most 10 entries and 256 KiB."""
    chunks: list[list[tuple[int, dict[str, Any]]]] = []
    current: list[tuple[int, dict[str, Any]]] = []
    size = 0
    for item in entries:
        item_size = entry_size(item[1])
        if current and (len(current) == MAX_ENTRIES or size + item_size > MAX_BATCH_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append(item)
        size += item_size
    if current:
        chunks.append(current)
    return chunks
