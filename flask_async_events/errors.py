"""Every error this package raises on purpose, under one base class.

Each keeps the built-in base it always had, so ``except ValueError`` goes on working, and
``except AsyncEventsError`` catches all of them::

    AsyncEventsError
     ├── NotSetUp (RuntimeError)           the extension is missing from the app, or set up twice
     ├── ConfigError (ValueError)          an ASYNC_EVENTS_* setting; the message names the key
     ├── InvalidSubscription (ValueError)  a subscription field; the message names the field
     ├── InvalidValue (ValueError)         a number, time, duration or other setting unreadable or out of its range
     ├── InvalidEvent (ValueError)         an event that is not defined, or a name that cannot be one
     ├── InvalidDefinition (ValueError)    an event definition or definitions file; the message names the entry
     ├── InvalidArguments (TypeError)      what a call does not take: arguments not JSON, a wrong type, a notifier
     │                                     without notify()
     ├── InvalidPayload (TypeError)        what an event's service returned, that cannot be sent
     ├── SecretError (ValueError)          a stored secret that none of the configured keys decrypts
     ├── InvalidTokenName (ValueError)     an API token name that is empty or taken
     ├── UnknownEvent (LookupError)        an event (or its definition) gone by the time a worker needs it
     ├── UnknownDelivery (LookupError)     no delivery with that uuid
     ├── UnknownToken (LookupError)        no API token with that name or id
     ├── PluginError (RuntimeError)        a notifier plug-in that does not load, or gives no notifier
     ├── UnknownSubscription (LookupError) ids that name no subscription, or one that was deleted
     ├── ForbiddenAddress (ValueError)     a recipient resolves where the SSRF policy forbids
     ├── QueryError (ValueError)           a log search that cannot be run, with the position
     │    └── SearchTimeout                a search that ran past ASYNC_EVENTS_SEARCH_TIMEOUT
     ├── ReplayError (ValueError)          a delivery that cannot be sent again now, and why
     ├── IndexUnavailable (RuntimeError)   the database cannot build the pattern index, and why
     ├── InvalidSignature (ValueError)     a received webhook whose signature does not check out
     ├── OwnerLimit                        a bound a non-admin owner reached; ``status`` is the HTTP answer
     │    ├── TargetNotAllowed             a target that would use the host's credentials (403)
     │    ├── QuotaExceeded                one subscription more than its owner may have (403)
     │    └── RateLimited                  too many test sends a minute (429, ``retry_after``)
     ├── AuthError                         a REST API request without valid credentials (401)
     │    └── InvalidPortalLink            a portal link that was altered, or is past its expiry
     └── NotAllowed                        a request the admin pages refuse (403)

This module imports nothing, so receivers can use :class:`InvalidSignature` through
``flask_async_events.signing`` without Flask.
"""

from __future__ import annotations


class AsyncEventsError(Exception):
    """The base of every error flask-async-events raises on purpose."""


class NotSetUp(AsyncEventsError, RuntimeError):
    """The extension is not set up on this app (or is set up twice); the message says what to call."""


class ConfigError(AsyncEventsError, ValueError):
    """A configuration value is missing or invalid; the message names the key."""


class InvalidSubscription(AsyncEventsError, ValueError):
    """A subscription field is invalid; the message names the field."""


class InvalidValue(AsyncEventsError, ValueError):
    """A number, time or duration that cannot be read or lies outside its range; the message names
    the field and the range."""


class InvalidEvent(AsyncEventsError, ValueError):
    """An event name that is not defined here, or that cannot be an event's name."""


class InvalidDefinition(AsyncEventsError, ValueError):
    """An event definition (or the definitions file) that cannot be used; the message names the entry."""


class InvalidArguments(AsyncEventsError, TypeError):
    """Something a call does not take: an event's arguments that are not JSON, a value of the wrong
    type, a notifier without ``notify``."""


class InvalidPayload(AsyncEventsError, TypeError):
    """What an event's service returned, that cannot be sent (it is not JSON, say)."""


class SecretError(AsyncEventsError, ValueError):
    """A stored secret that none of the configured keys decrypts."""


class InvalidTokenName(AsyncEventsError, ValueError):
    """An API token name that is empty, or taken by another token."""


class UnknownEvent(AsyncEventsError, LookupError):
    """An event row, or its definition, that is gone by the time a worker needs it."""


class UnknownDelivery(AsyncEventsError, LookupError):
    """No delivery has that uuid."""


class UnknownToken(AsyncEventsError, LookupError):
    """No API token has that name or id."""


class PluginError(AsyncEventsError, RuntimeError):
    """A notifier plug-in that does not load, or gives something that is not a notifier."""


class UnknownSubscription(AsyncEventsError, LookupError):
    """Subscription ids that name no subscription, or one that was deleted; the message lists them."""


class ForbiddenAddress(AsyncEventsError, ValueError):
    """A recipient resolves to an address the policy does not allow."""


class QueryError(AsyncEventsError, ValueError):
    """A search query that cannot be run, with the reason and where."""


class SearchTimeout(QueryError):
    """A search ran longer than its time limit; the message says how to narrow it."""


class ReplayError(AsyncEventsError, ValueError):
    """The delivery cannot be replayed now; the message says why and what to do."""


class IndexUnavailable(AsyncEventsError, RuntimeError):
    """The payload-pattern index cannot be made here (not PostgreSQL, or no ``pg_trgm``), and why."""


class InvalidSignature(AsyncEventsError, ValueError):
    """A webhook's signature, timestamp or headers do not check out."""


class OwnerLimit(AsyncEventsError):
    """A non-admin owner reached one of its bounds (README "Security"); the message names the
    setting. ``status`` is how the REST API, the admin pages and the portal answer it."""

    status = 403
    retry_after: float | None = None


class TargetNotAllowed(OwnerLimit):
    """A target of a notifier that acts with the host's credentials, not allow-listed for owners."""


class QuotaExceeded(OwnerLimit):
    """The owner has as many subscriptions as it may have."""


class RateLimited(OwnerLimit):
    """Too many test sends this minute; ``retry_after``: seconds until the next is allowed."""

    status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthError(AsyncEventsError):
    """The request has no valid credentials (401)."""


class InvalidPortalLink(AuthError):
    """A portal link whose signature does not check out, or that has expired; the message says which."""


class NotAllowed(AsyncEventsError):
    """The request may not use the admin pages; the message says why."""


__all__ = [
    "AsyncEventsError",
    "AuthError",
    "ConfigError",
    "ForbiddenAddress",
    "IndexUnavailable",
    "InvalidArguments",
    "InvalidDefinition",
    "InvalidEvent",
    "InvalidPayload",
    "InvalidPortalLink",
    "InvalidSignature",
    "InvalidSubscription",
    "InvalidTokenName",
    "InvalidValue",
    "NotAllowed",
    "NotSetUp",
    "OwnerLimit",
    "PluginError",
    "QueryError",
    "QuotaExceeded",
    "RateLimited",
    "ReplayError",
    "SearchTimeout",
    "SecretError",
    "TargetNotAllowed",
    "UnknownDelivery",
    "UnknownEvent",
    "UnknownSubscription",
    "UnknownToken",
]
