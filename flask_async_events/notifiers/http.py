"""The ``http`` notifier: a signed ``POST`` of the event body to the recipient URL.

One urllib3 pool manager per notifier (thread-safe) keeps connections alive across deliveries and
jobs; urllib3 directly, because requests' extra layers cost more CPU than the request itself when
the receiver is fast. Redirects are never followed; the total time of an attempt is bounded by
``timeout``; connections go only to addresses the SSRF policy allows, checked at connect time.
"""

from __future__ import annotations

import codecs
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import certifi
import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, TimeoutError

from flask_async_events.notifiers.base import Message, NotifyResult, Recipient
from flask_async_events.signing import legacy_signature, signing_key, standard_signature
from flask_async_events.ssrf import AddressPolicy, ForbiddenAddress, guarded_pool_manager
from flask_async_events.version import __version__

BODY_EXCERPT = 8192  # bytes of a response body read; the rest is never read
RETRYABLE_STATUS = frozenset({408, 429})
USER_AGENT = f"flask-async-events/{__version__}"
# Connections kept per host: enough for every sending thread; more are opened and closed as needed.
POOL_SIZE = 32
# Hosts whose connections are kept (least recently used ones are closed first).
POOLS = 1000


class HttpNotifier:
    """Posts messages with Standard Webhooks headers and the Magento module's hex signature header."""

    def __init__(
        self,
        *,
        connect_timeout: float = 5.0,
        timeout: float = 15.0,
        signature_header: str = "x-magento-signature",
        policy: AddressPolicy | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.signature_header = signature_header
        self.policy = policy or AddressPolicy()
        self._http = guarded_pool_manager(
            self.policy, num_pools=POOLS, maxsize=POOL_SIZE, block=False, ca_certs=certifi.where()
        )

    def validate_recipient(self, recipient: str) -> None:
        """An absolute http(s) URL with a host and no credentials in it."""
        try:
            parts = urlsplit(recipient)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise ValueError(f"recipient_url {recipient!r} is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"recipient_url {recipient!r} must be an absolute http:// or https:// URL")
        if parts.username is not None or parts.password is not None:
            raise ValueError("recipient_url must not contain credentials; use the verification token instead")
        try:
            self.policy.check_recipient_host(parts.hostname)
        except ForbiddenAddress as exc:
            raise ValueError(f"recipient_url: {exc}") from None

    def headers(self, recipient: Recipient, message: Message, timestamp: int) -> dict[str, str]:
        """Every header of one attempt, signatures included."""
        key = signing_key(recipient.verification_token)
        body = message.body.encode("utf-8")
        return {
            "Content-Type": message.content_type,
            "User-Agent": USER_AGENT,
            "webhook-id": message.delivery_uuid,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": standard_signature([key], message.delivery_uuid, timestamp, body),
            self.signature_header: legacy_signature(key, body),
            "x-async-events-event": message.event_name,
        }

    def notify(self, recipient: Recipient, message: Message) -> NotifyResult:
        deadline = time.monotonic() + self.timeout
        headers = self.headers(recipient, message, int(time.time()))
        try:
            response = self._http.request(
                "POST",
                recipient.recipient_url,
                body=message.body.encode("utf-8"),
                headers=headers,
                timeout=urllib3.Timeout(connect=self.connect_timeout, read=self.timeout),
                redirect=False,
                retries=False,
                preload_content=False,
            )
            text = _read_excerpt(response, deadline)
        except ForbiddenAddress as exc:
            return NotifyResult(False, response_data=str(exc), error_class="ForbiddenAddress")
        except NewConnectionError as exc:  # a subclass of urllib3's TimeoutError, but not a timeout
            return _failed("Request failed", exc, "ConnectionError")
        except ConnectTimeoutError as exc:
            return _failed("Timed out", exc, "ConnectTimeout")
        except TimeoutError as exc:
            return _failed("Timed out", exc, "ReadTimeout")
        except (HTTPError, OSError) as exc:
            return _failed("Request failed", exc, "ConnectionError")
        return classify(response.status, text or response.reason or "", response.headers.get("Retry-After"))


def classify(status: int, response_data: str, retry_after_header: str | None) -> NotifyResult:
    """The outcome of an HTTP status: 2xx success; 408, 429 and 5xx retryable; 410 gone; else final."""
    if 200 <= status < 300:
        return NotifyResult(True, status_code=status, response_data=response_data)
    retryable = status in RETRYABLE_STATUS or status >= 500
    retry_after = parse_retry_after(retry_after_header, datetime.now(UTC)) if retryable else None
    if 300 <= status < 400:
        response_data = f"Redirect to {response_data!r} not followed" if response_data else "Redirect not followed"
    return NotifyResult(
        False,
        retryable=retryable,
        retry_after=retry_after,
        status_code=status,
        response_data=response_data,
        gone=status == 410,
    )


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdecimal():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _read_excerpt(response: urllib3.BaseHTTPResponse, deadline: float) -> str:
    """Read up to :data:`BODY_EXCERPT` bytes of the body, giving up at the deadline. A
    connection whose body was not read to the end is closed rather than reused."""
    if 300 <= response.status < 400:
        response.close()
        response.release_conn()
        return str(response.headers.get("Location", ""))
    chunks: list[bytes] = []
    size = 0
    finished = True
    try:
        for chunk in response.stream(4096):
            chunks.append(chunk)
            size += len(chunk)
            if size >= BODY_EXCERPT or time.monotonic() > deadline:
                finished = False
                break
    finally:
        if not finished:
            response.close()
        response.release_conn()
    charset = _charset(response.headers.get("Content-Type", ""))
    return b"".join(chunks)[:BODY_EXCERPT].decode(charset, errors="replace")


def _charset(content_type: str) -> str:
    """The charset a Content-Type names, if Python knows it; UTF-8 otherwise."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "charset" and value:
            try:
                return codecs.lookup(value.strip('"')).name
            except LookupError:
                break
    return "utf-8"


def _failed(what: str, exc: Exception, error_class: str) -> NotifyResult:
    """A retryable failure with no response; the error classes are the ones requests uses."""
    return NotifyResult(False, retryable=True, response_data=f"{what}: {exc}", error_class=error_class)
