"""A Lucene-like query language for the attempt log, translated to SQLAlchemy filters.

    status:500                       a field and a value
    event:sales.*  error:*Timeout    ``*`` wildcards
    response:"connection reset"      a quoted phrase
    status:500 AND NOT event:sales.* ``AND`` (also implied by a space), ``OR``, ``NOT`` or ``-``,
    (status:500 OR status:429)       parentheses
    created:[2026-01-01 TO *]        ranges, inclusive ``[..]`` or exclusive ``{..}``, ``*`` open
    data.customer.email:*@example.com  a path into the delivered JSON body
    1234                             no field: uuid, event, error class or response text

Every string gets either a filter or a :class:`QueryError` whose message says what is wrong and
where; nothing reaches the database unparsed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from flask_async_events.errors import QueryError
from flask_async_events.models import Delivery, DeliveryAttempt, Event, Subscription

MAX_QUERY = 1000
MAX_DEPTH = 20
MAX_TERMS = 50
OPEN = "*"


@dataclass(frozen=True)
class Token:
    kind: str  # WORD, PHRASE, LPAREN, RPAREN, AND, OR, NOT, RANGE
    text: str
    position: int


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<range>(?:[\w.\-]+:)?[\[{][^\]}]*[\]}])
  | (?P<phrase>(?:[\w.\-]+:)?"(?:[^"\\]|\\.)*")
  | (?P<word>[^\s()"]+)
    """,
    re.VERBOSE,
)


def tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(query):
        match = _TOKEN.match(query, position)
        if match is None:
            char = query[position]
            if char == '"':
                raise QueryError(f"unclosed quote at position {position + 1}")
            raise QueryError(f"unexpected {char!r} at position {position + 1}")
        kind = (match.lastgroup or "").upper()
        text = match.group()
        if kind != "SPACE":
            if kind == "WORD" and text in ("AND", "OR", "NOT", "&&", "||"):
                kind = {"&&": "AND", "||": "OR"}.get(text, text)
            tokens.append(Token(kind, text, position))
        position = match.end()
    return tokens


@dataclass(frozen=True)
class Term:
    field: str | None
    value: str
    phrase: bool = False


@dataclass(frozen=True)
class Range:
    field: str
    low: str
    high: str
    inclusive: bool


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class Both:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Either:
    operands: tuple[Node, ...]


Node = Term | Range | Not | Both | Either


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.terms = 0

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def parse(self) -> Node:
        node = self.either(0)
        token = self.peek()
        if token is not None:
            raise QueryError(f"unexpected {token.text!r} at position {token.position + 1}")
        return node

    def either(self, depth: int) -> Node:
        operands = [self.both(depth)]
        while (token := self.peek()) is not None and token.kind == "OR":
            self.take()
            operands.append(self.both(depth))
        return operands[0] if len(operands) == 1 else Either(tuple(operands))

    def both(self, depth: int) -> Node:
        operands = [self.negation(depth)]
        while (token := self.peek()) is not None and token.kind not in ("OR", "RPAREN"):
            if token.kind == "AND":
                self.take()
            operands.append(self.negation(depth))
        return operands[0] if len(operands) == 1 else Both(tuple(operands))

    def negation(self, depth: int) -> Node:
        token = self.peek()
        if token is not None and token.kind == "NOT":
            self.take()
            return Not(self.negation(depth))
        if token is not None and token.kind == "WORD" and token.text.startswith("-") and len(token.text) > 1:
            self.take()
            return Not(self.term(Token("WORD", token.text[1:], token.position + 1)))
        return self.atom(depth)

    def atom(self, depth: int) -> Node:
        token = self.peek()
        if token is None:
            raise QueryError("the query ends where a term was expected")
        if token.kind == "LPAREN":
            if depth >= MAX_DEPTH:
                raise QueryError(f"parentheses nest deeper than {MAX_DEPTH}")
            self.take()
            node = self.either(depth + 1)
            closing = self.peek()
            if closing is None or closing.kind != "RPAREN":
                raise QueryError(f"the parenthesis at position {token.position + 1} is not closed")
            self.take()
            return node
        if token.kind in ("WORD", "PHRASE", "RANGE"):
            return self.term(self.take())
        raise QueryError(f"unexpected {token.text!r} at position {token.position + 1}")

    def term(self, token: Token) -> Node:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise QueryError(f"a query may have at most {MAX_TERMS} terms")
        field, value = _split_field(token)
        if token.kind == "RANGE":
            if field is None:
                raise QueryError(
                    f"a range needs a field, as in created:[2026-01-01 TO *] (position {token.position + 1})"
                )
            return _range(field, value, token.position)
        if token.kind == "PHRASE":
            return Term(field, value[1:-1].replace('\\"', '"').replace("\\\\", "\\"), phrase=True)
        if not value:
            raise QueryError(f"{field}: needs a value (position {token.position + 1})")
        return Term(field, value)


def _split_field(token: Token) -> tuple[str | None, str]:
    text = token.text
    if token.kind == "WORD":
        field, colon, value = text.partition(":")
        return (field.lower(), value) if colon and field else (None, text)
    head = text[0]
    if head in '"[{':
        return None, text
    field, _, value = text.partition(":")
    return field.lower(), value


def _range(field: str, text: str, position: int) -> Range:
    inner = text[1:-1].strip()
    parts = re.split(r"\s+TO\s+", inner)
    if len(parts) != 2 or not all(part.strip() for part in parts):
        raise QueryError(f"{field}: a range is written [low TO high] (position {position + 1})")
    if (text[0], text[-1]) not in (("[", "]"), ("{", "}")):
        raise QueryError(f"{field}: a range opens and closes with the same kind of bracket (position {position + 1})")
    return Range(field, parts[0].strip(), parts[1].strip(), inclusive=text[0] == "[")


def parse(query: str) -> Node | None:
    """The query's tree, or None for an empty query; :class:`QueryError` if it cannot be read."""
    if len(query) > MAX_QUERY:
        raise QueryError(f"a query may be at most {MAX_QUERY} characters long")
    tokens = tokenize(query)
    return _Parser(tokens).parse() if tokens else None


# --- translation --------------------------------------------------------------------------------

Column = Any  # a mapped attribute or a SQL expression


def _number(field: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise QueryError(f"{field} takes a whole number, not {value!r}") from None


def _moment(field: str, value: str) -> tuple[datetime, datetime]:
    """The span a date or time names: a whole day for a date, an instant for a time."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(
            f"{field} takes a date or time such as 2026-01-31 or 2026-01-31T12:00, not {value!r}"
        ) from None
    moment = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return (moment, moment + timedelta(days=1)) if len(value) == 10 else (moment, moment)


def _like(column: Column, value: str, *, contains: bool = False) -> ColumnElement[bool]:
    """Equality, or LIKE where the value has ``*`` (escaped, so ``%`` and ``_`` are literal)."""
    escaped = _escape(value).replace("*", "%")
    if contains:
        return column.like(f"%{escaped}%", escape="\\")
    if "*" in value:
        return column.like(escaped, escape="\\")
    return column == value


@dataclass(frozen=True)
class Field:
    """How one field's values become conditions."""

    column: Callable[[], Column]
    kind: str  # text, keyword, number, boolean, time


FIELDS: dict[str, Field] = {
    "uuid": Field(lambda: DeliveryAttempt.uuid, "keyword"),
    "event": Field(lambda: Event.event_name, "keyword"),
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

    def __call__(self, node: Node) -> ColumnElement[bool]:
        if isinstance(node, Both):
            return sa.and_(*(self(operand) for operand in node.operands))
        if isinstance(node, Either):
            return sa.or_(*(self(operand) for operand in node.operands))
        if isinstance(node, Not):
            return sa.not_(self(node.operand))
        if isinstance(node, Range):
            return self.range(node)
        return self.term(node)

    def field(self, name: str) -> Field | None:
        return FIELDS.get(ALIASES.get(name, name))

    def term(self, term: Term) -> ColumnElement[bool]:
        if term.field is None:
            return self.anywhere(term)
        if term.field.startswith("data.") or term.field == "data":
            return self.payload(term.field, term.value)
        field = self.field(term.field)
        if field is None:
            raise QueryError(self.unknown(term.field))
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
        if term.phrase:
            return (
                column.like(f"%{_escape(term.value)}%", escape="\\") if field.kind == "text" else column == term.value
            )
        return _like(column, term.value, contains=field.kind == "text" and "*" not in term.value)

    def range(self, node: Range) -> ColumnElement[bool]:
        field = self.field(node.field)
        if field is None:
            raise QueryError(self.unknown(node.field))
        if field.kind not in ("number", "time"):
            raise QueryError(f"{node.field} is not a number or a time, so it has no ranges")
        column = field.column()
        conditions: list[ColumnElement[bool]] = []
        if node.low != OPEN:
            if field.kind == "number":
                low = _number(node.field, node.low)
                conditions.append(column >= low if node.inclusive else column > low)
            else:  # from the start of a day or time, or (exclusive) from its end
                start, end = _moment(node.field, node.low)
                conditions.append(
                    column >= start if node.inclusive else (column >= end if end != start else column > end)
                )
        if node.high != OPEN:
            if field.kind == "number":
                high = _number(node.field, node.high)
                conditions.append(column <= high if node.inclusive else column < high)
            else:  # up to the end of a day or time, or (exclusive) to its start
                start, end = _moment(node.field, node.high)
                conditions.append(
                    (column < end if end != start else column <= end) if node.inclusive else column < start
                )
        return sa.and_(*conditions) if conditions else sa.true()

    def payload(self, path: str, value: str) -> ColumnElement[bool]:
        """A value at a path into the delivered JSON body (``data.customer.email``)."""
        keys = tuple(path.split("."))
        if any(not key for key in keys):
            raise QueryError(f"{path!r} is not a path: it has an empty step")
        body: Any = (
            sa.cast(DeliveryAttempt.serialized_data, sa.JSON)
            if self.dialect == "postgresql"
            else sa.type_coerce(DeliveryAttempt.serialized_data, sa.JSON)
        )
        extracted = sa.cast(body[keys].as_string(), sa.String) if self.dialect == "sqlite" else body[keys].as_string()
        if value == OPEN:
            return extracted.is_not(None)
        return _like(extracted, value)

    def anywhere(self, term: Term) -> ColumnElement[bool]:
        """A bare value: a delivery uuid, an event name, an error class, or response text."""
        return sa.or_(
            _like(DeliveryAttempt.uuid, term.value),
            _like(Event.event_name, term.value),
            _like(DeliveryAttempt.error_class, term.value),
            _like(DeliveryAttempt.response_data, term.value, contains=True),
        )

    @staticmethod
    def unknown(name: str) -> str:
        known = ", ".join(sorted(FIELDS))
        return f"unknown field {name!r}; the fields are {known}, and data.<path> into the body"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def attempt_filter(query: str, dialect: str) -> ColumnElement[bool] | None:
    """The WHERE clause for ``query`` over attempts joined with their events (None: no filter)."""
    node = parse(query)
    return None if node is None else Translator(dialect)(node)


def attempts_query(text: str | None, dialect: str) -> sa.Select[DeliveryAttempt, str]:
    """Attempt rows with their event name (and subscription, for ownership), filtered by the search
    ``text``; raises :class:`QueryError`."""
    query = (
        sa.select(DeliveryAttempt, Event.event_name)
        .join(Subscription, DeliveryAttempt.subscription_id == Subscription.subscription_id)
        .join(Delivery, DeliveryAttempt.delivery_id == Delivery.id)
        .join(Event, Delivery.event_id == Event.id)
    )
    condition = attempt_filter(text, dialect) if text else None
    return query if condition is None else query.where(condition)
