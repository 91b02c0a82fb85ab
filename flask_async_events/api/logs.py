"""``/async_event_logs``: delivery attempts, the trace of one delivery, and replay."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy import Select

from flask_async_events.api.blueprint import blp, principal, state
from flask_async_events.api.errors import fail
from flask_async_events.api.schemas import AttemptList, AttemptQuery, ReplayOut, TraceOut
from flask_async_events.auth import Principal
from flask_async_events.models import DeliveryAttempt, Event
from flask_async_events.operations.replay import ReplayError, replay
from flask_async_events.operations.search import QueryError, search_page, visible_attempts
from flask_async_events.operations.status import COUNT_CAP
from flask_async_events.operations.trace import attempt_dict, load_trace, owned_delivery

TRACE_NOT_FOUND = "This asynchronous event trace no longer exists: no delivery {uuid}"


def _attempts(caller: Principal, text: str | None = None) -> Select[DeliveryAttempt, str]:
    """The caller's attempt rows with their event name, filtered by the search ``text`` (a bad one is
    a 400 naming ``q``)."""
    try:
        return visible_attempts(state().db.session, caller, text, state().settings.filter_limits)
    except QueryError as exc:
        fail(400, f"q: {exc}")


@blp.route("/async_event_logs")
class AttemptLog(MethodView):
    @blp.arguments(AttemptQuery, location="query")
    @blp.response(200, AttemptList)
    def get(self, filters: dict[str, Any]) -> dict[str, Any]:
        """Delivery attempts, newest first, filtered by subscription, uuid, event, outcome and time."""
        session = state().db.session
        query = _attempts(principal(), filters.get("q"))
        if "subscription_id" in filters:
            query = query.where(DeliveryAttempt.subscription_id == filters["subscription_id"])
        if "uuid" in filters:
            query = query.where(DeliveryAttempt.uuid == filters["uuid"])
        if "event_name" in filters:
            name = filters["event_name"].strip().lower()
            query = query.where(
                Event.event_name.like(name.replace("*", "%")) if "*" in name else Event.event_name == name
            )
        if "success" in filters:
            query = query.where(DeliveryAttempt.success.is_(filters["success"]))
        if "since" in filters:
            query = query.where(DeliveryAttempt.created >= filters["since"])
        if "until" in filters:
            query = query.where(DeliveryAttempt.created <= filters["until"])
        try:
            found = search_page(
                session,
                query,
                page=filters["page"],
                size=filters["page_size"],
                timeout=state().settings.search_timeout,
            )
        except QueryError as exc:
            fail(400, f"q: {exc}")
        return {
            "items": [attempt_dict(attempt, event_name) for attempt, event_name in found.rows],
            "total_count": min(found.total, COUNT_CAP),
            "total_count_exact": found.total <= COUNT_CAP,
        }


def _owned_delivery(uuid: str) -> None:
    if owned_delivery(state().db.session, uuid, principal()) is None:
        fail(404, TRACE_NOT_FOUND.format(uuid=uuid))


@blp.route("/async_event_logs/<uuid>")
class Trace(MethodView):
    @blp.response(200, TraceOut)
    @blp.alt_response(404, description="No such delivery, or not the caller's")
    def get(self, uuid: str) -> dict[str, Any]:
        """Everything about one delivery: its status, every attempt, and the payload sent."""
        trace = load_trace(state().db.session, uuid, principal())
        if trace is None:
            fail(404, TRACE_NOT_FOUND.format(uuid=uuid))
        return {**trace, "attempts": [attempt_dict(attempt, trace["event_name"]) for attempt in trace["attempts"]]}


@blp.route("/async_event_logs/<uuid>/replay")
class Replay(MethodView):
    @blp.response(202, ReplayOut)
    @blp.alt_response(404, description="No such delivery, or not the caller's")
    @blp.alt_response(409, description="The delivery cannot be replayed now (disabled subscription, being sent)")
    def post(self, uuid: str) -> dict[str, Any]:
        """Deliver again now: same uuid (webhook-id), body read from the database, fresh schedule."""
        _owned_delivery(uuid)
        state().db.session.rollback()
        try:
            replay(state(), uuid)
        except ReplayError as exc:
            state().db.session.rollback()
            fail(409, str(exc))
        return {"uuid": uuid, "message": f"Delivery {uuid} will be sent again"}
