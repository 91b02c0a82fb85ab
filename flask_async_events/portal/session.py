"""The portal's session: its own signed cookie, not the host's Flask session.

The portal may be embedded in an iframe of another site, where a cookie needs ``SameSite=None;
Secure``; the host's session cookie keeps its own settings. The cookie holds who the visitor is
(an owner from a link, or an API token's id, re-checked on every request so that revoking the token
ends the session), when the session ends, the key of its record on the server (looked up on every
request, so a logout ends every copy of the cookie), the CSRF token its forms carry, and messages
for the next page. It is scoped to the portal's path.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field

from flask import Request, Response
from itsdangerous import BadSignature

from flask_async_events.portal.links import Grant, SecretKey, serializer

COOKIE = "async_events_portal"
LOGIN_COOKIE = "async_events_portal_login"
LOGIN_SECONDS = 3600
SESSION_SALT = "flask-async-events portal session"
TOKEN_SESSION_SECONDS = 12 * 3600
MAX_MESSAGES = 5


@dataclass
class PortalSession:
    """One visitor's portal session. ``token_id``: the API token they logged in with (None for a link)."""

    owner: str
    resources: tuple[str, ...]
    expires_at: float
    key: str  # of its record on the server (operations/web_sessions.py)
    token_id: int | None = None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    messages: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def from_grant(cls, grant: Grant, key: str) -> PortalSession:
        return cls(grant.owner, grant.resources, grant.expires_at, key)

    @classmethod
    def for_token(cls, token_id: int, owner: str, resources: tuple[str, ...], key: str) -> PortalSession:
        return cls(owner, resources, time.time() + TOKEN_SESSION_SECONDS, key, token_id)

    def say(self, message: str, category: str) -> None:
        self.messages = [*self.messages, (category, message)][-MAX_MESSAGES:]

    def take_messages(self) -> list[tuple[str, str]]:
        taken, self.messages = self.messages, []
        return taken


def csrf_matches(expected: str, sent: str) -> bool:
    return bool(expected) and hmac.compare_digest(expected, sent)


def save_login_csrf(response: Response, token: str, *, path: str, embedded: bool, secure: bool) -> None:
    """The login form's CSRF token, in a cookie of its own until there is a session to hold it (so
    another site cannot log a visitor in as someone else)."""
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=LOGIN_SECONDS,
        path=path,
        secure=secure or embedded,
        httponly=True,
        samesite="None" if embedded else "Lax",
    )


def load(request: Request, secret_key: SecretKey) -> PortalSession | None:
    """The session the request's cookie carries, or None (none, altered, or ended)."""
    raw = request.cookies.get(COOKIE)
    if not raw or not secret_key:
        return None
    try:
        data = serializer(secret_key, SESSION_SALT).loads(raw)
        session = PortalSession(
            owner=str(data["o"]),
            resources=tuple(str(name) for name in data["r"]),
            expires_at=float(data["e"]),
            key=str(data["k"]),
            token_id=None if data["t"] is None else int(data["t"]),
            csrf=str(data["c"]),
            messages=[(str(category), str(text)) for category, text in data["m"]],
        )
    except (BadSignature, KeyError, TypeError, ValueError):
        return None
    return session if session.expires_at > time.time() else None


def save(
    response: Response, session: PortalSession | None, secret_key: SecretKey, *, path: str, embedded: bool, secure: bool
) -> None:
    """Write the session into the response's cookie (None: end it). ``embedded``: the portal is
    framed by another site, so the cookie must be ``SameSite=None``, which browsers take only
    ``Secure``; ``secure``: the request came over HTTPS."""
    same_site = "None" if embedded else "Lax"
    secure = secure or embedded
    if session is None:
        response.delete_cookie(COOKIE, path=path, secure=secure, httponly=True, samesite=same_site)
        return
    value = serializer(secret_key, SESSION_SALT).dumps(
        {
            "o": session.owner,
            "r": list(session.resources),
            "e": session.expires_at,
            "k": session.key,
            "t": session.token_id,
            "c": session.csrf,
            "m": session.messages,
        }
    )
    response.set_cookie(
        COOKIE,
        value,
        max_age=max(0, int(session.expires_at - time.time())),
        path=path,
        secure=secure,
        httponly=True,
        samesite=same_site,
    )
