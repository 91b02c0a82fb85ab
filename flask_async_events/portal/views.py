"""The portal: where a subscriber (one owner) manages its own webhooks, at ``ASYNC_EVENTS_PORTAL_URL``.

A visitor comes in through a portal link (``events.portal_link(owner=...)``) or logs in with a
non-admin API token. Every page then sees the data through that owner's
:class:`~flask_async_events.auth.Principal`: the shared pages of :mod:`flask_async_events.pages`
answer 404 for anything of another owner's. Every response says who may frame it
(``ASYNC_EVENTS_PORTAL_FRAME_ANCESTORS``) and that it must not be cached.
"""

from __future__ import annotations

import secrets
import time
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, current_app, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from flask_async_events.auth import Principal, live_token, token_principal, visible_subscriptions
from flask_async_events.errors import InvalidPortalLink
from flask_async_events.models import ApiToken, Subscription
from flask_async_events.operations.status import circuit_words
from flask_async_events.operations.web_sessions import PORTAL, end_web_session, live_web_session, open_web_session
from flask_async_events.pages.access import FORM_EXPIRED, Access, caller, use
from flask_async_events.pages.page_security import csp_nonce, secure_page
from flask_async_events.pages.views import add_shared_pages, chart_context, owner_subscription_ids
from flask_async_events.portal import session as portal_session
from flask_async_events.portal.links import open_link_token
from flask_async_events.portal.session import PortalSession
from flask_async_events.state import get_state

DISABLED_HERE = "Disabled in the portal"
LOGIN_HINT = "Open this portal from the link your provider gives you, or log in with your API token."
NO_SESSION = ("async_events_portal.enter", "async_events_portal.login")
ENDED = {"revoked": "The token of your session was revoked; log in with another."}
LIST_LIMIT = 500

portal = Blueprint("async_events_portal", __name__, template_folder="templates")


def _session() -> PortalSession | None:
    found: PortalSession | None = g.get("async_events_portal")
    return found


def _message(title: str, message: str, status: int) -> ResponseReturnValue:
    return render_template("async_events_pages/message.html", title=title, message=message), status


def _token_still_valid(session: PortalSession) -> bool:
    token = get_state().db.session.get(ApiToken, session.token_id)
    return token is not None and token.revoked_at is None and not token.is_admin


@portal.before_request
def open_session() -> ResponseReturnValue | None:
    """Who this visitor is; a form without this session's CSRF token is refused."""
    request.max_content_length = get_state().settings.max_body  # a larger form is a 413, unread
    if not current_app.secret_key:
        return _message("Portal not set up", "The portal needs the app's SECRET_KEY to sign its sessions.", 503)
    session = portal_session.load(request, current_app.secret_key)
    ended = None
    if session is not None and live_web_session(get_state().db.session, PORTAL, session.key) is None:
        session = None  # logged out (perhaps from another copy of this cookie), or past its end
    if session is not None and session.token_id is not None and not _token_still_valid(session):
        session, ended = None, "revoked"
    g.async_events_portal = session
    if request.endpoint in NO_SESSION:
        return None
    if session is None:
        return redirect(url_for(".login", ended=ended))
    if request.method == "POST" and not portal_session.csrf_matches(session.csrf, request.form.get("csrf_token", "")):
        return _message("Form expired", FORM_EXPIRED, 400)
    principal = Principal(session.owner, is_admin=False, resources=frozenset(session.resources))
    use(Access(principal, session.say, DISABLED_HERE))
    return None


@portal.after_request
def close_session(response: Response) -> Response:
    settings = get_state().settings
    ancestors = settings.portal_frame_ancestors
    path, embedded = settings.portal_url or "/", bool(set(ancestors) - {"'self'", "'none'"})
    if current_app.secret_key and (_session() is not None or portal_session.COOKIE in request.cookies):
        portal_session.save(
            response, _session(), current_app.secret_key, path=path, embedded=embedded, secure=request.is_secure
        )
    if "async_events_login_csrf" in g:  # the login form's token, checked against this cookie
        portal_session.save_login_csrf(
            response, g.async_events_login_csrf, path=path, embedded=embedded, secure=request.is_secure
        )
    return secure_page(response, ancestors)


@portal.context_processor
def _page_context() -> dict[str, Any]:
    """What the shared templates ask every surface for."""
    session = _session()
    return {
        "base_template": "async_events_portal/base.html",
        "async_events_csrf": lambda: session.csrf if session else g.get("async_events_login_csrf", ""),
        "async_events_messages": lambda: session.take_messages() if session else [],
        "portal_owner": session.owner if session else None,
        "csp_nonce": csp_nonce,
    }


add_shared_pages(portal)


@portal.get("/enter")
def enter() -> ResponseReturnValue:
    """A portal link: open a session for its owner, then drop the link from the address bar."""
    try:
        grant = open_link_token(current_app.secret_key, request.args.get("token", ""))
    except InvalidPortalLink as exc:
        g.async_events_portal = None
        return _message("Portal link refused", str(exc), 403)
    lifetime = timedelta(seconds=max(0.0, grant.expires_at - time.time()))
    key = open_web_session(get_state().db.session, PORTAL, grant.owner, token_id=None, lifetime=lifetime)
    get_state().db.session.commit()
    g.async_events_portal = PortalSession.from_grant(grant, key)
    return redirect(url_for(".subscriptions"))


@portal.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Log in with a non-admin API token; its subscriptions are the ones shown."""
    error = ENDED.get(request.args.get("ended", ""))
    sent_csrf, expected_csrf = request.form.get("csrf_token", ""), request.cookies.get(portal_session.LOGIN_COOKIE, "")
    if request.method == "POST" and not portal_session.csrf_matches(expected_csrf, sent_csrf):
        error = FORM_EXPIRED
    elif request.method == "POST":
        token = live_token(get_state().db.session, request.form.get("token", ""))
        if token is None:
            error = "That token is not valid or has been revoked."
        elif token.is_admin:
            error = "That is an admin token: it opens the admin pages, not the portal."
        else:
            principal = token_principal(token)
            lifetime = timedelta(seconds=portal_session.TOKEN_SESSION_SECONDS)
            key = open_web_session(
                get_state().db.session, PORTAL, principal.owner, token_id=token.id, lifetime=lifetime
            )
            get_state().db.session.commit()
            g.async_events_portal = PortalSession.for_token(token.id, principal.owner, tuple(principal.resources), key)
            return redirect(url_for(".subscriptions"))
    failed = request.method == "POST"
    g.async_events_login_csrf = secrets.token_urlsafe(32)
    return render_template(
        "async_events_pages/login.html", error=error, token_label="API token", hint=LOGIN_HINT
    ), 401 if failed else 200


@portal.post("/logout")
def logout() -> ResponseReturnValue:
    """End the session on the server (every copy of its cookie), then drop the cookie."""
    session = _session()
    if session is not None:
        end_web_session(get_state().db.session, session.key)
        get_state().db.session.commit()
    g.async_events_portal = None
    return redirect(url_for(".login"))


@portal.get("/")
def index() -> ResponseReturnValue:
    return redirect(url_for(".subscriptions"))


@portal.get("/subscriptions")
def subscriptions() -> ResponseReturnValue:
    """The owner's subscriptions with their health, and charts over all of them."""
    query = visible_subscriptions(caller()).order_by(Subscription.subscription_id).limit(LIST_LIMIT)
    rows = list(get_state().db.session.scalars(query))
    circuits = circuit_words(get_state(), [row.recipient_url for row in rows])
    return render_template(
        "async_events_portal/subscriptions.html",
        rows=rows,
        circuits=circuits,
        **chart_context("All your subscriptions", owner_subscription_ids()),
    )
