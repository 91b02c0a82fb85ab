"""Subscription filters: a query in the attempt-log search language (:mod:`flask_async_events.query`)
over an event's name, its store and its resolved payload, evaluated here, in Python, once per
event and subscription at fan-out.

A filter may name ``event:``, ``store:`` and ``data.<path>`` (terms, ranges, comparisons and
``_exists_:``); it is checked when the subscription is saved, so a filter that cannot be read is
refused then, with its position, and never fails later in a worker.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from flask_async_events.errors import InvalidSubscription, QueryError
from flask_async_events.query import (
    OPEN,
    Both,
    Either,
    Exists,
    Leaf,
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
from flask_async_events.wildcards import wildcard, wildcard_matches

EVENT_FIELDS = frozenset({"event", "event_name"})
STORE_FIELDS = frozenset({"store", "store_id"})


@lru_cache(maxsize=4096)
def compile_filter(text: str) -> Node | None:
    """A filter's tree (None: it lets everything through); :class:`QueryError` saying what is
    wrong and where. Cached: every fan-out of a subscription asks again."""
    node = parse(text)
    if node is not None:
        for leaf in leaves(node):
            _check_leaf(leaf)
    return node


def _check_leaf(leaf: Leaf) -> None:
    """A filter's term names event:, store: or data.<path>, each with what it can take."""
    where = f"position {leaf.position + 1}"
    if leaf.field is None:
        raise QueryError(f"a filter's terms name a field, event:, store: or data.<path> ({where})")
    if is_payload(leaf.field):
        if isinstance(leaf, Range):
            payload_bounds(leaf)
    elif leaf.field in EVENT_FIELDS:
        if isinstance(leaf, Range):
            raise QueryError(f"{leaf.field} has no ranges ({where})")
    elif leaf.field in STORE_FIELDS:
        for value in _store_values(leaf):
            if value != OPEN and not value.isdecimal():
                raise QueryError(f"{leaf.field} takes a whole number, not {value!r} ({where})")
    else:
        raise QueryError(f"a filter cannot use {leaf.field!r}: it names event:, store: or data.<path> ({where})")


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
    return _Evaluation(document, event_name, store_id).matches(node)


class _Evaluation:
    """One filter asked of one event: the values at each path the filter names, read once."""

    def __init__(self, document: Mapping[str, Any], event_name: str, store_id: int) -> None:
        self.document, self.event_name, self.store_id = document, event_name, store_id
        self.values: dict[str, _Values] = {}

    def matches(self, node: Node) -> bool:
        if isinstance(node, Both):
            return all(self.matches(operand) for operand in node.operands)
        if isinstance(node, Either):
            return any(self.matches(operand) for operand in node.operands)
        if isinstance(node, Not):
            return not self.matches(node.operand)
        return self._leaf(node)

    def _leaf(self, node: Leaf) -> bool:
        assert node.field is not None  # checked by compile_filter
        if node.field in EVENT_FIELDS:
            return isinstance(node, Exists) or (isinstance(node, Term) and _text_matches(self.event_name, node))
        if node.field in STORE_FIELDS:
            return _store_matches(node, self.store_id)
        return self._payload(node.field).answer(node)

    def _payload(self, field: str) -> _Values:
        """The values at a data.<path>, read from the body the first time a term asks."""
        values = self.values.get(field)
        if values is None:
            values = self.values[field] = _Values.of(_at(self.document, path_of(field)))
        return values


@dataclass(frozen=True)
class _Values:
    """The scalars at one path (the value itself, or a list's elements), kept for the questions
    terms ask: exact values are looked up, ranges bisected, and only a wildcard term scans the
    strings, once each, in time linear in their length."""

    present: bool
    texts: frozenset[str]  # in lower case
    scanned: tuple[str, ...]  # the same, in order, for wildcards
    ordered_texts: tuple[str, ...]  # as they are, by code point, for text ranges
    numbers: tuple[float, ...]  # in order
    truths: frozenset[bool]

    @classmethod
    def of(cls, value: Any) -> _Values:
        scalars = [item for item in (value if isinstance(value, list) else [value]) if item is not None]
        texts = [item for item in scalars if isinstance(item, str)]
        lowered = tuple(text.lower() for text in texts)
        return cls(
            present=value is not None,
            texts=frozenset(lowered),
            scanned=lowered,
            ordered_texts=tuple(sorted(texts)),
            numbers=tuple(sorted(_numbers(scalars))),
            truths=frozenset(item for item in scalars if isinstance(item, bool)),
        )

    def answer(self, node: Leaf) -> bool:
        """Whether a term, range or ``field:*`` holds at this path."""
        if isinstance(node, Exists) or (isinstance(node, Term) and node.value == OPEN and not node.phrase):
            return self.present
        return self.match(node) if isinstance(node, Term) else self.within(node)

    def match(self, term: Term) -> bool:
        """Whether a term's value matches one scalar: a string (either case; ``*`` any run of
        characters, except in a phrase), the number it writes, or the boolean it names."""
        lowered = term.value.lower()
        if lowered in ("true", "false") and (lowered == "true") in self.truths:
            return True
        wanted = number(term.value)
        if wanted is not None and _any_within(self.numbers, wanted, wanted, True, True):
            return True
        if term.phrase or OPEN not in term.value:
            return lowered in self.texts
        return any(map(wildcard(lowered, fold_case=False), self.scanned))

    def within(self, node: Range) -> bool:
        """Whether a number (number bounds) or a string (text bounds, by code point) lies in a
        range; ``[* TO *]``: any number or string."""
        kind, low, high = payload_bounds(node)
        if kind == "any":
            return bool(self.numbers or self.ordered_texts)
        ordered: Sequence[Any] = self.numbers if kind == "number" else self.ordered_texts
        return _any_within(ordered, low, high, node.include_low, node.include_high)


def _numbers(scalars: list[Any]) -> list[float]:
    """The numbers among JSON scalars (booleans are not numbers here)."""
    return [float(item) for item in scalars if isinstance(item, int | float) and not isinstance(item, bool)]


def _any_within(ordered: Sequence[Any], low: Any, high: Any, include_low: bool, include_high: bool) -> bool:
    """Whether a sorted sequence holds a value between ``low`` and ``high`` (None: open)."""
    start = 0 if low is None else (bisect_left if include_low else bisect_right)(ordered, low)
    if start >= len(ordered):
        return False
    first = ordered[start]
    return high is None or first < high or (include_high and first == high)


def _at(document: Any, path: tuple[str, ...]) -> Any:
    """The value at a path of object keys, or None if a step is missing or not an object."""
    for key in path:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def _text_matches(text: str, term: Term) -> bool:
    """Letters in either case; ``*`` any run of characters, except in a phrase."""
    if term.phrase:
        return text.lower() == term.value.lower()
    return wildcard_matches(term.value, text)


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
