"""The ``http`` notifier: a signed ``POST`` of the event body to the recipient URL.

Each thread keeps its own ``requests.Session``, so connections stay alive across deliveries and
jobs. Redirects are never followed; the total time of an attempt is bounded by ``timeout``;
connections go only to addresses the SSRF policy allows, checked at connect time.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import requests

from flask_async_events.notifiers.base import Message, NotifyResult, Recipient
from flask_async_events.retry import parse_retry_after
from flask_async_events.signing import legacy_signature, signing_key, standard_signature
from flask_async_events.ssrf import AddressPolicy, ForbiddenAddress, guarded_adapter
from flask_async_events.version import __version__

RESPONSE_EXCERPT = 8192
RETRYABLE_STATUS = frozenset({408, 429})
USER_AGENT = f"flask-async-events/{__version__}"


class HttpNotifier:
    """Posts messages with Standard Webhooks headers and the seed's hex signature header."""

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
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # never route webhooks through an environment proxy
            adapter = guarded_adapter(self.policy)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
        return session

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

    def headers(self, subscription: Recipient, message: Message, timestamp: int) -> dict[str, str]:
        """Every header of one attempt, signatures included."""
        key = signing_key(subscription.verification_token)
        body = message.body.encode("utf-8")
        return {
            "Content-Type": message.content_type,
            "User-Agent": USER_AGENT,
            "webhook-id": message.delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": standard_signature([key], message.delivery_id, timestamp, body),
            self.signature_header: legacy_signature(key, body),
            "x-async-events-event": message.event_name,
        }

    def notify(self, subscription: Recipient, message: Message) -> NotifyResult:
        deadline = time.monotonic() + self.timeout
        headers = self.headers(subscription, message, int(time.time()))
        try:
            response = self._session().post(
                subscription.recipient_url,
                data=message.body.encode("utf-8"),
                headers=headers,
                timeout=(self.connect_timeout, self.timeout),
                allow_redirects=False,
                stream=True,
            )
            with response:
                text = _read_excerpt(response, deadline)
        except ForbiddenAddress as exc:
            return NotifyResult(False, response_data=str(exc), error_class="ForbiddenAddress")
        except requests.Timeout as exc:
            return NotifyResult(False, retryable=True, response_data=f"Timed out: {exc}", error_class=_name(exc))
        except requests.RequestException as exc:
            return NotifyResult(False, retryable=True, response_data=f"Request failed: {exc}", error_class=_name(exc))
        return classify(response.status_code, text or response.reason or "", response.headers.get("Retry-After"))


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


def _read_excerpt(response: requests.Response, deadline: float) -> str:
    """Read up to :data:`RESPONSE_EXCERPT` bytes of the body, giving up at the deadline."""
    if 300 <= response.status_code < 400:
        return response.headers.get("Location", "")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=4096):
        chunks.append(chunk)
        size += len(chunk)
        if size >= RESPONSE_EXCERPT or time.monotonic() > deadline:
            break
    return b"".join(chunks)[:RESPONSE_EXCERPT].decode(response.encoding or "utf-8", errors="replace")


def _name(exc: BaseException) -> str:
    return type(exc).__name__
