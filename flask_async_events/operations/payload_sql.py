"""SQL over the JSON body an attempt delivered, for each database: the scalars at a path (the value
itself, or the elements of a list there), each with its JSON type, its text and its number, so the
search can say of them what :mod:`flask_async_events.delivery.filters` says in Python.

SQLite walks a path with ``json_each`` (a scalar is one row, a list one row per element; an
object is left out), MySQL and MariaDB with ``JSON_TABLE`` over a list (the element's type read
back by its position) and ``JSON_EXTRACT`` for a scalar. PostgreSQL asks one SQL/JSON path query
per row (``jsonb_path_exists``, lax mode, so the last step's list is searched element by element,
with a type check before every other step so that a list there is not searched through): about
seven times faster than walking the elements in SQL. Path keys are letters, digits, ``_`` and
``-`` (the parser checks), so a path written into the statement cannot break out of its quotes;
values go in as the query's variables, and a pattern as an escaped regular expression.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.sql.elements import ColumnElement

from flask_async_events.models import DeliveryAttempt

Condition = ColumnElement[bool]

TRIGRAM = 3  # the shortest run of a pattern the trigram index can look up
VERBATIM = re.compile(r"[ !#-\[\]-~]+")  # printable ASCII but " and \, which JSON writes as they are


@dataclass(frozen=True)
class Scalar:
    """One JSON scalar as SQL sees it: which kind it is, and its value as text and as a number."""

    is_string: Condition
    is_number: Condition
    is_true: Condition
    is_false: Condition
    text: Any  # the string's characters (for a string)
    number: Any  # the number (for a number; NULL otherwise, never a failed cast)


Test = Callable[[Scalar], Condition]


def escape_like(value: str) -> str:
    """A value for LIKE: ``%``, ``_`` and the escape character itself taken literally."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def json_path(keys: tuple[str, ...]) -> str:
    """``$."data"."total"``: a JSON path of object keys."""
    return "$" + "".join(f'."{key}"' for key in keys)


class Payload:
    """Conditions on the delivered body at a path, in one database's SQL."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect

    def term(self, keys: tuple[str, ...], value: str, *, phrase: bool, wanted: float | None) -> Condition:
        """A term's value at ``keys``: a string it matches (either case; ``*`` any run of
        characters, except in a phrase), the number ``wanted``, or the boolean it names."""
        if self.dialect == "postgresql":
            return json_path_term(keys, value, phrase=phrase, wanted=wanted)
        lowered = value.lower()
        pattern = escape_like(lowered) if phrase else escape_like(lowered).replace("*", "%")

        def test(scalar: Scalar) -> Condition:
            options = [sa.and_(scalar.is_string, sa.func.lower(scalar.text).like(pattern, escape="\\"))]
            if wanted is not None:
                options.append(sa.and_(scalar.is_number, scalar.number == wanted))
            if lowered == "true":
                options.append(scalar.is_true)
            if lowered == "false":
                options.append(scalar.is_false)
            return sa.or_(*options)

        return self._any_scalar(keys, test)

    def range(
        self, keys: tuple[str, ...], kind: str, low: Any, high: Any, *, include_low: bool, include_high: bool
    ) -> Condition:
        """Numbers (``kind`` number) or strings (text, by code point) at ``keys`` within the
        bounds (None: open); ``any``: any number or string."""
        if self.dialect == "postgresql":
            return json_path_range(keys, kind, low, high, include_low, include_high)

        def test(scalar: Scalar) -> Condition:
            if kind == "any":
                return sa.or_(scalar.is_string, scalar.is_number)
            if kind == "number":
                value, where, low_bound, high_bound = scalar.number, scalar.is_number, low, high
            else:
                value, where = self._binary(scalar.text), scalar.is_string
                low_bound, high_bound = (None if b is None else self._binary(sa.literal(b)) for b in (low, high))
            conditions = [where]
            if low_bound is not None:
                conditions.append(value >= low_bound if include_low else value > low_bound)
            if high_bound is not None:
                conditions.append(value <= high_bound if include_high else value < high_bound)
            return sa.and_(*conditions)

        return self._any_scalar(keys, test)

    def _binary(self, text: Any) -> Any:
        """Text compared by code point, whatever the column's collation (SQLite's is already)."""
        return text if self.dialect == "sqlite" else sa.cast(text, mysql.BINARY())

    def _any_scalar(self, keys: tuple[str, ...], test: Test) -> Condition:
        """Some scalar at ``keys`` (the value, or an element of a list there) passes ``test``."""
        if self.dialect == "sqlite":
            return self._sqlite(keys, test)
        return self._mysql(keys, test)

    def exists(self, keys: tuple[str, ...]) -> Condition:
        """There is a value at ``keys``, and it is not null."""
        body = DeliveryAttempt.serialized_data
        path = json_path(keys)
        if self.dialect == "sqlite":
            kind: Any = sa.func.json_type(body, path)
            return sa.and_(kind.is_not(None), kind != "null")
        if self.dialect == "postgresql":
            return json_path_exists(keys, '@{last}.type() != "null"', {})
        kind = sa.func.json_type(sa.func.json_extract(body, path))
        return sa.and_(kind.is_not(None), kind != "NULL")

    def _sqlite(self, keys: tuple[str, ...], test: Test) -> Condition:
        body = DeliveryAttempt.serialized_data
        path = json_path(keys)
        each = sa.func.json_each(body, path).table_valued("type", "atom").alias("element")
        kind, atom = each.c.type, each.c.atom
        scalar = Scalar(
            is_string=kind == "text",
            is_number=kind.in_(("integer", "real")),
            is_true=kind == "true",
            is_false=kind == "false",
            text=atom,
            number=sa.case((kind.in_(("integer", "real")), atom)),
        )
        found = sa.exists(sa.select(sa.literal(1)).select_from(each).where(test(scalar)))
        return sa.and_(sa.func.json_type(body, path) != "object", found)

    def _mysql(self, keys: tuple[str, ...], test: Test) -> Condition:
        body = DeliveryAttempt.serialized_data
        path = json_path(keys)
        value = sa.func.json_extract(body, path)
        itself = test(_mysql_scalar(sa.func.json_type(value), sa.func.json_unquote(value)))
        table = DeliveryAttempt.__tablename__
        elements = sa.text(
            f"JSON_TABLE({table}.serialized_data, '{path}[*]' "
            "COLUMNS (position FOR ORDINALITY, item LONGTEXT PATH '$')) AS element"
        )
        element_kind = sa.func.json_type(
            sa.func.json_extract(body, sa.func.concat(path, "[", sa.literal_column("element.position") - 1, "]"))
        )
        element = _mysql_scalar(element_kind, sa.literal_column("element.item"))
        in_list = sa.exists(sa.select(sa.literal(1)).select_from(elements).where(test(element)))
        # JSON_TYPE of a missing path is NULL, which NOT would keep NULL: say false instead.
        listed = sa.func.coalesce(sa.func.json_type(value) == "ARRAY", sa.false())
        return sa.or_(sa.and_(sa.not_(listed), value.is_not(None), itself), sa.and_(listed, in_list))


def _mysql_scalar(kind: Any, text: Any) -> Scalar:
    numeric = kind.in_(("INTEGER", "DOUBLE", "DECIMAL", "UNSIGNED INTEGER"))
    return Scalar(
        is_string=kind == "STRING",
        is_number=numeric,
        is_true=sa.and_(kind == "BOOLEAN", text == "true"),
        is_false=sa.and_(kind == "BOOLEAN", text == "false"),
        text=text,
        number=sa.case((numeric, sa.cast(text, sa.Numeric(65, 30)))),
    )


def json_path_exists(keys: tuple[str, ...], test: str, variables: dict[str, Any]) -> Condition:
    """PostgreSQL: whether the body at ``keys`` passes ``test``, a SQL/JSON filter in which
    ``@{last}`` stands for the last step's value (searched element by element if it is a list)."""
    *steps, last = keys
    path = "lax $"
    for step in steps:
        path += f' ? (@."{step}".type() == "object")."{step}"'
    path += " ? (" + test.replace("{last}", f'."{last}"') + ")"
    body = sa.cast(DeliveryAttempt.serialized_data, postgresql.JSONB)
    found = sa.func.jsonb_path_exists(
        body, sa.cast(path, postgresql.JSONPATH), sa.literal(variables, postgresql.JSONB), True
    )
    return sa.func.coalesce(found, sa.false())


def json_path_term(keys: tuple[str, ...], value: str, *, phrase: bool, wanted: float | None) -> Condition:
    """PostgreSQL: a term at a payload path, matched as the filters match it. An exact value is
    first looked up in the index of the bodies (:func:`indexed_candidates`), a pattern in the
    trigram index of their text (:func:`pattern_candidates`)."""
    found = _json_path_term(keys, value, phrase=phrase, wanted=wanted)
    candidates = indexed_candidates(keys, value, phrase=phrase, wanted=wanted)
    if candidates is None and not phrase:
        candidates = pattern_candidates(value)
    return found if candidates is None else sa.and_(candidates, found)


def pattern_candidates(value: str) -> Condition | None:
    """PostgreSQL: bodies whose lower-cased text holds a pattern's literal runs in their order,
    by ``LIKE``, which the trigram index of that text answers where it was built
    (:mod:`~flask_async_events.operations.pattern_index`). Every string the
    pattern matches is among them, written verbatim in the body: so only for runs of printable
    ASCII without ``"`` or ``\\`` (what JSON may escape), one of three characters at least (a
    trigram to look up). None otherwise: the path query alone then reads every body."""
    runs = [run for run in value.lower().split("*") if run]
    if not runs or max(map(len, runs)) < TRIGRAM or not all(VERBATIM.fullmatch(run) for run in runs):
        return None
    pattern = "%" + "%".join(escape_like(run) for run in runs) + "%"
    return sa.func.lower(DeliveryAttempt.serialized_data).like(pattern, escape="\\")


def indexed_candidates(keys: tuple[str, ...], value: str, *, phrase: bool, wanted: float | None) -> Condition | None:
    """PostgreSQL: bodies that, in lower case, hold ``value`` at ``keys`` (itself, or in a list
    there) as a string, the number ``wanted`` or the boolean it names, by containment, which the
    GIN index of the lower-cased bodies answers. Every body the term matches is among them: the
    database's ``lower`` folds case as its regular expressions do. None for a pattern, and for a
    value beyond ASCII (whose lower case Python and the database may write differently)."""
    if ("*" in value and not phrase) or not value.isascii():
        return None
    lowered = value.lower()
    values: list[Any] = [lowered]
    if wanted is not None:
        values.append(int(wanted) if wanted.is_integer() and abs(wanted) < 2**53 else wanted)
    if lowered in ("true", "false"):
        values.append(lowered == "true")
    body = sa.cast(sa.func.lower(DeliveryAttempt.serialized_data), postgresql.JSONB)
    documents = []
    for scalar in values:
        for held in (scalar, [scalar]):
            document: Any = held
            for key in reversed(keys):
                document = {key.lower(): document}
            documents.append(body.op("@>")(sa.literal(document, postgresql.JSONB)))
    return sa.or_(*documents)


def _json_path_term(keys: tuple[str, ...], value: str, *, phrase: bool, wanted: float | None) -> Condition:
    pieces = [re.escape(value)] if phrase else [re.escape(part) for part in value.split("*")]
    pattern = "^" + ".*".join(pieces) + "$"
    literal = '"' + pattern.replace("\\", "\\\\").replace('"', '\\"') + '"'
    options = [f'@ like_regex {literal} flag "is"']
    variables: dict[str, Any] = {}
    if wanted is not None:
        options.append("@ == $number")
        variables["number"] = wanted
    if value.lower() in ("true", "false"):
        options.append(f"@ == {value.lower()}")
    return json_path_exists(keys, "exists(@{last} ? (" + " || ".join(options) + "))", variables)


def json_path_range(
    keys: tuple[str, ...], kind: str, low: Any, high: Any, include_low: bool, include_high: bool
) -> Condition:
    """PostgreSQL: numbers (or strings, by code point) in a range at a payload path."""
    if kind == "any":
        return json_path_exists(keys, 'exists(@{last} ? (@.type() == "string" || @.type() == "number"))', {})
    conditions = ['@.type() == "number"' if kind == "number" else '@.type() == "string"']
    variables: dict[str, Any] = {}
    if low is not None:
        conditions.append(f"@ {'>=' if include_low else '>'} $low")
        variables["low"] = low
    if high is not None:
        conditions.append(f"@ {'<=' if include_high else '<'} $high")
        variables["high"] = high
    return json_path_exists(keys, "exists(@{last} ? (" + " && ".join(conditions) + "))", variables)
