"""The ``http`` notifier: a signed ``POST`` of the event body to the recipient URL, with libcurl.

libcurl (through pycurl) keeps the two promises this notifier makes, which Python's HTTP clients do
not (their timeouts apply per socket operation, so a receiver sending one byte a second holds an
attempt forever):

- ``timeout`` bounds the *whole* attempt: name lookup, connect, TLS, sending the body, the status
  line and headers however slowly they trickle in, and the body excerpt. At the deadline the
  transfer ends, its socket is closed, and the attempt is a ``Timeout``.
- Connections go only to addresses the SSRF policy allows, checked on the address libcurl is about
  to connect to (no window for a DNS answer that changes in between), keeping the Host header,
  TLS SNI and certificate check of the original name.

Only the first :data:`BODY_EXCERPT` bytes of an answer are read: a huge or endless body costs no
memory. Redirects are never followed; proxies from the environment are never used. Each sending
thread keeps one curl handle, so its connections stay alive across deliveries and jobs.
"""

from __future__ import annotations

import codecs
import io
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import certifi
import pycurl

from flask_async_events.errors import ForbiddenAddress, InvalidSubscription
from flask_async_events.notifiers.base import Message, NotifyResult, Recipient
from flask_async_events.signing import legacy_signature, signing_key, standard_signature
from flask_async_events.ssrf import AddressPolicy
from flask_async_events.version import __version__

BODY_EXCERPT = 8192  # bytes of a response body read; the rest is never read
RETRYABLE_STATUS = frozenset({408, 429})
USER_AGENT = f"flask-async-events/{__version__}"
MAX_CONNECTIONS = 64  # kept alive per sending thread (least recently used ones are closed first)
TIMED_OUT = pycurl.E_OPERATION_TIMEDOUT
HUNG_UP = pycurl.E_SEND_FAIL_REWIND  # a kept-alive connection closed after the request went out
EXCERPT_READ = pycurl.E_WRITE_ERROR  # what libcurl says when the body callback stops reading


@dataclass
class _Answer:
    """What one transfer received besides what libcurl keeps (status, headers it parses): the start
    of the body."""

    body: bytearray = field(default_factory=bytearray)
    refused: str | None = None  # why the address policy refused a connection
    sockets: list[socket.socket] = field(default_factory=list)  # ours; libcurl works on duplicates

    def body_chunk(self, chunk: bytes) -> int | None:
        """Keep the excerpt; returning 0 makes libcurl stop reading (and close the connection)."""
        self.body.extend(chunk)
        return 0 if len(self.body) >= BODY_EXCERPT else None


class HttpNotifier:
    """Posts messages with Standard Webhooks headers and the Magento module's hex signature header."""

    sends_headers = True  # a subscription's own request headers go with each message

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

    def validate_recipient(self, recipient: str) -> None:
        """An absolute http(s) URL with a host and no credentials in it."""
        try:
            parts = urlsplit(recipient)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise InvalidSubscription(f"recipient_url {recipient!r} is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidSubscription(f"recipient_url {recipient!r} must be an absolute http:// or https:// URL")
        if parts.username is not None or parts.password is not None:
            raise InvalidSubscription("recipient_url must not contain credentials; use the verification token instead")
        try:
            self.policy.check_recipient_host(parts.hostname)
        except ForbiddenAddress as exc:
            raise InvalidSubscription(f"recipient_url: {exc}") from None

    def headers(self, recipient: Recipient, message: Message, timestamp: int) -> dict[str, str]:
        """Every header of one attempt: the subscription's own first, then ours, signatures included
        (``webhook-signature`` with one signature per valid token, the newest first; the hex header
        with the current token only, since it holds one)."""
        key = signing_key(recipient.verification_token)
        keys = [key, *(signing_key(token) for token in recipient.previous_tokens)]
        body = message.body.encode("utf-8")
        return {
            **dict(recipient.headers),
            "Content-Type": message.content_type,
            "User-Agent": USER_AGENT,
            "webhook-id": message.delivery_uuid,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": standard_signature(keys, message.delivery_uuid, timestamp, body),
            self.signature_header: legacy_signature(key, body),
            "x-async-events-event": message.event_name,
            **dict(message.trace_headers),
        }

    def notify(self, recipient: Recipient, message: Message) -> NotifyResult:
        headers = self.headers(recipient, message, int(time.time()))
        answer = _Answer()
        curl = self._curl()
        host = urlsplit(recipient.recipient_url).hostname or ""
        body = message.body.encode("utf-8")
        curl.setopt(pycurl.URL, recipient.recipient_url)
        # The body is read through a callback, which libcurl cannot rewind: if a kept-alive
        # connection dies once the request is out, the attempt fails (and is logged, and retried)
        # instead of libcurl sending the request a second time behind our back.
        curl.setopt(pycurl.POSTFIELDSIZE, len(body))
        curl.setopt(pycurl.READFUNCTION, io.BytesIO(body).read)
        curl.setopt(pycurl.HTTPHEADER, [f"{name}: {value}" for name, value in headers.items()] + ["Expect:"])
        curl.setopt(pycurl.WRITEFUNCTION, answer.body_chunk)
        curl.setopt(pycurl.OPENSOCKETFUNCTION, lambda purpose, address: self._open(host, address, answer))
        try:
            curl.perform()
        except pycurl.error as exc:
            code, text = exc.args
            if code != EXCERPT_READ:
                return self._failed(curl, code, text, answer)
        finally:
            for sock in answer.sockets:
                sock.close()
        # The headers we need are read from libcurl's own parse of the final answer: a Python
        # callback per header line took the GIL back for each, a third of a send's CPU.
        status = curl.getinfo(pycurl.RESPONSE_CODE)
        if 300 <= status < 400:
            return classify(status, curl.getinfo(pycurl.REDIRECT_URL) or "", None)
        charset = _charset(curl.getinfo(pycurl.CONTENT_TYPE) or "")
        excerpt = bytes(answer.body[:BODY_EXCERPT]).decode(charset, "replace")
        return classify(status, excerpt, curl.getinfo(pycurl.RETRY_AFTER) or None)

    def _curl(self) -> pycurl.Curl:
        """This thread's curl handle, set up once; its connections are kept alive."""
        curl: pycurl.Curl | None = getattr(self._local, "curl", None)
        if curl is None:
            curl = self._local.curl = pycurl.Curl()
            curl.setopt(pycurl.NOSIGNAL, 1)
            curl.setopt(pycurl.POST, 1)
            curl.setopt(pycurl.TIMEOUT_MS, max(1, round(self.timeout * 1000)))
            curl.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, round(min(self.connect_timeout, self.timeout) * 1000)))
            curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
            curl.setopt(pycurl.FOLLOWLOCATION, 0)
            curl.setopt(pycurl.PROXY, "")  # never a proxy from the environment
            curl.setopt(pycurl.CAINFO, certifi.where())
            curl.setopt(pycurl.MAXCONNECTS, MAX_CONNECTIONS)
        return curl

    def _open(self, host: str, address: Any, answer: _Answer) -> Any:
        """libcurl is about to connect: to an address the policy allows, or to none."""
        family, socktype, protocol, sockaddr = address
        try:
            self.policy.check(host, ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
        except ForbiddenAddress as exc:
            answer.refused = str(exc)
            return pycurl.SOCKET_BAD
        sock = socket.socket(family, socktype, protocol)
        answer.sockets.append(sock)
        return sock

    def _failed(self, curl: pycurl.Curl, code: int, text: str, answer: _Answer) -> NotifyResult:
        """A transfer that ended without a full answer. A policy refusal is final; the rest retry."""
        if answer.refused is not None:
            return NotifyResult(False, response_data=answer.refused, error_class="ForbiddenAddress")
        if code == TIMED_OUT:
            connected = bool(curl.getinfo(pycurl.PRIMARY_IP))  # also set on a reused connection
            what = "no complete answer" if connected else "could not connect"
            reason = f"Timed out: {what} within {self.timeout:g} s, the limit for a whole attempt ({text})"
            return _retryable(reason, "Timeout" if connected else "ConnectTimeout")
        if code == HUNG_UP:
            return _retryable("Request failed: the receiver closed the connection without answering", "ConnectionError")
        return _retryable(f"Request failed: {text}", "ConnectionError")


def classify(status: int, response_data: str, retry_after: float | None) -> NotifyResult:
    """The outcome of an HTTP status: 2xx success; 408, 429 and 5xx retryable; 410 gone; else final.
    ``retry_after``: the seconds the answer's ``Retry-After`` asks for (libcurl reads both its
    forms, delay-seconds and HTTP-date), kept for a retryable answer only."""
    if 200 <= status < 300:
        return NotifyResult(True, status_code=status, response_data=response_data)
    retryable = status in RETRYABLE_STATUS or status >= 500
    if 300 <= status < 400:
        response_data = f"Redirect to {response_data!r} not followed" if response_data else "Redirect not followed"
    return NotifyResult(
        False,
        retryable=retryable,
        retry_after=max(0.0, float(retry_after)) if retryable and retry_after is not None else None,
        status_code=status,
        response_data=response_data,
        gone=status == 410,
    )


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


def _retryable(reason: str, error_class: str) -> NotifyResult:
    """A retryable failure with no usable answer."""
    return NotifyResult(False, retryable=True, response_data=reason, error_class=error_class)
