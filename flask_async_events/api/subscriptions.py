"""``/async_event`` and ``/async_events``: the Magento module's subscription calls, plus recover and ping."""

from __future__ import annotations

from typing import Any

from flask import request
from flask.views import MethodView

from flask_async_events.api import search_criteria
from flask_async_events.api.blueprint import bad_request, blp, owned_subscription, principal, state
from flask_async_events.api.errors import fail
from flask_async_events.api.schemas import (
    Definition,
    OperationOut,
    PingOut,
    RecoverIn,
    RotateIn,
    RotateOut,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionList,
    SubscriptionOut,
    SubscriptionQuery,
    SubscriptionUpdate,
)
from flask_async_events.auth import UNAUTHORIZED_RESOURCES, required_resources, visible_subscriptions
from flask_async_events.definitions import normalise_pattern
from flask_async_events.models import Subscription
from flask_async_events.operations.background import Operation, find_operation, start_recovery
from flask_async_events.operations.ping import ping
from flask_async_events.operations.replay import ReplayError
from flask_async_events.operations.rotation import DEFAULT_GRACE, rotate_secret
from flask_async_events.operations.status import count_rows
from flask_async_events.operations.subscriptions import create_subscription, unsubscribe, update_subscription
from flask_async_events.signing import generate_secret

SUBSCRIPTION_ATTRIBUTES = (
    "subscription_id",
    "event_name",
    "recipient_url",
    "status",
    "subscribed_at",
    "modified",
    "notifier",
    "store_id",
    "rate_limit",
    "filter",
    "disabled_reason",
)


@blp.route("/async_event")
class AsyncEventCreate(MethodView):
    @blp.arguments(SubscriptionCreate)
    @blp.response(200, SubscriptionCreated)
    @blp.alt_response(400, description="A field is invalid; the message names it")
    @blp.alt_response(401, description="No valid token, or the token lacks the event's resources")
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Subscribe (the Magento module's POST /V1/async_event)."""
        fields = body["asyncEvent"]
        app_state, caller = state(), principal()
        try:
            pattern = normalise_pattern(fields["event_name"])
        except ValueError as exc:
            bad_request(exc)
        missing = caller.may_access(required_resources(app_state.definitions, pattern))
        if missing:
            fail(401, UNAUTHORIZED_RESOURCES.format(resources=", ".join(missing)))
        token = fields.get("verification_token") or generate_secret()
        try:
            subscription = create_subscription(
                app_state,
                event_name=pattern,
                recipient_url=fields["recipient_url"],
                verification_token=token,
                metadata=fields["metadata"],
                store_id=fields["store_id"],
                owner=caller.owner,
                rate_limit=fields.get("rate_limit"),
                headers=fields.get("headers"),
                filter=fields.get("filter"),
                caller=caller,
            )
            app_state.db.session.commit()
        except ValueError as exc:
            bad_request(exc)
        result = {name: getattr(subscription, name) for name in SUBSCRIPTION_ATTRIBUTES}
        result["subscription"] = subscription
        if "verification_token" not in fields:
            result["verification_token"] = token  # generated: returned this once
        return result


@blp.route("/async_event/<subscription_id>")
class AsyncEvent(MethodView):
    @blp.response(200, SubscriptionOut)
    @blp.alt_response(404, description="Async event with subscription ID N does not exist")
    def get(self, subscription_id: str) -> Subscription:
        """One subscription."""
        return owned_subscription(subscription_id)

    @blp.arguments(SubscriptionUpdate)
    @blp.response(200, SubscriptionOut)
    @blp.alt_response(400, description="A field is invalid or cannot be changed")
    @blp.alt_response(404, description="Async event with subscription ID N does not exist")
    def put(self, body: dict[str, Any], subscription_id: str) -> Subscription:
        """Change status, metadata, recipient_url, rate_limit, headers or filter; fields left out
        stay as they were."""
        app_state = state()
        subscription = owned_subscription(subscription_id)
        try:
            update_subscription(
                app_state,
                subscription,
                body["asyncEvent"],
                disabled_reason="disabled through the API",
                caller=principal(),
            )
        except ValueError as exc:
            bad_request(exc)
        app_state.db.session.commit()
        return subscription

    @blp.response(204)
    @blp.alt_response(404, description="Async event with subscription ID N does not exist")
    def delete(self, subscription_id: str) -> None:
        """Unsubscribe: disable and hide it; its delivery logs stay as an audit trail."""
        app_state = state()
        unsubscribe(app_state.db.session, owned_subscription(subscription_id))
        app_state.db.session.commit()


@blp.route("/async_events")
class AsyncEventList(MethodView):
    @blp.arguments(SubscriptionQuery, location="query")
    @blp.response(200, SubscriptionList)
    @blp.alt_response(400, description="A filter is invalid")
    def get(self, filters: dict[str, Any]) -> dict[str, Any]:
        """List subscriptions: filters, pages, and the Magento module's searchCriteria[...] form."""
        session = state().db.session
        query = visible_subscriptions(principal())
        if "event_name" in filters:
            query = query.where(Subscription.event_name == filters["event_name"].strip().lower())
        if "status" in filters:
            query = query.where(Subscription.status.is_(filters["status"]))
        if "store_id" in filters:
            query = query.where(Subscription.store_id == filters["store_id"])
        try:
            criteria = search_criteria.parse(request.args)
            query = search_criteria.apply(query, criteria)
        except ValueError as exc:
            bad_request(exc)
        page_size = min(criteria.page_size or filters["page_size"], 100)
        page = criteria.current_page or filters["page"]
        total = count_rows(state().db.session, query)
        items = session.scalars(
            query.order_by(Subscription.subscription_id).offset((page - 1) * page_size).limit(page_size)
        ).all()
        return {"items": items, "total_count": total, "search_criteria": criteria.echo()}


@blp.route("/async_events/definitions")
class Definitions(MethodView):
    @blp.response(200, Definition(many=True))
    def get(self) -> list[dict[str, Any]]:
        """The event catalogue: every event that can be subscribed to."""
        return [
            {"name": d.name, "description": d.description, "resources": list(d.resources)} for d in state().definitions
        ]


@blp.route("/async_event/<subscription_id>/recover")
class Recover(MethodView):
    @blp.arguments(RecoverIn)
    @blp.response(202, OperationOut)
    @blp.alt_response(409, description="The subscription is disabled")
    def post(self, body: dict[str, Any], subscription_id: str) -> Operation:
        """Deliver again every dead delivery of this subscription created since a time; with
        ``missed``, also the events since then (never from before the subscription was made) it
        would receive now but never got. It runs on the workers: the answer is the job, whose
        progress ``GET /async_event_jobs/<job>`` tells."""
        subscription = owned_subscription(subscription_id)
        try:
            return start_recovery(state(), subscription, body["since"], missed=body["missed"], caller=principal())
        except ReplayError as exc:
            state().db.session.rollback()
            fail(409, str(exc))


@blp.route("/async_event_jobs/<job_id>")
class OperationProgress(MethodView):
    @blp.response(200, OperationOut)
    @blp.alt_response(404, description="No such job, or not the caller's (a job is kept a day after its last step)")
    def get(self, job_id: str) -> Operation:
        """How far a job started through this API (a recovery) got."""
        found = find_operation(state(), job_id, principal())
        if found is None:
            fail(404, f"No job {job_id}: it is not yours, or it ended more than a day ago")
        return found


@blp.route("/async_event/<subscription_id>/rotate_secret")
class RotateSecret(MethodView):
    @blp.arguments(RotateIn, required=False)
    @blp.response(200, RotateOut)
    @blp.alt_response(400, description="A field is invalid; the message names it")
    @blp.alt_response(404, description="Async event with subscription ID N does not exist")
    def post(self, body: dict[str, Any], subscription_id: str) -> dict[str, Any]:
        """Give the subscription a new signing secret; the old one also signs for the grace period."""
        app_state = state()
        subscription = owned_subscription(subscription_id)
        try:
            rotation = rotate_secret(
                app_state,
                subscription,
                token=body.get("verification_token"),
                grace=body.get("grace_period", DEFAULT_GRACE),
            )
        except ValueError as exc:
            bad_request(exc)
        app_state.db.session.commit()
        return {
            "verification_token": rotation.verification_token,
            "previous_valid_until": rotation.previous_valid_until,
        }


@blp.route("/async_event/<subscription_id>/ping")
class Ping(MethodView):
    @blp.response(200, PingOut)
    @blp.alt_response(
        409, description="The server cannot send to it: no such notifier here, or a secret it cannot decrypt"
    )
    @blp.alt_response(429, description="Too many test sends this minute (ASYNC_EVENTS_TEST_SENDS_PER_MINUTE)")
    def post(self, subscription_id: str) -> dict[str, Any]:
        """Send a test event to the endpoint now, signed as usual, and return what it answered."""
        answer = ping(state(), owned_subscription(subscription_id), principal())
        if not answer.sent:
            fail(409, answer.result.response_data)
        result = answer.result
        return {
            "success": result.success,
            "status_code": result.status_code,
            "duration_ms": answer.duration_ms,
            "error_class": result.error_class,
            "response_data": result.response_data,
        }
