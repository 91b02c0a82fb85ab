"""Who may use the REST API: bearer tokens, ownership of subscriptions, ACL resources.

Tokens are random, shown once, and stored as SHA-256 hashes. A token sees and changes only the
subscriptions it created; an admin token sees all. A host app can replace the token check with
its own (``@events.authorize``), returning a :class:`Principal` or None.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from flask import Request
from sqlalchemy import Select, select

from flask_async_events.definitions import EventRegistry, pattern_matches
from flask_async_events.errors import AuthError, InvalidTokenName, UnknownToken
from flask_async_events.models import ApiToken, DbSession, Subscription, utcnow
from flask_async_events.owners import TOKEN_OWNER

TOKEN_PREFIX = "fae_"
UNAUTHORIZED_RESOURCES = "The consumer isn't authorized to access {resources}."


@dataclass(frozen=True)
class Principal:
    """The caller of an API request: the owner key its subscriptions carry, and what it may do."""

    owner: str
    is_admin: bool = False
    resources: frozenset[str] = frozenset()

    def may_access(self, required: Iterable[str]) -> list[str]:
        """The required resources this principal lacks (none for an admin)."""
        return [] if self.is_admin else sorted(set(required) - self.resources)


Authorizer = Callable[[Request], "Principal | None"]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: DbSession, name: str, *, resources: Iterable[str] = (), admin: bool = False) -> str:
    """Store a new token and return it; it cannot be shown again."""
    name = name.strip()
    if not name:
        raise InvalidTokenName("a token needs a name")
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise InvalidTokenName(f"a token named {name!r} exists already; revoke it or choose another name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiToken(name=name, token_hash=hash_token(token), is_admin=admin, resources=json.dumps(sorted(set(resources))))
    )
    return token


def revoke_token(session: DbSession, name_or_id: str) -> ApiToken:
    """Revoke a token by name or id; its subscriptions keep running (an admin can manage them)."""
    query = select(ApiToken).where(ApiToken.name == name_or_id)
    if name_or_id.isdecimal():
        query = select(ApiToken).where((ApiToken.name == name_or_id) | (ApiToken.id == int(name_or_id)))
    token = session.scalar(query)
    if token is None:
        raise UnknownToken(f"no token named {name_or_id!r}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    return token


def token_principal(token: ApiToken) -> Principal:
    return Principal(f"{TOKEN_OWNER}{token.id}", token.is_admin, frozenset(json.loads(token.resources)))


def authenticate(session: DbSession, request: Request, authorizer: Authorizer | None) -> Principal:
    """The principal of a request: the host's hook if there is one, else the bearer token."""
    if authorizer is not None:
        principal = authorizer(request)
        if principal is None:
            raise AuthError("The request is not authorized.")
        return principal
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise AuthError("Authorization: Bearer <token> is required.")
    token = live_token(session, credentials)
    if token is None:
        raise AuthError("The bearer token is not valid or has been revoked.")
    return token_principal(token)


def live_token(session: DbSession, secret: str) -> ApiToken | None:
    """The unrevoked API token whose secret this is (surrounding blanks ignored), or None."""
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(secret.strip())))
    return token if token is not None and token.revoked_at is None else None


def required_resources(definitions: EventRegistry, pattern: str) -> set[str]:
    """The resources needed to receive ``pattern``: those of every defined event it matches."""
    return {resource for d in definitions if pattern_matches(pattern, d.name) for resource in d.resources}


def visible_subscriptions(principal: Principal) -> Select[Subscription]:
    """Subscriptions the principal may see: its own (all for an admin), never unsubscribed ones."""
    query = select(Subscription).where(Subscription.deleted_at.is_(None))
    if not principal.is_admin:
        query = query.where(Subscription.owner == principal.owner)
    return query
