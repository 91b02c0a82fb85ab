"""What the AWS notifiers share: one boto3 client per service and region per process, bounded by
the package's timeouts with no retries of botocore's own, the reading of a failed call, and the
splitting of a batch into calls within a service's limits."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

from flask_async_events.notifiers.base import NotifyResult

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
Entry = dict[str, Any]


class Clients:
    """boto3 clients of one service, one per region, made on first use and reused by every thread."""

    def __init__(
        self, service: str, *, region: str | None, endpoint_url: str | None, connect_timeout: float, timeout: float
    ) -> None:
        self.service = service
        self.region = region
        self.endpoint_url = endpoint_url
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self._clients: dict[str | None, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, region: str | None) -> Any:
        """The client for ``region`` (default: the configured one, then boto3's chain)."""
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
                    self.service, region_name=region, endpoint_url=self.endpoint_url, config=config
                )
            return self._clients[region]


def failed_call(exc: Exception, retryable_codes: frozenset[str]) -> NotifyResult:
    """The result, for every entry, of a call that failed as a whole: throttling, server errors and
    what an operator can fix (no credentials, an unreachable endpoint) are retried; the rest are final."""
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):  # BotoCoreError: no credentials, no region, endpoint unreachable
        return NotifyResult(False, retryable=True, response_data=str(exc), error_class=type(exc).__name__)
    error = exc.response.get("Error", {})
    code = error.get("Code", "ClientError")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    retryable = code in retryable_codes or status is None or status == 429 or status >= 500
    return NotifyResult(
        False,
        retryable=retryable,
        status_code=status,
        response_data=f"{code}: {error.get('Message', '')}",
        error_class=code,
    )


def chunks_within(
    entries: Sequence[T], size_of: Callable[[T], int], *, max_entries: int, max_bytes: int
) -> list[list[T]]:
    """Split entries, in order, into calls of at most ``max_entries`` and ``max_bytes``."""
    chunks: list[list[T]] = []
    current: list[T] = []
    size = 0
    for entry in entries:
        entry_size = size_of(entry)
        if current and (len(current) == max_entries or size + entry_size > max_bytes):
            chunks.append(current)
            current, size = [], 0
        current.append(entry)
        size += entry_size
    if current:
        chunks.append(current)
    return chunks


class Batch(Generic[K]):
    """The entries of one ``notify_batch`` call, grouped by where they go (a region, a queue), one
    result per message in the order given. An entry over the service's size limit is refused, not
    sent; the rest go out in calls within the service's limits."""

    def __init__(
        self,
        count: int,
        *,
        service: str,
        size_of: Callable[[Entry], int],
        max_entries: int,
        max_bytes: int,
        too_large: str,
    ) -> None:
        self.service = service
        self.results: list[NotifyResult | None] = [None] * count
        self.size_of = size_of
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.too_large = too_large  # the error class of a refused entry, e.g. EntryTooLarge
        self._groups: dict[K, list[tuple[int, Entry]]] = defaultdict(list)

    def refuse(self, index: int, result: NotifyResult) -> None:
        self.results[index] = result

    def add(self, index: int, destination: K, entry: Entry) -> None:
        size = self.size_of(entry)
        if size > self.max_bytes:
            reason = f"Too large: {size} bytes, over {self.service}'s {self.max_bytes}-byte limit; not sent"
            self.refuse(index, NotifyResult(False, response_data=reason, error_class=self.too_large))
            return
        self._groups[destination].append((index, entry))

    def send(self, call: Callable[[K, list[Entry]], list[NotifyResult]]) -> list[NotifyResult]:
        """Make the calls, one per chunk of a destination's entries; every message's result."""
        for destination, entries in self._groups.items():
            chunks = chunks_within(
                entries, lambda item: self.size_of(item[1]), max_entries=self.max_entries, max_bytes=self.max_bytes
            )
            for chunk in chunks:
                sent = call(destination, [entry for _, entry in chunk])
                for (index, _), result in zip(chunk, sent, strict=True):
                    self.results[index] = result
        return [result for result in self.results if result is not None]


def no_result(operation: str) -> NotifyResult:
    """The result of an entry the service said nothing about: retried."""
    return NotifyResult(False, retryable=True, response_data=f"{operation} returned no result for this entry")
