"""The attempt-log search: a query in the language of :mod:`flask_async_events.query`, translated
to SQLAlchemy filters over attempts joined with their events. Every string gets either a filter or
a :class:`QueryError` whose message says what is wrong and where; nothing reaches the database
unparsed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Row
from sqlalchemy.sql.elements import ColumnElement

from flask_async_events.auth import Principal
from flask_async_events.bounds import parse_time, whole_number
from flask_async_events.errors import InvalidValue, QueryError
from flask_async_events.models import DbSession, Delivery, DeliveryAttempt, Event, Subscription
from flask_async_events.operations.payload_sql import Payload, escape_like
from flask_async_events.operations.status import COUNT_CAP, count_rows
from flask_async_events.operations.time_limit import time_limited
from flask_async_events.query import (
    OPEN,
    UNLIMITED,
    Both,
    Either,
    Exists,
    Limits,
    Node,
    Not,
    Range,
    Term,
    is_payload,
    number,
    parse,
    path_of,
    payload_bounds,
)

# --- translation --------------------------------------------------------------------------------

Column = Any  # a mapped attribute or a SQL expression


def _number(field: str, value: str) -> int:
    try:
        return whole_number(field, value)
    except InvalidValue as exc:
        raise QueryError(str(exc)) from None


def _moment(field: str, value: str) -> tuple[datetime, datetime]:
    """The span a date or time names: a whole day for a date, an instant for a time."""
    try:
        moment = parse_time(field, value)
    except InvalidValue as exc:
        raise QueryError(str(exc)) from None
    return (moment, moment + timedelta(days=1)) if len(value) == 10 else (moment, moment)


def _like(column: Column, value: str, *, contains: bool = False) -> ColumnElement[bool]:
    """Equality, or LIKE where the value has ``*`` (escaped, so ``%`` and ``_`` are literal)."""
    escaped = escape_like(value).replace("*", "%")
    if contains:
        return column.like(f"%{escaped}%", escape="\\")
    if "*" in value:
        return column.like(escaped, escape="\\")
    return column == value


@dataclass(frozen=True)
class Field:
    """How one field's values become conditions."""

    column: Callable[[], Column]
    kind: str  # text, keyword, name (a keyword stored in lower case), number, boolean, time


FIELDS: dict[str, Field] = {
    "uuid": Field(lambda: DeliveryAttempt.uuid, "keyword"),
    "event": Field(lambda: Event.event_name, "name"),
    "store": Field(lambda: Event.store_id, "number"),
    "subscription": Field(lambda: DeliveryAttempt.subscription_id, "number"),
    "status": Field(lambda: DeliveryAttempt.status_code, "number"),
    "attempt": Field(lambda: DeliveryAttempt.attempt, "number"),
    "duration": Field(lambda: DeliveryAttempt.duration_ms, "number"),
    "success": Field(lambda: DeliveryAttempt.success, "boolean"),
    "error": Field(lambda: DeliveryAttempt.error_class, "keyword"),
    "response": Field(lambda: DeliveryAttempt.response_data, "text"),
    "created": Field(lambda: DeliveryAttempt.created, "time"),
}
ALIASES = {
    "event_name": "event",
    "store_id": "store",
    "subscription_id": "subscription",
    "status_code": "status",
    "duration_ms": "duration",
    "error_class": "error",
    "response_data": "response",
}


class Translator:
    """Turns a parsed query into a WHERE clause over attempts joined with their events."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.body = Payload(dialect)

    def __call__(self, node: Node) -> ColumnElement[bool]:
        if isinstance(node, Both):
            return sa.and_(*(self(operand) for operand in node.operands))
        if isinstance(node, Either):
            return sa.or_(*(self(operand) for operand in node.operands))
        if isinstance(node, Not):
            return sa.not_(self(node.operand))
        if isinstance(node, Exists):
            return self.exists(node)
        if isinstance(node, Range):
            return self.payload_range(node) if is_payload(node.field) else self.range(node)
        return self.term(node)

    def field(self, name: str) -> Field | None:
        return FIELDS.get(ALIASES.get(name, name))

    def known(self, name: str) -> Field:
        field = self.field(name)
        if field is None:
            raise QueryError(self.unknown(name))
        return field

    def term(self, term: Term) -> ColumnElement[bool]:
        if term.field is None:
            return self.anywhere(term)
        if is_payload(term.field):
            return self.payload(term)
        field = self.known(term.field)
        column = field.column()
        if term.value == OPEN and not term.phrase:
            return column.is_not(None)
        if field.kind == "number":
            return column == _number(term.field, term.value)
        if field.kind == "boolean":
            if term.value.lower() not in ("true", "false"):
                raise QueryError(f"{term.field} is true or false, not {term.value!r}")
            return column.is_(term.value.lower() == "true")
        if field.kind == "time":
            start, end = _moment(term.field, term.value)
            return column == start if start == end else sa.and_(column >= start, column < end)
        value = term.value.lower() if field.kind == "name" else term.value
        if term.phrase:
            return column.like(f"%{escape_like(value)}%", escape="\\") if field.kind == "text" else column == value
        return _like(column, value, contains=field.kind == "text" and "*" not in value)

    def exists(self, node: Exists) -> ColumnElement[bool]:
        if is_payload(node.field):
            return self.body.exists(path_of(node.field))
        return self.known(node.field).column().is_not(None)

    def range(self, node: Range) -> ColumnElement[bool]:
        field = self.known(node.field)
        if field.kind not in ("number", "time"):
            raise QueryError(f"{node.field} is not a number or a time, so it has no ranges")
        column = field.column()
        conditions: list[ColumnElement[bool]] = []
        if node.low != OPEN:
            if field.kind == "number":
                low = _number(node.field, node.low)
                conditions.append(column >= low if node.include_low else column > low)
            else:  # from the start of a day or time, or (exclusive) from its end
                start, end = _moment(node.field, node.low)
                conditions.append(
                    column >= start if node.include_low else (column >= end if end != start else column > end)
                )
        if node.high != OPEN:
            if field.kind == "number":
                high = _number(node.field, node.high)
                conditions.append(column <= high if node.include_high else column < high)
            else:  # up to the end of a day or time, or (exclusive) to its start
                start, end = _moment(node.field, node.high)
                conditions.append(
                    (column < end if end != start else column <= end) if node.include_high else column < start
                )
        return sa.and_(*conditions) if conditions else sa.true()

    def payload(self, term: Term) -> ColumnElement[bool]:
        """A value at a path into the delivered JSON body (``data.customer.email``), as
        :mod:`flask_async_events.delivery.filters` matches it."""
        assert term.field is not None
        keys = path_of(term.field)
        if term.value == OPEN and not term.phrase:
            return self.body.exists(keys)
        wanted = number(term.value) if OPEN not in term.value or term.phrase else None
        return self.body.term(keys, term.value, phrase=term.phrase, wanted=wanted)

    def payload_range(self, node: Range) -> ColumnElement[bool]:
        """Numbers (number bounds) or strings (text bounds, in code point order) at a payload path."""
        kind, low, high = payload_bounds(node)
        return self.body.range(
            path_of(node.field), kind, low, high, include_low=node.include_low, include_high=node.include_high
        )

    def anywhere(self, term: Term) -> ColumnElement[bool]:
        """A bare value: a delivery uuid, an event name, an error class, or response text."""
        return sa.or_(
            _like(DeliveryAttempt.uuid, term.value),
            _like(Event.event_name, term.value.lower()),
            _like(DeliveryAttempt.error_class, term.value),
            _like(DeliveryAttempt.response_data, term.value, contains=True),
        )

    @staticmethod
    def unknown(name: str) -> str:
        known = ", ".join(sorted(FIELDS))
        return f"unknown field {name!r}; the fields are {known}, and data.<path> into the body"


def attempt_filter(query: str, dialect: str, limits: Limits = UNLIMITED) -> ColumnElement[bool] | None:
    """The WHERE clause for ``query`` over attempts joined with their events (None: no filter)."""
    node = parse(query, limits)
    return None if node is None else Translator(dialect)(node)


def attempts_query(text: str | None, dialect: str, limits: Limits = UNLIMITED) -> sa.Select[DeliveryAttempt, str]:
    """Attempt rows with their event name (and subscription, for ownership), filtered by the search
    ``text`` within ``limits``; raises :class:`QueryError`."""
    query = (
        sa.select(DeliveryAttempt, Event.event_name)
        .join(Subscription, DeliveryAttempt.subscription_id == Subscription.subscription_id)
        .join(Delivery, DeliveryAttempt.delivery_id == Delivery.id)
        .join(Event, Delivery.event_id == Event.id)
    )
    condition = attempt_filter(text, dialect, limits) if text else None
    return query if condition is None else query.where(condition)


@dataclass(frozen=True)
class SearchPage:
    """One page of a search's attempts (each with its event name), newest first, and how many
    match in all, counted up to :data:`COUNT_CAP` and one more."""

    rows: list[Row[DeliveryAttempt, str]]
    total: int


def search_page(
    session: DbSession, query: sa.Select[DeliveryAttempt, str], *, page: int, size: int, timeout: float
) -> SearchPage:
    """A page of ``query`` (from :func:`visible_attempts`) with its count, each statement under
    ``timeout``; :class:`~flask_async_events.errors.SearchTimeout` past it."""
    with time_limited(session, timeout):
        total = count_rows(session, query, cap=COUNT_CAP)
        ordered = query.order_by(DeliveryAttempt.log_id.desc()).offset((page - 1) * size).limit(size)
        rows = list(session.execute(ordered))
    return SearchPage(rows, total)


def search_batches(
    session: DbSession, query: sa.Select[DeliveryAttempt, str], *, size: int, timeout: float
) -> Iterator[list[Row[DeliveryAttempt, str]]]:
    """Every attempt ``query`` finds, newest first, ``size`` at a time: each batch one statement
    that starts below the last one's ``log_id``, under ``timeout`` (an export is as long as it
    needs to be; no one statement is)."""
    before: int | None = None
    while True:
        batch = query if before is None else query.where(DeliveryAttempt.log_id < before)
        with time_limited(session, timeout):
            rows = list(session.execute(batch.order_by(DeliveryAttempt.log_id.desc()).limit(size)))
        if not rows:
            return
        yield rows
        before = rows[-1][0].log_id


def visible_attempts(
    session: DbSession, caller: Principal, text: str | None, limits: Limits
) -> sa.Select[DeliveryAttempt, str]:
    """:func:`attempts_query` limited to the caller's subscriptions (all for an admin), also those
    unsubscribed since: their log outlives them. What a search names (``subscription:7``) only
    narrows this further, so nobody finds another owner's rows by naming them."""
    query = attempts_query(text, session.get_bind().dialect.name, limits)
    return query if caller.is_admin else query.where(Subscription.owner == caller.owner)
