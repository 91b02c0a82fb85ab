"""The pages the admin and the portal share: a subscription (create, edit, enable, disable,
delete, rotate its secret, headers, filter, ping, recover), the attempt log with its search and CSV
export, and a delivery's trace with Replay.

Every row is looked up through the caller's :class:`~flask_async_events.auth.Principal`: someone
else's subscription, log row or trace is a 404, exactly as one that does not exist.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from flask_async_events.auth import UNAUTHORIZED_RESOURCES, required_resources, visible_subscriptions
from flask_async_events.bounds import parse_duration, parse_moment
from flask_async_events.definitions import normalise_pattern
from flask_async_events.delivery.credentials import open_previous
from flask_async_events.errors import InvalidSubscription, OwnerLimit, QueryError, RateLimited, ReplayError
from flask_async_events.models import Subscription, utcnow
from flask_async_events.operations.background import find_operation, start_recovery
from flask_async_events.operations.charts import WINDOWS, attempt_series
from flask_async_events.operations.headers import parse_header_lines, shown_headers
from flask_async_events.operations.ping import ping
from flask_async_events.operations.replay import replay
from flask_async_events.operations.rotation import MAX_GRACE, rotate_secret
from flask_async_events.operations.search import SearchPage, search_batches, search_page, visible_attempts
from flask_async_events.operations.status import COUNT_CAP, circuit_words
from flask_async_events.operations.subscriptions import (
    create_subscription,
    describe_rate_limit,
    unsubscribe,
    update_subscription,
)
from flask_async_events.operations.svg import attempts_chart, latency_chart
from flask_async_events.operations.trace import load_trace, owned_delivery
from flask_async_events.pages.access import caller, current, say
from flask_async_events.pages.csv_export import csv_response
from flask_async_events.pages.forms import subscription_changes, subscription_fields
from flask_async_events.signing import generate_secret
from flask_async_events.state import get_state

PAGE_SIZE = 50
ATTEMPT_COLUMNS = (
    "created",
    "uuid",
    "event_name",
    "subscription_id",
    "attempt",
    "success",
    "status_code",
    "duration_ms",
    "error_class",
    "response_data",
)
SUBSCRIPTION_COLUMNS = (
    "subscription_id",
    "owner",
    "event_name",
    "recipient_url",
    "notifier",
    "store_id",
    "status",
    "disabled_reason",
    "rate_limit",
    "filter",
    "consecutive_failures",
    "last_success_at",
    "subscribed_at",
    "modified",
)
CSV_BATCH = 1000


def owned(subscription_id: int) -> Subscription:
    """The caller's subscription with this id, or a 404 (also for someone else's)."""
    query = visible_subscriptions(caller()).where(Subscription.subscription_id == subscription_id)
    subscription = get_state().db.session.scalar(query)
    if subscription is None:
        abort(404)
    return subscription


def chart_context(title: str, subscription_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """The charts of the window asked for (``?window=24h`` or ``7d``; another is refused with a message)."""
    window = request.args.get("window", "24h")
    if window not in WINDOWS:
        say(f"window must be one of {', '.join(WINDOWS)}; showing the last 24 hours", "error")
        window = "24h"
    points = attempt_series(get_state(), window, subscription_ids)
    return {
        "window": window,
        "chart_windows": list(WINDOWS),
        "charts": {"attempts": attempts_chart(points, title), "latency": latency_chart(points, title)},
    }


def owner_subscription_ids() -> list[int] | None:
    """The ids whose statistics the caller may see: all (None) for an admin, else every one it owns
    (unsubscribed ones too: their attempts happened)."""
    who = caller()
    if who.is_admin:
        return None
    query = select(Subscription.subscription_id).where(Subscription.owner == who.owner)
    return list(get_state().db.session.scalars(query))


def subscription_view(subscription: Subscription, **shown: Any) -> ResponseReturnValue:
    """A subscription's page; ``shown``: a new secret (shown once) or a ping's answer."""
    state = get_state()
    try:
        previous = open_previous(state.box, subscription.previous_tokens, utcnow())
    except ValueError:
        previous = []
    return render_template(
        "async_events_pages/subscription.html",
        **chart_context(f"Subscription {subscription.subscription_id}", [subscription.subscription_id]),
        s=subscription,
        headers=shown_headers(state, subscription),
        rate_limit=describe_rate_limit(subscription.rate_limit),
        circuit=circuit_words(state, [subscription.recipient_url])[subscription.recipient_url],
        previous_valid_until=max((entry.valid_until for entry in previous), default=None),
        notifiers=state.notifier_names(),
        **shown,
    )


def catalogue() -> list[Any]:
    """The events the caller may subscribe to, with their descriptions."""
    who = caller()
    return [definition for definition in get_state().definitions if not who.may_access(definition.resources)]


def new_subscription() -> ResponseReturnValue:
    state = get_state()
    form: dict[str, str] = dict(request.form) if request.method == "POST" else {"metadata": "http"}
    error = None
    status = 200
    if request.method == "POST":
        try:
            subscription, secret = _create(form)
        except (ValueError, OwnerLimit) as exc:
            state.db.session.rollback()
            error, status = str(exc), exc.status if isinstance(exc, OwnerLimit) else 400
        else:
            state.db.session.commit()
            return subscription_view(subscription, new_secret=secret, created=True)
    return render_template(
        "async_events_pages/new_subscription.html",
        form=form,
        error=error,
        events=catalogue(),
        notifiers=state.notifier_names(),
        chooses_owner=current().chooses_owner,
    ), status


def _create(form: dict[str, str]) -> tuple[Subscription, str | None]:
    """A subscription from the form, for the caller (an operator names any owner); the secret
    generated for it, if the form gave none."""
    state, who = get_state(), caller()
    fields = subscription_fields(form)
    pattern = normalise_pattern(fields["event_name"] or "")
    missing = who.may_access(required_resources(state.definitions, pattern))
    if missing:
        raise InvalidSubscription(UNAUTHORIZED_RESOURCES.format(resources=", ".join(missing)))
    given = form.get("verification_token", "").strip()
    secret = given or generate_secret()
    owner = (form.get("owner", "").strip() or None) if current().chooses_owner else who.owner
    subscription = create_subscription(state, verification_token=secret, owner=owner, caller=who, **fields)
    state.db.session.flush()
    return subscription, None if given else secret


def subscription_page(subscription_id: int) -> ResponseReturnValue:
    return subscription_view(owned(subscription_id))


def _back(subscription_id: int) -> ResponseReturnValue:
    return redirect(url_for(".subscription_page", subscription_id=subscription_id))


def _apply(subscription_id: int, change: Callable[[Subscription], str]) -> ResponseReturnValue:
    """Run ``change(subscription)``; commit and say what it answers, or roll back and say why not."""
    session = get_state().db.session
    subscription = owned(subscription_id)
    try:
        done = change(subscription)
    except (ValueError, OwnerLimit) as exc:
        session.rollback()
        say(str(exc), "error")
    else:
        session.commit()
        say(done, "ok")
    return _back(subscription_id)


def edit_subscription(subscription_id: int) -> ResponseReturnValue:
    def change(subscription: Subscription) -> str:
        update_subscription(get_state(), subscription, subscription_changes(request.form), caller=caller())
        return f"Saved: deliveries go to {subscription.recipient_url}, {describe_rate_limit(subscription.rate_limit)}."

    return _apply(subscription_id, change)


def subscription_status(subscription_id: int) -> ResponseReturnValue:
    enable = request.form.get("status") == "enable"

    def change(subscription: Subscription) -> str:
        reason = current().disabled_reason
        update_subscription(get_state(), subscription, {"status": enable}, disabled_reason=reason)
        return "Enabled." if enable else "Disabled: its pending retries are cancelled."

    return _apply(subscription_id, change)


def delete_subscription(subscription_id: int) -> ResponseReturnValue:
    """Unsubscribe, once the form's box says so (the pages run no script to ask)."""
    subscription = owned(subscription_id)
    if request.form.get("confirm") != "yes":
        say("Tick the box beside Delete to confirm.", "error")
        return _back(subscription_id)
    unsubscribe(get_state().db.session, subscription)
    get_state().db.session.commit()
    say(f"Subscription {subscription_id} deleted; its attempt log stays.", "ok")
    return redirect(url_for(".subscriptions"))


def rotate_subscription_secret(subscription_id: int) -> ResponseReturnValue:
    """The new secret is shown on the page this answers with, once (never in a message, which a
    cookie would carry)."""
    subscription = owned(subscription_id)
    session = get_state().db.session
    try:
        grace = parse_duration("grace", request.form.get("grace", "24h"), timedelta(seconds=MAX_GRACE)).total_seconds()
        rotation = rotate_secret(get_state(), subscription, grace=grace)
    except ValueError as exc:
        session.rollback()
        say(str(exc), "error")
        return _back(subscription_id)
    session.commit()
    return subscription_view(subscription, new_secret=rotation.verification_token)


def subscription_headers(subscription_id: int) -> ResponseReturnValue:
    def change(subscription: Subscription) -> str:
        headers = parse_header_lines(request.form.get("headers", "").splitlines())
        update_subscription(get_state(), subscription, {"headers": headers})
        return f"Saved {len(headers)} header(s)."

    return _apply(subscription_id, change)


def subscription_filter(subscription_id: int) -> ResponseReturnValue:
    query = request.form.get("filter", "").strip()

    def change(subscription: Subscription) -> str:
        update_subscription(get_state(), subscription, {"filter": query})
        return "Filter saved." if query else "Filter removed: every event is delivered."

    return _apply(subscription_id, change)


def ping_subscription(subscription_id: int) -> ResponseReturnValue:
    """Send a test event now and show the answer on the page."""
    try:
        answer = ping(get_state(), owned(subscription_id), caller())
    except RateLimited as exc:
        say(str(exc), "error")
        return _back(subscription_id)
    return subscription_view(owned(subscription_id), ping=answer)  # the ping ended the transaction


def recover_subscription(subscription_id: int) -> ResponseReturnValue:
    """Start replaying its dead deliveries since a time, and with ``missed`` delivering the events
    it never got; the workers do it, and the job's page follows them."""
    subscription = owned(subscription_id)
    try:
        since = parse_moment("since", request.form.get("since", "").strip(), utcnow())
        job = start_recovery(get_state(), subscription, since, missed=bool(request.form.get("missed")), caller=caller())
    except ValueError as exc:
        get_state().db.session.rollback()
        say(str(exc), "error")
        return _back(subscription_id)
    return redirect(url_for(".job_page", job_id=job.id))


def job_page(job_id: str) -> ResponseReturnValue:
    """How far a job started on these pages got; the page reloads itself while it runs."""
    job = find_operation(get_state(), job_id, caller())
    if job is None:
        abort(404)
    return render_template("async_events_pages/job.html", job=job)


def logs() -> ResponseReturnValue:
    """The caller's attempts, newest first, a page at a time, found by the search box."""
    state = get_state()
    text = request.args.get("q", "").strip()
    page = min(max(1, int(request.args["page"])), 100_000) if request.args.get("page", "").isdecimal() else 1
    error, found = None, SearchPage([], 0)
    try:
        query = visible_attempts(state.db.session, caller(), text, state.settings.filter_limits)
        found = search_page(state.db.session, query, page=page, size=PAGE_SIZE, timeout=state.settings.search_timeout)
    except QueryError as exc:
        error = str(exc)
    total, rows = found.total, found.rows
    exact = total <= COUNT_CAP
    pages = max(1, -(-total // PAGE_SIZE)) if exact else None  # None: more pages than counted
    more = (pages is None and len(rows) == PAGE_SIZE) or (pages is not None and page < pages)
    return render_template(
        "async_events_pages/logs.html",
        rows=rows,
        q=text,
        error=error,
        page=page,
        pages=pages,
        more=more,
        total=min(total, COUNT_CAP),
    ), 400 if error else 200


def logs_csv() -> ResponseReturnValue:
    """Every attempt the search finds (not only a page), as CSV, streamed a batch at a time; a
    search that cannot be run, or whose first batch takes too long, is said on the log page."""
    state = get_state()
    text = request.args.get("q", "").strip()
    try:
        query = visible_attempts(state.db.session, caller(), text, state.settings.filter_limits)
        batches = search_batches(state.db.session, query, size=CSV_BATCH, timeout=state.settings.search_timeout)
        first = next(batches, [])
    except QueryError as exc:
        say(f"q: {exc}", "error")
        return redirect(url_for(".logs", q=text))

    def rows() -> Iterator[list[object]]:
        for batch in itertools.chain([first], batches):
            for attempt, event_name in batch:
                facts = {**{name: getattr(attempt, name, None) for name in ATTEMPT_COLUMNS}, "event_name": event_name}
                yield [facts[name] for name in ATTEMPT_COLUMNS]

    return csv_response(f"attempts-{utcnow():%Y%m%d-%H%M%S}.csv", ATTEMPT_COLUMNS, rows())


def subscriptions_csv() -> ResponseReturnValue:
    """The caller's subscriptions (never their secrets or header values), as CSV, streamed."""
    session = get_state().db.session
    query = visible_subscriptions(caller()).order_by(Subscription.subscription_id)

    def rows() -> Iterator[list[object]]:
        for subscription in session.scalars(query.execution_options(yield_per=CSV_BATCH)):
            yield [getattr(subscription, name) for name in SUBSCRIPTION_COLUMNS]

    return csv_response(f"subscriptions-{utcnow():%Y%m%d-%H%M%S}.csv", SUBSCRIPTION_COLUMNS, rows())


def trace(uuid: str) -> ResponseReturnValue:
    found = load_trace(get_state().db.session, uuid, caller())
    if found is None:
        abort(404)
    payload = json.dumps(found["payload"], indent=2, ensure_ascii=False) if found["payload"] is not None else ""
    return render_template("async_events_pages/trace.html", trace=found, payload=payload)


def replay_delivery(uuid: str) -> ResponseReturnValue:
    state = get_state()
    if owned_delivery(state.db.session, uuid, caller()) is None:
        abort(404)
    state.db.session.rollback()
    try:
        replay(state, uuid)
    except ReplayError as exc:
        state.db.session.rollback()
        say(str(exc), "error")
    else:
        say("Sent again: a new attempt appears below once a worker has made it.", "ok")
    return redirect(url_for(".trace", uuid=uuid))


SHARED = (
    ("/subscriptions/new", new_subscription, ("GET", "POST")),
    ("/subscriptions.csv", subscriptions_csv, ("GET",)),
    ("/subscriptions/<int:subscription_id>", subscription_page, ("GET",)),
    ("/subscriptions/<int:subscription_id>/edit", edit_subscription, ("POST",)),
    ("/subscriptions/<int:subscription_id>/status", subscription_status, ("POST",)),
    ("/subscriptions/<int:subscription_id>/delete", delete_subscription, ("POST",)),
    ("/subscriptions/<int:subscription_id>/rotate", rotate_subscription_secret, ("POST",)),
    ("/subscriptions/<int:subscription_id>/headers", subscription_headers, ("POST",)),
    ("/subscriptions/<int:subscription_id>/filter", subscription_filter, ("POST",)),
    ("/subscriptions/<int:subscription_id>/ping", ping_subscription, ("POST",)),
    ("/subscriptions/<int:subscription_id>/recover", recover_subscription, ("POST",)),
    ("/jobs/<job_id>", job_page, ("GET",)),
    ("/logs", logs, ("GET",)),
    ("/logs.csv", logs_csv, ("GET",)),
    ("/trace/<uuid>", trace, ("GET",)),
    ("/trace/<uuid>/replay", replay_delivery, ("POST",)),
)


def add_shared_pages(blueprint: Blueprint) -> None:
    """Serve the shared pages on a surface's blueprint, under the same endpoint names everywhere
    (the templates link with ``url_for('.name')``)."""
    for rule, view, methods in SHARED:
        blueprint.add_url_rule(rule, view.__name__, view, methods=list(methods))
