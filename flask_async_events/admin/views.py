"""The admin pages: every owner's subscriptions (with bulk actions), dead letters and queue health;
the subscription, attempt-log and trace pages they share with the portal come from
:mod:`flask_async_events.pages`."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, flash, g, get_flashed_messages, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from markupsafe import Markup
from sqlalchemy import or_, select

from flask_async_events.admin.security import NotAllowed, check_csrf, csrf_token, current_admin, log_in, log_out
from flask_async_events.bounds import parse_moment, whole_number
from flask_async_events.delivery.subscription_status import disable_subscriptions, enable_subscriptions
from flask_async_events.errors import AuthError
from flask_async_events.models import DbSession, Subscription, utcnow
from flask_async_events.operations.background import start_recovery
from flask_async_events.operations.replay import ReplayError, count_dead, replay
from flask_async_events.operations.status import dead_letters, system_status
from flask_async_events.operations.subscriptions import describe_rate_limit, set_rate_limit
from flask_async_events.pages.access import FORM_EXPIRED, Access, use
from flask_async_events.pages.page_security import csp_nonce, secure_page
from flask_async_events.pages.views import add_shared_pages, chart_context
from flask_async_events.state import AppState, get_state

DISABLED_HERE = "Disabled from the admin pages"
LOGIN_HINT = Markup("Use an admin API token: <code>flask async-events token create NAME --admin</code>.")

admin = Blueprint("async_events_admin", __name__, template_folder="templates")


def state() -> AppState:
    return get_state()


@admin.before_request
def require_admin() -> ResponseReturnValue | None:
    request.max_content_length = state().settings.max_body  # a larger form is a 413, unread
    if request.endpoint in ("async_events_admin.login", "async_events_admin.logout"):
        return None
    try:
        g.async_events_admin = current_admin(state())
    except NotAllowed as exc:
        return render_template("async_events_pages/message.html", title="Not allowed", message=str(exc)), 403
    if g.async_events_admin is None:
        return redirect(url_for("async_events_admin.login", next=request.full_path))
    use(Access(g.async_events_admin, flash, DISABLED_HERE, chooses_owner=True))
    if request.method == "POST" and not check_csrf():
        return render_template("async_events_pages/message.html", title="Form expired", message=FORM_EXPIRED), 400
    return None


@admin.context_processor
def _page_context() -> dict[str, Any]:
    """What the shared templates ask every surface for."""
    return {
        "base_template": "async_events_admin/base.html",
        "async_events_csrf": csrf_token,
        "async_events_messages": lambda: get_flashed_messages(with_categories=True),
        "csp_nonce": csp_nonce,
    }


@admin.after_request
def secure_response(response: Response) -> Response:
    """Framed by this site's own pages only, and no script at all (page_security.py)."""
    return secure_page(response)


add_shared_pages(admin)


@admin.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    error = None
    if request.method == "POST" and not check_csrf():
        error = FORM_EXPIRED
    elif request.method == "POST":
        try:
            log_in(state(), request.form.get("token", ""))
        except AuthError as exc:
            error = str(exc)
        else:
            target = request.args.get("next", "")
            return redirect(target if target.startswith("/") and not target.startswith("//") else url_for(".index"))
    return render_template(
        "async_events_pages/login.html", error=error, token_label="Admin token", hint=LOGIN_HINT
    ), 401 if error else 200


@admin.post("/logout")
def logout() -> ResponseReturnValue:
    if not check_csrf():  # another site cannot log an operator out
        return render_template("async_events_pages/message.html", title="Form expired", message=FORM_EXPIRED), 400
    log_out(state())
    return redirect(url_for(".login"))


@admin.get("/")
def index() -> ResponseReturnValue:
    return redirect(url_for(".subscriptions"))


def _selected_ids() -> list[int]:
    return [int(value) for value in request.form.getlist("ids") if value.isdecimal() and len(value) < 19]


@admin.route("/subscriptions", methods=["GET", "POST"])
def subscriptions() -> ResponseReturnValue:
    session = state().db.session
    if request.method == "POST":
        ids = _selected_ids()
        action = request.form.get("action")
        if not ids:
            flash("Select at least one subscription.", "error")
        elif action == "enable":
            enable_subscriptions(session, ids)
            session.commit()
            flash(f"Enabled {len(ids)} subscription(s).", "ok")
        elif action == "disable":
            disable_subscriptions(session, ids, DISABLED_HERE)
            session.commit()
            flash(f"Disabled {len(ids)} subscription(s); their pending retries are cancelled.", "ok")
        elif action == "rate_limit":
            _set_rate_limit(session, ids, request.form.get("rate_limit", ""))
        else:
            flash("Choose Enable, Disable or Set rate limit.", "error")
        return redirect(url_for(".subscriptions", q=request.args.get("q", ""), status=request.args.get("status", "")))
    text = request.args.get("q", "").strip()
    status = request.args.get("status", "")
    query = select(Subscription).where(Subscription.deleted_at.is_(None)).order_by(Subscription.subscription_id)
    if text:
        pattern = f"%{text}%"
        query = query.where(or_(Subscription.event_name.like(pattern), Subscription.recipient_url.like(pattern)))
    if status in ("enabled", "disabled"):
        query = query.where(Subscription.status.is_(status == "enabled"))
    rows = list(session.scalars(query.limit(500)))
    return render_template("async_events_admin/subscriptions.html", rows=rows, q=text, status=status)


def _set_rate_limit(session: DbSession, ids: list[int], raw: str) -> None:
    """The bulk action: a number of deliveries per second, or blank for no limit."""
    try:
        rate = float(raw) if raw.strip() else None
        set_rate_limit(session, ids, rate)
    except ValueError as exc:
        message = str(exc) if "rate_limit" in str(exc) else f"rate_limit must be a number or blank, got {raw!r}"
        flash(message, "error")
        return
    session.commit()
    flash(f"{len(ids)} subscription(s) now have {describe_rate_limit(rate)}.", "ok")


@admin.get("/dead-letters")
def dead_letters_page() -> ResponseReturnValue:
    rows = dead_letters(state(), limit=200)
    return render_template("async_events_admin/dead_letters.html", rows=rows, total=count_dead(state()))


@admin.post("/dead-letters/retry")
def retry_selected() -> ResponseReturnValue:
    uuids = request.form.getlist("uuids")
    replayed, refused = 0, []
    for uuid in uuids:
        try:
            replay(state(), uuid)
            replayed += 1
        except (LookupError, ReplayError) as exc:
            state().db.session.rollback()
            refused.append(str(exc))
    if not uuids:
        flash("Select at least one dead letter.", "error")
    else:
        flash(f"Replaying {replayed} dead letter(s).", "ok")
    for reason in refused[:5]:
        flash(reason, "error")
    return redirect(url_for(".dead_letters_page"))


@admin.post("/dead-letters/recover")
def recover_dead_letters() -> ResponseReturnValue:
    """Start recovering a subscription (its dead letters since a time, and what it missed); the
    workers run it, and the job's page follows them."""
    raw_id, raw_since = request.form.get("subscription_id", "").strip(), request.form.get("since", "").strip()
    try:
        since = parse_moment("since", raw_since, utcnow())
        subscription_id = whole_number("subscription", raw_id, 1)
        subscription = state().db.session.get(Subscription, subscription_id)
        if subscription is None:
            raise ReplayError(f"no subscription {subscription_id}")
        missed = bool(request.form.get("missed"))
        job = start_recovery(state(), subscription, since, missed=missed, caller=g.async_events_admin)
    except ValueError as exc:
        state().db.session.rollback()
        flash(f"{exc}", "error")
        return redirect(url_for(".dead_letters_page"))
    return redirect(url_for(".job_page", job_id=job.id))


@admin.get("/health")
def health() -> ResponseReturnValue:
    return render_template(
        "async_events_admin/health.html", status=system_status(state()), **chart_context("All subscriptions")
    )
