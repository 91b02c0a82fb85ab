"""The API blueprint, its authentication and the helpers its views share."""

from __future__ import annotations

import math
from typing import Any

from flask import g, request
from flask.typing import ResponseReturnValue
from flask_smorest import Blueprint
from werkzeug.exceptions import HTTPException

from flask_async_events.api.errors import error_response, fail, handle_http_exception
from flask_async_events.auth import Principal, authenticate, visible_subscriptions
from flask_async_events.errors import AuthError, OwnerLimit
from flask_async_events.models import Subscription
from flask_async_events.state import AppState, get_state

blp = Blueprint(
    "async_events",
    __name__,
    description="Subscriptions (the Magento module's /V1/async_event calls), the event catalogue and delivery logs",
)
blp.register_error_handler(HTTPException, handle_http_exception)


@blp.errorhandler(OwnerLimit)
def owner_limit_reached(exc: OwnerLimit) -> ResponseReturnValue:
    """A bound of the caller's owner: 403, or 429 with ``Retry-After``; nothing of it was stored."""
    get_state().db.session.rollback()
    headers = {} if exc.retry_after is None else {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return error_response(exc.status, str(exc), headers=headers)


NOT_FOUND = "Async event with subscription ID {id} does not exist"
MAX_JSON_DEPTH = 64


@blp.before_request
def limit_body() -> ResponseReturnValue | None:
    """A body over ``ASYNC_EVENTS_MAX_BODY`` is refused before it is read (one that does not say
    its length is cut off there, a 413 as well), and JSON nested deeper than :data:`MAX_JSON_DEPTH`
    levels is refused once parsed: nothing the API takes nests that deep. A body that is not JSON
    (a client that forgot its ``Content-Type``) is a 415 that says so, not a missing field."""
    limit = state().settings.max_body
    request.max_content_length = limit
    if _over(limit):
        return error_response(413, f"the request body is larger than {limit} bytes (ASYNC_EVENTS_MAX_BODY)")
    if not request.is_json:
        if request.get_data(cache=True).strip():
            kind = request.mimetype or "no Content-Type"
            return error_response(415, f"the body is {kind}: send it as JSON, with Content-Type: application/json")
        return None
    try:
        deep = json_depth(request.get_json(silent=True)) > MAX_JSON_DEPTH
    except RecursionError:  # the parser's own limit, far deeper than ours
        deep = True
    if deep:
        return error_response(400, f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels")
    return None


def _over(limit: int) -> bool:
    """Whether the body is larger than ``limit``: by its ``Content-Length``, unread; one without a
    length (chunked) is read up to the limit, and no further."""
    if request.content_length is not None:
        return request.content_length > limit
    return len(request.get_data(cache=True)) >= limit


def json_depth(value: Any) -> int:
    """How deep objects and lists nest in a parsed JSON value (a scalar: 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


@blp.before_request
def authenticate_request() -> ResponseReturnValue | None:
    state = get_state()
    try:
        g.async_events_principal = authenticate(state.db.session, request, state.authorizer())
    except AuthError as exc:
        state.db.session.rollback()
        return error_response(401, str(exc), headers={"WWW-Authenticate": 'Bearer realm="async-events"'})
    return None


@blp.before_request
def refuse_nul_characters() -> ResponseReturnValue | None:
    """No text may carry a NUL character (PostgreSQL cannot store or compare one): a 400 naming
    where it was, for the query, the path and the JSON body alike."""
    where = _nul_in({**request.args, **(request.view_args or {})}) or _nul_in(request.get_json(silent=True), "body")
    if where is not None:
        return error_response(400, f"{where}: must not contain NUL characters")
    return None


def _nul_in(value: Any, path: str = "") -> str | None:
    """The path to the first string holding a NUL character inside ``value``, or None."""
    if isinstance(value, str):
        return path or "value" if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _nul_in(str(key), path) or _nul_in(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_in(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def principal() -> Principal:
    found: Principal = g.async_events_principal
    return found


def state() -> AppState:
    return get_state()


def owned_subscription(subscription_id: str) -> Subscription:
    """The caller's subscription with this id, or the Magento module's 404 (also for someone else's)."""
    if not subscription_id.isdecimal() or len(subscription_id) > 18:
        fail(404, NOT_FOUND.format(id=subscription_id))
    query = visible_subscriptions(principal()).where(Subscription.subscription_id == int(subscription_id))
    subscription = state().db.session.scalar(query)
    if subscription is None:
        fail(404, NOT_FOUND.format(id=subscription_id))
    return subscription


def bad_request(exc: Exception) -> Any:
    """A ``ValueError`` from the service layer, whose message names the field, as a 400."""
    state().db.session.rollback()
    fail(400, str(exc))
