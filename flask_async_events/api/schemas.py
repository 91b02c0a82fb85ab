"""The REST API's request and response shapes (marshmallow), in the Magento module's form."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, pre_load, validate

from flask_async_events.bounds import EARLIEST, LATEST, in_time_range
from flask_async_events.errors import InvalidValue
from flask_async_events.models import Subscription
from flask_async_events.operations.headers import MAX_HEADERS, shown_headers
from flask_async_events.operations.rotation import DEFAULT_GRACE, MAX_GRACE
from flask_async_events.operations.subscriptions import MAX_RATE_LIMIT, MIN_RATE_LIMIT
from flask_async_events.query import MAX_QUERY
from flask_async_events.state import get_state

MAX_PAGE = 1_000_000
MAX_ID = 2**31 - 1
READ_ONLY = {
    "event_name": "event_name cannot be changed; subscribe again for another event",
    "store_id": "store_id cannot be changed; subscribe again for another store",
    "verification_token": "verification_token cannot be changed; subscribe again for a new token",
}
IGNORED_ON_UPDATE = ("subscription_id", "subscribed_at", "modified")


class Moment(fields.DateTime):
    """An ISO 8601 time from 1970 to 9999, given back in UTC (one without an offset is UTC)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return in_time_range(attr or "time", moment)
        except InvalidValue:
            raise ValidationError(f"must be a time from {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}") from None


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


def rate_limit_field() -> fields.Float:
    return fields.Float(
        allow_none=True,
        validate=validate.Range(MIN_RATE_LIMIT, MAX_RATE_LIMIT),
        metadata={"description": "At most this many deliveries per second, across all workers; null: no limit"},
    )


def headers_field() -> fields.Dict:
    return fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        allow_none=True,
        metadata={
            "description": f"Extra request headers sent with every delivery (at most {MAX_HEADERS}); values are"
            " shown masked, but for a few harmless names (accept, accept-language, x-request-source, ...)."
            " On PUT the whole set is replaced; a masked value sent back keeps the stored one."
        },
    )


def filter_field() -> fields.String:
    return fields.String(
        allow_none=True,
        validate=validate.Length(max=MAX_QUERY),
        metadata={
            "description": 'Deliver only events that match this query, e.g. "data.total:>=100 AND store:1";'
            " null or empty: every event"
        },
    )


class SubscriptionFields(StrictSchema):
    event_name = fields.String(
        required=True,
        validate=validate.Length(1, 255),
        metadata={"description": "An event name, or a pattern with * wildcards"},
    )
    recipient_url = fields.String(
        required=True,
        validate=validate.Length(1, 1024),
        metadata={"description": "An http(s) URL, or an EventBridge bus name or ARN"},
    )
    verification_token = fields.String(
        validate=validate.Length(1, 255),
        load_only=True,
        metadata={"description": "HMAC key; a whsec_ secret is generated if left out"},
    )
    metadata = fields.String(
        required=True,
        validate=validate.Length(1, 64),
        metadata={"description": "The notifier: http, eventbridge (or event_bridge) or sqs"},
    )
    store_id = fields.Integer(load_default=0, validate=validate.Range(0, 65535))
    rate_limit = rate_limit_field()
    headers = headers_field()
    filter = filter_field()


class SubscriptionCreate(StrictSchema):
    asyncEvent = fields.Nested(SubscriptionFields, required=True)


class SubscriptionChanges(StrictSchema):
    status = fields.Boolean()
    metadata = fields.String(validate=validate.Length(1, 64))
    recipient_url = fields.String(validate=validate.Length(1, 1024))
    rate_limit = rate_limit_field()
    headers = headers_field()
    filter = filter_field()

    @pre_load
    def refuse_read_only(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, dict):
            errors = {key: [message] for key, message in READ_ONLY.items() if key in data}
            if errors:
                raise ValidationError(errors)
            data = {key: value for key, value in data.items() if key not in IGNORED_ON_UPDATE}
        return data


class SubscriptionUpdate(StrictSchema):
    asyncEvent = fields.Nested(SubscriptionChanges, required=True)


def _masked_headers(subscription: Subscription | dict[str, Any]) -> dict[str, str]:
    """A subscription's headers as responses show them (masked)."""
    # A response built by hand (a creation's) holds its model.
    model = subscription["subscription"] if isinstance(subscription, dict) else subscription
    return shown_headers(get_state(), model)


class SubscriptionOut(Schema):
    subscription_id = fields.Integer()
    event_name = fields.String()
    recipient_url = fields.String()
    status = fields.Boolean()
    subscribed_at = fields.DateTime()
    modified = fields.DateTime()
    metadata = fields.String(attribute="notifier")
    store_id = fields.Integer()
    rate_limit = fields.Float(allow_none=True)
    headers = fields.Function(_masked_headers, metadata={"type": "object", "additionalProperties": {"type": "string"}})
    filter = fields.String(allow_none=True)
    disabled_reason = fields.String(allow_none=True)


class SubscriptionCreated(SubscriptionOut):
    verification_token = fields.String(metadata={"description": "Only when generated: shown this once"})


class PageQuery(Schema):
    """Page parameters every list route takes; other query keys are read by the route itself."""

    class Meta:
        unknown = EXCLUDE  # e.g. the Magento module's searchCriteria[...] keys

    page = fields.Integer(load_default=1, validate=validate.Range(1, MAX_PAGE))
    page_size = fields.Integer(load_default=20, validate=validate.Range(1, 100))


class SubscriptionQuery(PageQuery):
    event_name = fields.String()
    status = fields.Boolean()
    store_id = fields.Integer(validate=validate.Range(0, 65535))


class SubscriptionList(Schema):
    items = fields.List(fields.Nested(SubscriptionOut))
    total_count = fields.Integer()
    search_criteria = fields.Dict()


class Definition(Schema):
    name = fields.String()
    description = fields.String()
    resources = fields.List(fields.String())


class AttemptOut(Schema):
    log_id = fields.Integer()
    uuid = fields.String()
    subscription_id = fields.Integer()
    event_name = fields.String()
    attempt = fields.Integer()
    success = fields.Boolean()
    status_code = fields.Integer(allow_none=True)
    duration_ms = fields.Integer(allow_none=True)
    error_class = fields.String(allow_none=True)
    response_data = fields.String()
    created = fields.DateTime()


class AttemptQuery(PageQuery):
    subscription_id = fields.Integer(validate=validate.Range(0, MAX_ID))
    uuid = fields.String()
    event_name = fields.String()
    success = fields.Boolean()
    since = Moment()
    until = Moment()
    q = fields.String(
        validate=validate.Length(max=1000),
        metadata={"description": 'A search, e.g. "status:[500 TO 599] AND data.customer.email:*@example.com"'},
    )


class AttemptList(Schema):
    items = fields.List(fields.Nested(AttemptOut))
    total_count = fields.Integer(metadata={"description": "Matching attempts, counted up to 10,000"})
    total_count_exact = fields.Boolean(
        metadata={"description": "false when more than 10,000 match: page on, or narrow the search"}
    )


class TraceOut(Schema):
    uuid = fields.String()
    status = fields.String(metadata={"description": 'e.g. "Delivered with 2 retries", "Dead Lettered with 5 retries"'})
    state = fields.String()
    event_name = fields.String()
    event_id = fields.String()
    store_id = fields.Integer()
    subscription = fields.Nested(SubscriptionOut)
    first_attempt = fields.DateTime(allow_none=True)
    last_attempt = fields.DateTime(allow_none=True)
    next_attempt_at = fields.DateTime(allow_none=True)
    attempts = fields.List(fields.Nested(AttemptOut))
    payload = fields.Raw(allow_none=True, metadata={"description": "The exact body sent, parsed"})


class RotateIn(StrictSchema):
    verification_token = fields.String(
        validate=validate.Length(1, 255),
        metadata={"description": "The new secret; a new whsec_ secret is generated if left out"},
    )
    grace_period = fields.Integer(
        load_default=DEFAULT_GRACE,
        validate=validate.Range(0, MAX_GRACE),
        metadata={"description": "Seconds the replaced secret keeps signing beside the new one (0 to 7 days)"},
    )


class RotateOut(Schema):
    verification_token = fields.String(metadata={"description": "The new secret: shown this once"})
    previous_valid_until = fields.DateTime(metadata={"description": "Until when the replaced secret also signs"})


class RecoverIn(StrictSchema):
    since = Moment(required=True, metadata={"description": "Re-deliver dead deliveries created since"})
    missed = fields.Boolean(
        load_default=False,
        metadata={
            "description": "Also deliver the events published since then that the subscription would receive now"
            " but never got (while they are still in the outbox)"
        },
    )


class OperationOut(Schema):
    job = fields.String(attribute="id", metadata={"description": "The job's id: GET /async_event_jobs/<job>"})
    kind = fields.String(metadata={"description": "What it does: recover"})
    subscription_id = fields.Integer()
    status = fields.String(metadata={"description": "queued, running, finished or failed"})
    done = fields.Integer(metadata={"description": "Dead deliveries and events gone through so far"})
    total = fields.Integer(metadata={"description": "What it goes through, counted when it started"})
    sent = fields.Integer(metadata={"description": "Deliveries replayed or made so far"})
    message = fields.String(metadata={"description": "What stopped it, if something did"})
    created = fields.String()


class ReplayOut(Schema):
    uuid = fields.String()
    message = fields.String()


class PingOut(Schema):
    success = fields.Boolean()
    status_code = fields.Integer(allow_none=True)
    duration_ms = fields.Integer()
    error_class = fields.String(allow_none=True)
    response_data = fields.String()
