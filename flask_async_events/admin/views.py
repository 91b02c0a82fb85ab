"""The admin pages: subscriptions, the attempt log, a delivery's trace, dead letters, queue health."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import or_, select

from flask_async_events.admin.security import NotAllowed, check_csrf, csrf_token, current_admin, log_in, log_out
from flask_async_events.delivery.credentials import open_previous
from flask_async_events.delivery.filters import check_filter
from flask_async_events.delivery.subscription_status import disable_subscriptions, enable_subscriptions
from flask_async_events.errors import AuthError
from flask_async_events.models import DbSession, DeliveryAttempt, Subscription, utcnow
from flask_async_events.operations.charts import WINDOWS, attempt_series
from flask_async_events.operations.headers import parse_header_lines, set_headers, shown_headers
from flask_async_events.operations.missed import recover_missed
from flask_async_events.operations.replay import ReplayError, count_dead, recover, replay
from flask_async_events.operations.retention import parse_age, parse_moment
from flask_async_events.operations.rotation import rotate_secret
from flask_async_events.operations.search import QueryError, attempts_query
from flask_async_events.operations.status import COUNT_CAP, count_rows, dead_letters, system_status
from flask_async_events.operations.subscriptions import describe_rate_limit, set_rate_limit
from flask_async_events.operations.svg import attempts_chart, latency_chart
from flask_async_events.operations.trace import load_trace
from flask_async_events.state import AppState, get_state

PAGE_SIZE = 50
DISABLED_HERE = "Disabled from the admin pages"

admin = Blueprint("async_events_admin", __name__, template_folder="templates")


def state() -> AppState:
    return get_state()


@admin.before_request
def require_admin() -> ResponseReturnValue | None:
    if request.endpoint in ("async_events_admin.login", "async_events_admin.logout"):
        return None
    try:
        g.async_events_admin = current_admin(state())
    except NotAllowed as exc:
        return render_template("async_events_admin/message.html", title="Not allowed", message=str(exc)), 403
    if g.async_events_admin is None:
        return redirect(url_for("async_events_admin.login", next=request.full_path))
    if request.method == "POST" and not check_csrf():
        message = "The form expired or did not come from these pages; reload it and try again."
        return render_template("async_events_admin/message.html", title="Form expired", message=message), 400
    return None


@admin.app_template_global("async_events_csrf")
def _csrf() -> str:
    return csrf_token()


@admin.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    error = None
    if request.method == "POST":
        try:
            log_in(state(), request.form.get("token", ""))
        except AuthError as exc:
            error = str(exc)
        else:
            target = request.args.get("next", "")
            return redirect(target if target.startswith("/") and not target.startswith("//") else url_for(".index"))
    return render_template("async_events_admin/login.html", error=error), 401 if error else 200


@admin.post("/logout")
def logout() -> ResponseReturnValue:
    log_out()
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


def _owned(subscription_id: int) -> Subscription:
    subscription = state().db.session.get(Subscription, subscription_id)
    if subscription is None or subscription.deleted_at is not None:
        abort(404)
    return subscription


def _subscription_view(subscription: Subscription, new_secret: str | None = None) -> ResponseReturnValue:
    app_state = state()
    try:
        previous = open_previous(app_state.box, subscription.previous_tokens, utcnow())
    except ValueError:
        previous = []
    return render_template(
        "async_events_admin/subscription.html",
        **_charts(_window(), f"Subscription {subscription.subscription_id}", [subscription.subscription_id]),
        s=subscription,
        headers=shown_headers(app_state, subscription),
        rate_limit=describe_rate_limit(subscription.rate_limit),
        previous_valid_until=max((entry.valid_until for entry in previous), default=None),
        new_secret=new_secret,
    )


@admin.get("/subscriptions/<int:subscription_id>")
def subscription_page(subscription_id: int) -> ResponseReturnValue:
    return _subscription_view(_owned(subscription_id))


@admin.post("/subscriptions/<int:subscription_id>/rotate")
def rotate_subscription_secret(subscription_id: int) -> ResponseReturnValue:
    """The new secret is shown on the page this answers with, once (never in a flash message,
    which the session cookie would carry)."""
    subscription = _owned(subscription_id)
    try:
        grace = parse_age(request.form.get("grace", "24h")).total_seconds()
        rotation = rotate_secret(state(), subscription, grace=grace)
    except ValueError as exc:
        state().db.session.rollback()
        flash(f"grace: {exc}" if "age" in str(exc) else str(exc), "error")
        return redirect(url_for(".subscription_page", subscription_id=subscription_id))
    state().db.session.commit()
    return _subscription_view(subscription, new_secret=rotation.verification_token)


@admin.post("/subscriptions/<int:subscription_id>/headers")
def subscription_headers(subscription_id: int) -> ResponseReturnValue:
    subscription = _owned(subscription_id)
    try:
        headers = parse_header_lines(request.form.get("headers", "").splitlines())
        set_headers(state(), subscription, headers)
    except ValueError as exc:
        state().db.session.rollback()
        flash(str(exc), "error")
    else:
        state().db.session.commit()
        flash(f"Saved {len(headers)} header(s).", "ok")
    return redirect(url_for(".subscription_page", subscription_id=subscription_id))


@admin.post("/subscriptions/<int:subscription_id>/filter")
def subscription_filter(subscription_id: int) -> ResponseReturnValue:
    subscription = _owned(subscription_id)
    try:
        subscription.filter = check_filter(request.form.get("filter", "").strip())
    except ValueError as exc:
        state().db.session.rollback()
        flash(str(exc), "error")
    else:
        subscription.modified = utcnow()
        state().db.session.commit()
        flash("Filter saved." if subscription.filter else "Filter removed: every event is delivered.", "ok")
    return redirect(url_for(".subscription_page", subscription_id=subscription_id))


@admin.get("/logs")
def logs() -> ResponseReturnValue:
    session = state().db.session
    text = request.args.get("q", "").strip()
    page = max(1, int(request.args["page"])) if request.args.get("page", "").isdecimal() else 1
    page = min(page, 100_000)
    error = None
    rows: list[Any] = []
    total = 0
    try:
        query = attempts_query(text, session.get_bind().dialect.name)
    except QueryError as exc:
        error = str(exc)
    else:
        total = count_rows(session, query, cap=COUNT_CAP)
        ordered = query.order_by(DeliveryAttempt.log_id.desc()).offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)
        rows = list(session.execute(ordered))
    exact = total <= COUNT_CAP
    pages = max(1, -(-total // PAGE_SIZE)) if exact else None  # None: more pages than counted
    more = (pages is None and len(rows) == PAGE_SIZE) or (pages is not None and page < pages)
    template = "async_events_admin/logs.html"
    return render_template(
        template, rows=rows, q=text, error=error, page=page, pages=pages, more=more, total=min(total, COUNT_CAP)
    )


@admin.get("/trace/<uuid>")
def trace(uuid: str) -> ResponseReturnValue:
    found = load_trace(state().db.session, uuid, g.async_events_admin)
    if found is None:
        abort(404)
    payload = json.dumps(found["payload"], indent=2, ensure_ascii=False) if found["payload"] is not None else ""
    return render_template("async_events_admin/trace.html", trace=found, payload=payload)


@admin.post("/trace/<uuid>/replay")
def replay_delivery(uuid: str) -> ResponseReturnValue:
    try:
        replay(state(), uuid)
    except LookupError:
        abort(404)
    except ReplayError as exc:
        state().db.session.rollback()
        flash(str(exc), "error")
    else:
        flash("Sent again: a new attempt appears below once a worker has made it.", "ok")
    return redirect(url_for(".trace", uuid=uuid))


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
def recover_subscription() -> ResponseReturnValue:
    raw_id, raw_since = request.form.get("subscription_id", ""), request.form.get("since", "").strip()
    try:
        since = parse_moment(raw_since)
        if not raw_id.isdecimal() or len(raw_id) > 18:
            raise ValueError(f"subscription: {raw_id!r} is not a subscription id")
        uuids = recover(state(), int(raw_id), since)
        subscription = state().db.session.get(Subscription, int(raw_id))
        missed = recover_missed(state(), subscription, since) if subscription and request.form.get("missed") else []
    except (ValueError, ReplayError) as exc:
        state().db.session.rollback()
        flash(f"{exc}", "error")
    else:
        also = f" and delivering {len(missed)} missed event(s)" if request.form.get("missed") else ""
        flash(f"Replaying {len(uuids)} dead letter(s) of subscription {raw_id}{also}.", "ok")
    return redirect(url_for(".dead_letters_page"))


@admin.get("/health")
def health() -> ResponseReturnValue:
    window = _window()
    return render_template(
        "async_events_admin/health.html", status=system_status(state()), **_charts(window, "All subscriptions")
    )


def _window() -> str:
    """The chart window asked for (``?window=24h`` or ``7d``); another is refused with a message."""
    window = request.args.get("window", "24h")
    if window not in WINDOWS:
        flash(f"window must be one of {', '.join(WINDOWS)}; showing the last 24 hours", "error")
        return "24h"
    return window


def _charts(window: str, title: str, subscription_ids: list[int] | None = None) -> dict[str, Any]:
    points = attempt_series(state(), window, subscription_ids)
    return {
        "window": window,
        "chart_windows": list(WINDOWS),
        "charts": {"attempts": attempts_chart(points, title), "latency": latency_chart(points, title)},
    }
