"""Logins to the admin pages and the portal, kept on the server (``async_event_web_session``).

A login makes a random key; its cookie carries the key, the table its SHA-256. Every request looks
the key up, so ending a session here (a logout) ends it for every copy of the cookie, wherever it
was taken. Sessions past their end are deleted at the next login.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, or_, select, update

from flask_async_events.models import DbSession, WebSession, utcnow

ADMIN = "admin"
PORTAL = "portal"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def open_web_session(session: DbSession, surface: str, owner: str, *, token_id: int | None, lifetime: timedelta) -> str:
    """A new session's key, for the cookie (the caller commits)."""
    now = utcnow()
    session.execute(delete(WebSession).where(or_(WebSession.expires_at < now, WebSession.ended_at.is_not(None))))
    key = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            key_hash=_hash(key),
            surface=surface,
            owner=owner,
            token_id=token_id,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    return key


def live_web_session(session: DbSession, surface: str, key: object) -> WebSession | None:
    """The session a cookie's key belongs to, if it is of this surface and neither ended nor expired."""
    if not isinstance(key, str) or not key:
        return None
    found = session.scalar(select(WebSession).where(WebSession.key_hash == _hash(key)))
    if found is None or found.surface != surface or found.ended_at is not None or found.expires_at <= utcnow():
        return None
    return found


def end_web_session(session: DbSession, key: object) -> None:
    """End the session of a cookie's key, for every copy of that cookie (the caller commits)."""
    if isinstance(key, str) and key:
        session.execute(update(WebSession).where(WebSession.key_hash == _hash(key)).values(ended_at=utcnow()))
