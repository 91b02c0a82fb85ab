"""Subscription filters: a query in the attempt-log search language (:mod:`flask_async_events.query`)
over an event's name, its store and its resolved payload, evaluated here, in Python, once per
event and subscription at fan-out.

A filter may name ``event:``, ``store:`` and ``data.<path>`` (terms, ranges, comparisons and
``_exists_:``); it is checked when the subscription is saved, so a filter that cannot be read is
refused then, with its position, and never fails later in a worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from flask_async_events.errors import InvalidSubscription, QueryError
from flask_async_events.query import (
    OPEN,
    Both,
    Either,
    Exists,
    Limits,
    Node,
    Not,
    Range,
    Term,
    is_payload,
    leaves,
    number,
    parse,
    path_of,
    payload_bounds,
)
from flask_async_events.wildcards import wildcard_matches

EVENT_FIELDS = frozenset({"event", "event_name"})
STORE_FIELDS = frozenset({"store", "store_id"})


@lru_cache(maxsize=4096)
def compile_filter(text: str) -> Node | None:
    """A filter's tree (None: it lets everything through); :class:`QueryError` saying what is
    wrong and where. Cached: every fan-out of a subscription asks again."""
    node = parse(text)
    if node is None:
        return None
    for leaf in leaves(node):
        where = f"position {leaf.position + 1}"
        if leaf.field is None:
            raise QueryError(f"a filter's terms name a field, event:, store: or data.<path> ({where})")
        if is_payload(leaf.field):
            if isinstance(leaf, Range):
                payload_bounds(leaf)
            continue
        if leaf.field in EVENT_FIELDS:
            if isinstance(leaf, Range):
                raise QueryError(f"{leaf.field} has no ranges ({where})")
            continue
        if leaf.field in STORE_FIELDS:
            for value in _store_values(leaf):
                if value != OPEN and not value.isdecimal():
                    raise QueryError(f"{leaf.field} takes a whole number, not {value!r} ({where})")
            continue
        raise QueryError(f"a filter cannot use {leaf.field!r}: it names event:, store: or data.<path> ({where})")
    return node


def _store_values(leaf: Term | Range | Exists) -> list[str]:
    if isinstance(leaf, Range):
        return [leaf.low, leaf.high]
    return [leaf.value] if isinstance(leaf, Term) else []


def check_filter(text: object, limits: Limits) -> str | None:
    """A filter as stored (None for none); :class:`InvalidSubscription` naming ``filter`` otherwise,
    also for one larger than ``limits`` (checked here, when it is saved: a filter saved once is
    evaluated at every fan-out)."""
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        raise InvalidSubscription(f"filter must be a query string, got {text!r}")
    try:
        parse(text, limits)
        compile_filter(text)
    except QueryError as exc:
        raise InvalidSubscription(f"filter: {exc}") from None
    return text


def admits(text: str | None, document: Mapping[str, Any] | None, event_name: str, store_id: int) -> bool | None:
    """Whether an event (its parsed body, or None if its payload did not resolve) passes a stored
    filter; None when that depends on the payload it does not have (the delivery is made, and the
    filter asked again once the payload resolves)."""
    node = compile_filter(text) if text else None
    if node is None:
        return True
    if document is None:
        if any(leaf.field is not None and is_payload(leaf.field) for leaf in leaves(node)):
            return None
        document = {}
    return matches(node, document, event_name, store_id)


def matches(node: Node, document: Mapping[str, Any], event_name: str, store_id: int) -> bool:
    """Whether an event (its name, store and parsed body) matches a filter's tree."""
    if isinstance(node, Both):
        return all(matches(operand, document, event_name, store_id) for operand in node.operands)
    if isinstance(node, Either):
        return any(matches(operand, document, event_name, store_id) for operand in node.operands)
    if isinstance(node, Not):
        return not matches(node.operand, document, event_name, store_id)
    assert node.field is not None  # checked by compile_filter
    if node.field in EVENT_FIELDS:
        return isinstance(node, Exists) or (isinstance(node, Term) and _text_matches(event_name, node))
    if node.field in STORE_FIELDS:
        return _store_matches(node, store_id)
    value = _at(document, path_of(node.field))
    if isinstance(node, Exists) or (isinstance(node, Term) and node.value == OPEN and not node.phrase):
        return value is not None
    if isinstance(node, Term):
        return any(_scalar_matches(scalar, node) for scalar in _scalars(value))
    return any(_in_range(scalar, node) for scalar in _scalars(value))


def _at(document: Any, path: tuple[str, ...]) -> Any:
    """The value at a path of object keys, or None if a step is missing or not an object."""
    for key in path:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def _scalars(value: Any) -> list[Any]:
    """What a term is tried against: a scalar itself, or a list's scalar elements."""
    candidates = value if isinstance(value, list) else [value]
    return [item for item in candidates if isinstance(item, str | int | float) and item is not None]


def _scalar_matches(scalar: Any, term: Term) -> bool:
    if isinstance(scalar, bool):
        return term.value.lower() == ("true" if scalar else "false")
    if isinstance(scalar, int | float):
        wanted = number(term.value)
        return wanted is not None and float(scalar) == wanted
    return _text_matches(scalar, term)


def _text_matches(text: str, term: Term) -> bool:
    """Letters in either case; ``*`` any run of characters, except in a phrase."""
    if term.phrase:
        return text.lower() == term.value.lower()
    return wildcard_matches(term.value, text)


def _in_range(scalar: Any, node: Range) -> bool:
    kind, low, high = payload_bounds(node)
    if isinstance(scalar, bool):
        return False
    if isinstance(scalar, int | float):
        if kind == "text":
            return False
        value: float | str = float(scalar)
    elif kind == "number":
        return False
    else:
        value = scalar
    return _within(value, low, high, node.include_low, node.include_high)


def _within(value: Any, low: Any, high: Any, include_low: bool, include_high: bool) -> bool:
    if low is not None and (value < low or (value == low and not include_low)):
        return False
    return not (high is not None and (value > high or (value == high and not include_high)))


def _store_matches(node: Term | Range | Exists, store_id: int) -> bool:
    if isinstance(node, Exists):
        return True
    if isinstance(node, Term):
        return node.value == OPEN or int(node.value) == store_id
    low = None if node.low == OPEN else int(node.low)
    high = None if node.high == OPEN else int(node.high)
    return _within(store_id, low, high, node.include_low, node.include_high)
