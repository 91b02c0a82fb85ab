"""Portal links: a signed, expiring URL the host app hands to one of its customers.

The link holds the owner key, the ACL resources its subscriptions may use and its expiry, signed
with the app's ``SECRET_KEY`` under a salt of its own: it opens a portal session and nothing else
(the REST API takes API tokens only, and the portal's session cookie is signed under another salt).
Anyone holding the link until it expires is that owner in the portal, so links are made per visit
and short-lived: an hour by default.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

from flask_async_events.errors import ConfigError, InvalidPortalLink, InvalidValue

LINK_SALT = "flask-async-events portal link"
DEFAULT_EXPIRES_IN = 3600
MAX_EXPIRES = 7 * 24 * 3600
MAX_OWNER = 255  # the subscription's owner column


@dataclass(frozen=True)
class Grant:
    """What a portal link lets its holder be: an owner, with resources, until a unix time."""

    owner: str
    resources: tuple[str, ...]
    expires_at: float


SecretKey = str | bytes | None  # the app's SECRET_KEY


def serializer(secret_key: SecretKey, salt: str) -> URLSafeSerializer:
    """A signer for one purpose (``salt``) under the app's key."""
    if not secret_key:
        raise ConfigError("the portal signs its links and sessions with the app's SECRET_KEY: set one")
    return URLSafeSerializer(secret_key, salt=salt)


def make_grant(owner: object, resources: Iterable[str], expires_in: object, now: float | None = None) -> Grant:
    """A grant checked field by field; ``ValueError`` names the one that is wrong."""
    if not isinstance(owner, str) or not owner.strip() or len(owner) > MAX_OWNER:
        raise InvalidValue(f"owner must be a non-empty string of at most {MAX_OWNER} characters, got {owner!r}")
    if isinstance(resources, str):
        raise InvalidValue(f"resources must be a list of ACL resource names, not the string {resources!r}")
    names = tuple(sorted(set(resources)))
    if not all(isinstance(name, str) and name for name in names):
        raise InvalidValue(f"resources must be ACL resource names (strings), got {list(resources)!r}")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or not 60 <= expires_in <= MAX_EXPIRES:
        raise InvalidValue(f"expires_in must be between 60 and {MAX_EXPIRES} seconds, got {expires_in!r}")
    return Grant(owner, names, (now if now is not None else time.time()) + expires_in)


def link_token(secret_key: SecretKey, grant: Grant) -> str:
    return serializer(secret_key, LINK_SALT).dumps(
        {"o": grant.owner, "r": list(grant.resources), "e": int(grant.expires_at)}
    )


def open_link_token(secret_key: SecretKey, token: str, now: float | None = None) -> Grant:
    """The grant a link carries; :class:`InvalidPortalLink` if it was altered or has expired."""
    try:
        fields = serializer(secret_key, LINK_SALT).loads(token)
        grant = Grant(str(fields["o"]), tuple(str(name) for name in fields["r"]), float(fields["e"]))
    except (BadSignature, KeyError, TypeError, ValueError):
        raise InvalidPortalLink("This portal link is not valid: it was cut short or changed.") from None
    if grant.expires_at <= (now if now is not None else time.time()):
        raise InvalidPortalLink("This portal link has expired. Open the portal again from the site that sent you here.")
    return grant
