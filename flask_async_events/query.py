"""The query language of the attempt-log search and of subscription filters: one parser, whose
tree two back ends read (SQL over the log in :mod:`flask_async_events.operations.search`, Python
over an event's payload in :mod:`flask_async_events.delivery.filters`)::

    status:500                       a field and a value
    event:sales.*  error:*Timeout    ``*`` wildcards
    response:"connection reset"      a quoted phrase
    status:500 AND NOT event:sales.* ``AND`` (also implied by a space), ``OR``, ``NOT`` or ``-``,
    (status:500 OR status:429)       parentheses
    created:[2026-01-01 TO *]        ranges, inclusive ``[..]`` or exclusive ``{..}``, ``*`` open
    data.total:>=100                 comparisons: ``>``, ``>=``, ``<``, ``<=``
    data.customer.email:*@example.com  a path into the JSON payload
    data.tags:vip                    matches a list holding a matching element
    _exists_:data.coupon             the path is there (and not null)
    1234                             no field: uuid, event, error class or response text (the log)

A payload path's value matches a term when it is a string the value matches (letters in either
case, ``*`` for any run of characters), a number equal to the value's number, or a boolean the
value names (``true``, ``false``); a list matches when one of its elements does. A range with
number bounds matches numbers in it; one with other bounds matches strings in it, in code point
order.

Every string gets either a tree or a :class:`QueryError` whose message says what is wrong and
where; nothing reaches a back end unparsed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from dataclasses import field as attribute

from flask_async_events.errors import QueryError

MAX_QUERY = 1000
MAX_DEPTH = 20
MAX_TERMS = 50
MAX_WILDCARDS = 50
OPEN = "*"
EXISTS = "_exists_"
PAYLOAD = "data"
COMPARISONS = (">=", "<=", ">", "<")
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_PATH_STEP = re.compile(r"[A-Za-z0-9_\-]+")
_UNCLOSED_RANGE = re.compile(r"(?:[\w.\-]+:)?[\[{]")


@dataclass(frozen=True)
class Limits:
    """How large a filter or a search may be (``ASYNC_EVENTS_FILTER_LIMITS``): its characters,
    its terms and the ``*`` wildcards of all its terms. What a query costs to run grows with each,
    so each is checked before anything runs; the parser never takes more than the ``MAX_*`` caps."""

    length: int = MAX_QUERY
    terms: int = MAX_TERMS
    wildcards: int = MAX_WILDCARDS

    def over(self, key: str) -> QueryError:
        """The error for a query over the limit ``key`` (length, terms or wildcards)."""
        what = {"length": "characters", "terms": "terms", "wildcards": "* wildcards"}[key]
        return QueryError(f"a query may have at most {getattr(self, key)} {what} (ASYNC_EVENTS_FILTER_LIMITS {key})")


UNLIMITED = Limits()


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
        if kind == "WORD" and _UNCLOSED_RANGE.match(text):
            raise QueryError(f"the range at position {position + 1} is not closed")
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
    position: int = attribute(default=0, compare=False)


@dataclass(frozen=True)
class Range:
    field: str
    low: str
    high: str
    include_low: bool
    include_high: bool
    position: int = attribute(default=0, compare=False)


@dataclass(frozen=True)
class Exists:
    field: str
    position: int = attribute(default=0, compare=False)


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class Both:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Either:
    operands: tuple[Node, ...]


Node = Term | Range | Exists | Not | Both | Either
Leaf = Term | Range | Exists


class _Parser:
    def __init__(self, tokens: list[Token], limits: Limits) -> None:
        self.tokens = tokens
        self.limits = limits
        self.index = 0
        self.terms = 0
        self.wildcards = 0

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

    def term(self, token: Token) -> Leaf:
        self.terms += 1
        if self.terms > self.limits.terms:
            raise self.limits.over("terms")
        name, value = _split_field(token)
        if token.kind != "PHRASE":
            self.wildcards += value.count(OPEN)
            if self.wildcards > self.limits.wildcards:
                raise self.limits.over("wildcards")
        where = f"position {token.position + 1}"
        if token.kind == "RANGE":
            if name is None:
                raise QueryError(f"a range needs a field, as in created:[2026-01-01 TO *] ({where})")
            return _range(name, value, token.position)
        if token.kind == "PHRASE":
            return Term(name, value[1:-1].replace('\\"', '"').replace("\\\\", "\\"), True, token.position)
        if not value:
            raise QueryError(f"{name}: needs a value ({where})")
        if name == EXISTS:
            return Exists(_field_name(value, token.position), token.position)
        if name is not None:
            for operator in COMPARISONS:
                if value.startswith(operator):
                    bound = value[len(operator) :]
                    if not bound or bound == OPEN:
                        raise QueryError(f"{name}: {operator} needs a value ({where})")
                    if operator.startswith(">"):
                        return Range(name, bound, OPEN, operator == ">=", True, token.position)
                    return Range(name, OPEN, bound, True, operator == "<=", token.position)
        return Term(name, value, False, token.position)


def _field_name(text: str, position: int) -> str:
    """A field as written: known names in lower case, a payload path's keys as they are."""
    head, dot, rest = text.partition(".")
    if head.lower() == PAYLOAD and dot:
        steps = rest.split(".")
        if not all(steps):
            raise QueryError(f"{text!r} is not a path: it has an empty step (position {position + 1})")
        for step in steps:
            if not _PATH_STEP.fullmatch(step) or step.isdecimal():
                raise QueryError(
                    f"{text!r}: a path's steps are object keys of letters, digits, _ and -, not only digits"
                    f" (a list matches when one of its elements does) (position {position + 1})"
                )
        return f"{PAYLOAD}.{rest}"
    return text.lower()


def _split_field(token: Token) -> tuple[str | None, str]:
    text = token.text
    if token.kind == "WORD":
        name, colon, value = text.partition(":")
        return (_field_name(name, token.position), value) if colon and name else (None, text)
    if text[0] in '"[{':
        return None, text
    name, _, value = text.partition(":")
    return _field_name(name, token.position), value


def _range(name: str, text: str, position: int) -> Range:
    inner = text[1:-1].strip()
    parts = re.split(r"\s+TO\s+", inner)
    if len(parts) != 2 or not all(part.strip() for part in parts):
        raise QueryError(f"{name}: a range is written [low TO high] (position {position + 1})")
    return Range(name, parts[0].strip(), parts[1].strip(), text[0] == "[", text[-1] == "]", position)


def parse(query: str, limits: Limits = UNLIMITED) -> Node | None:
    """The query's tree, or None for an empty query; :class:`QueryError` if it cannot be read or
    is larger than ``limits`` allow."""
    if len(query) > limits.length:
        raise limits.over("length")
    tokens = tokenize(query)
    return _Parser(tokens, limits).parse() if tokens else None


def leaves(node: Node) -> list[Leaf]:
    """The terms, ranges and existence tests of a tree, in order."""
    if isinstance(node, Not):
        return leaves(node.operand)
    if isinstance(node, Both | Either):
        return [leaf for operand in node.operands for leaf in leaves(operand)]
    return [node]


def is_payload(name: str) -> bool:
    """Whether a field is a path into the JSON payload (``data`` or ``data.<path>``)."""
    return name == PAYLOAD or name.startswith(PAYLOAD + ".")


def path_of(name: str) -> tuple[str, ...]:
    """A payload field's keys into the delivered body (``data.customer.email``: data, customer, email)."""
    return tuple(name.split("."))


def number(text: str) -> float | None:
    """The number a value writes, or None (``inf`` and ``nan`` are not numbers here)."""
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def payload_bounds(node: Range) -> tuple[str, float | str | None, float | str | None]:
    """A payload range's kind and bounds (None: open): ``number`` bounds match numbers, ``text``
    bounds strings, and ``[* TO *]`` (``any``) both; :class:`QueryError` if one bound is a number
    and the other text."""
    low, high = (None if bound == OPEN else bound for bound in (node.low, node.high))
    if low is None and high is None:
        return "any", None, None
    given = [bound for bound in (low, high) if bound is not None]
    numbers = [number(bound) for bound in given]
    if all(value is not None for value in numbers):
        return "number", None if low is None else number(low), None if high is None else number(high)
    if any(value is not None for value in numbers):
        raise QueryError(f"{node.field}: a range's bounds are both numbers or both text (position {node.position + 1})")
    return "text", low, high
