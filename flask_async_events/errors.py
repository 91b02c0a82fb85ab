"""Every error this package raises on purpose, under one base class.

Each keeps the built-in base it always had, so ``except ValueError`` goes on working, and
``except AsyncEventsError`` catches all of them::

    AsyncEventsError
     ├── NotSetUp (RuntimeError)           the extension is missing from the app, or set up twice
     ├── ConfigError (ValueError)          an ASYNC_EVENTS_* setting; the message names the key
     ├── InvalidSubscription (ValueError)  a subscription field; the message names the field
     ├── ForbiddenAddress (ValueError)     a recipient resolves where the SSRF policy forbids
     ├── QueryError (ValueError)           a log search that cannot be run, with the position
     ├── ReplayError (ValueError)          a delivery that cannot be sent again now, and why
     ├── IndexUnavailable (RuntimeError)   the database cannot build the pattern index, and why
     ├── InvalidSignature (ValueError)     a received webhook whose signature does not check out
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


class ForbiddenAddress(AsyncEventsError, ValueError):
    """A recipient resolves to an address the policy does not allow."""


class QueryError(AsyncEventsError, ValueError):
    """A search query that cannot be run, with the reason and where."""


class ReplayError(AsyncEventsError, ValueError):
    """The delivery cannot be replayed now; the message says why and what to do."""


class IndexUnavailable(AsyncEventsError, RuntimeError):
    """The payload-pattern index cannot be made here (not PostgreSQL, or no ``pg_trgm``), and why."""


class InvalidSignature(AsyncEventsError, ValueError):
    """A webhook's signature, timestamp or headers do not check out."""


class AuthError(AsyncEventsError):
    """The request has no valid credentials (401)."""


class InvalidPortalLink(AuthError):
    """A portal link whose signature does not check out, or that has expired; the message says which."""


class NotAllowed(AsyncEventsError):
    """The request may not use the admin pages; the message says why."""
