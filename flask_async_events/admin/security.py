"""Who may use the admin pages, and CSRF protection for their forms.

Either the host's ``events.authorize`` hook lets the request in as an admin, or the operator logs
in with an admin API token: the session cookie then holds the key of a session kept on the server
(:mod:`~flask_async_events.operations.web_sessions`), checked on every request with the token it
was opened with, so logging out or revoking the token ends it, also for a copy of the cookie.
Every state-changing form, logging out included, is a POST carrying a per-session CSRF token.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta

from flask import request, session

from flask_async_events.auth import Principal, live_token, token_principal
from flask_async_events.errors import AuthError, NotAllowed
from flask_async_events.models import ApiToken
from flask_async_events.operations.web_sessions import ADMIN, end_web_session, live_web_session, open_web_session
from flask_async_events.state import AppState

SESSION_KEY = "async_events_admin_session"
SESSION_CSRF = "async_events_csrf"
SESSION_LIFETIME = timedelta(hours=12)


def current_admin(state: AppState) -> Principal | None:
    """The admin behind this request, or None if nobody has logged in (NotAllowed if not an admin)."""
    authorizer = state.authorizer()
    if authorizer is not None:
        principal = authorizer(request)
        if principal is None:
            raise NotAllowed("The request is not authorized.")
        if not principal.is_admin:
            raise NotAllowed("The admin pages are for admins only.")
        return principal
    key = session.get(SESSION_KEY)
    if key is None:
        return None
    web_session = live_web_session(state.db.session, ADMIN, key)
    token = None if web_session is None else state.db.session.get(ApiToken, web_session.token_id)
    if token is None or token.revoked_at is not None or not token.is_admin:
        session.pop(SESSION_KEY, None)
        return None
    return token_principal(token)


def log_in(state: AppState, secret: str) -> None:
    """Remember an admin token in the session; AuthError if it is not one."""
    token = live_token(state.db.session, secret)
    if token is None:
        raise AuthError("That token is not valid or has been revoked.")
    if not token.is_admin:
        raise AuthError("That token is not an admin token (flask async-events token create NAME --admin).")
    session.clear()
    owner = token_principal(token).owner
    session[SESSION_KEY] = open_web_session(
        state.db.session, ADMIN, owner, token_id=token.id, lifetime=SESSION_LIFETIME
    )
    state.db.session.commit()


def log_out(state: AppState) -> None:
    """End the session on the server, then forget it here."""
    end_web_session(state.db.session, session.get(SESSION_KEY))
    state.db.session.commit()
    session.pop(SESSION_KEY, None)
    session.pop(SESSION_CSRF, None)


def csrf_token() -> str:
    token = session.get(SESSION_CSRF)
    if token is None:
        token = session[SESSION_CSRF] = secrets.token_urlsafe(32)
    return str(token)


def check_csrf() -> bool:
    sent = request.form.get("csrf_token", "")
    expected = session.get(SESSION_CSRF, "")
    return bool(expected) and hmac.compare_digest(sent, expected)
