"""A subscription's extra request headers: checked when they are set, stored encrypted, and shown
masked, but for a few names whose values are never secrets.

The names flask-async-events sets itself (the signatures, ``webhook-*``, the body's framing) and
hop-by-hop names that would break the request cannot be set. A masked value sent back unchanged
(a client that PUTs what it read) keeps the stored value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from flask_async_events.delivery.credentials import open_headers, seal_headers
from flask_async_events.errors import InvalidSubscription
from flask_async_events.models import Subscription
from flask_async_events.state import AppState

MAX_HEADERS = 20
MAX_VALUE_BYTES = 1024
MASK = "********"
RESERVED = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        "connection",
        "user-agent",
        "expect",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)
RESERVED_PREFIXES = ("webhook-", "x-async-events-")
# Shown in clear; every other value is masked. Masking by default, since no rule can tell a secret
# from its name (``Cookie``, ``X-Auth``, ``X-Api``, ...).
HARMLESS = frozenset(
    {
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "content-language",
        "x-environment",
        "x-request-source",
        "x-source",
    }
)
_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")  # no line breaks, no control characters


def check_headers(headers: object, signature_header: str) -> dict[str, str]:
    """``headers`` as stored, in order; :class:`InvalidSubscription` naming the header otherwise."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise InvalidSubscription("headers must be an object of header names and their values")
    if len(headers) > MAX_HEADERS:
        raise InvalidSubscription(f"headers may hold at most {MAX_HEADERS} headers, got {len(headers)}")
    checked: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in headers.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidSubscription(
                f"headers: {name!r} is not a header name (letters, digits and !#$%&'*+-.^_`|~ only)"
            )
        lowered = name.lower()
        if lowered in RESERVED or lowered == signature_header or lowered.startswith(RESERVED_PREFIXES):
            raise InvalidSubscription(f"headers: {name!r} is set by flask-async-events and cannot be given")
        if lowered in seen:
            raise InvalidSubscription(f"headers: {name!r} is given twice (header names ignore case)")
        seen.add(lowered)
        if not isinstance(value, str) or not _VALUE.fullmatch(value):
            raise InvalidSubscription(
                f"headers: the value of {name!r} must be text without line breaks or control characters"
            )
        if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
            raise InvalidSubscription(f"headers: the value of {name!r} is longer than {MAX_VALUE_BYTES} bytes")
        checked[name] = value.strip()
    return checked


def parse_header_lines(lines: Iterable[str]) -> dict[str, str]:
    """``Name: value`` lines (the CLI's options, the admin's text box) as headers, blank lines
    skipped; checked later by :func:`check_headers`, like the REST API's."""
    headers: dict[str, str] = {}
    for line in lines:
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise InvalidSubscription(f"headers: {line.strip()!r} is not a header: write it as 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


def is_secret(name: str) -> bool:
    """Whether a header's value is shown masked: all but the :data:`HARMLESS` ones."""
    return name.lower() not in HARMLESS


def mask_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers as responses, the CLI and the admin pages show them."""
    return {name: MASK if is_secret(name) else value for name, value in headers.items()}


def shown_headers(state: AppState, subscription: Subscription) -> dict[str, str]:
    """A subscription's headers, masked; headers that cannot be decrypted show as none."""
    return mask_headers(stored_headers(state, subscription))


def check_sends_headers(state: AppState, notifier_name: str) -> None:
    """Headers only go with a notifier that sends them (``http``; a plug-in says ``sends_headers``)."""
    notifier = state.notifier(notifier_name)
    if notifier is not None and not getattr(notifier, "sends_headers", False):
        raise InvalidSubscription(f"headers: a {notifier_name!r} subscription sends no request headers")


def set_headers(state: AppState, subscription: Subscription, headers: object) -> None:
    """Replace a subscription's headers (None or ``{}``: none). A masked value given back for a
    name it holds keeps that value."""
    checked = check_headers(headers, state.settings.signature_header)
    if checked:
        check_sends_headers(state, subscription.notifier)
    if any(value == MASK for value in checked.values()):
        stored = {name.lower(): value for name, value in stored_headers(state, subscription).items()}
        for name, value in checked.items():
            if value == MASK:
                if name.lower() not in stored:
                    raise InvalidSubscription(
                        f"headers: {name!r} is {MASK}, a masked value, but holds none to keep; send its real value"
                    )
                checked[name] = stored[name.lower()]
    subscription.headers = seal_headers(state.box, checked)


def stored_headers(state: AppState, subscription: Subscription) -> dict[str, str]:
    """A subscription's headers in clear; none if they cannot be decrypted (a lost key)."""
    try:
        return open_headers(state.box, subscription.headers)
    except ValueError:
        return {}
