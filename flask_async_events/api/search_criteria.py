"""The Magento REST ``searchCriteria[...]`` query form, for ``GET /async_events``.

``searchCriteria[filter_groups][G][filters][F][field|value|condition_type]``: filters in a group
are OR-ed, groups are AND-ed; ``searchCriteria[pageSize]``, ``[currentPage]`` and
``[sortOrders][N][field|direction]`` as in Magento.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from flask_async_events.api.schemas import MAX_ID, MAX_PAGE
from flask_async_events.bounds import whole_number
from flask_async_events.errors import QueryError
from flask_async_events.models import Subscription

KEY = re.compile(r"^searchCriteria((?:\[[^\[\]]*\])+)$")
PART = re.compile(r"\[([^\[\]]*)\]")
COLUMNS: dict[str, InstrumentedAttribute[Any]] = {
    "subscription_id": Subscription.subscription_id,
    "event_name": Subscription.event_name,
    "recipient_url": Subscription.recipient_url,
    "status": Subscription.status,
    "store_id": Subscription.store_id,
    "metadata": Subscription.notifier,
}
INTEGER_FIELDS = {"subscription_id", "store_id"}
BOOLEAN_FIELDS = {"status"}
CONDITIONS = {"eq", "neq", "like", "nlike", "in", "nin", "gt", "gteq", "lt", "lteq", "null", "notnull"}
# What each kind of column can be asked: a number is not LIKE anything, a boolean neither more nor less.
NUMBER_CONDITIONS = CONDITIONS - {"like", "nlike"}
BOOLEAN_CONDITIONS = {"eq", "neq", "in", "nin", "null", "notnull"}


@dataclass
class SearchCriteria:
    groups: list[list[dict[str, str]]] = field(default_factory=list)
    page_size: int | None = None
    current_page: int | None = None
    sort_orders: list[dict[str, str]] = field(default_factory=list)

    def echo(self) -> dict[str, Any]:
        """The criteria as Magento echoes them in ``search_criteria``."""
        result: dict[str, Any] = {"filter_groups": [{"filters": group} for group in self.groups]}
        if self.page_size is not None:
            result["page_size"] = self.page_size
        if self.current_page is not None:
            result["current_page"] = self.current_page
        if self.sort_orders:
            result["sort_orders"] = self.sort_orders
        return result


def parse(args: Mapping[str, str]) -> SearchCriteria:
    """Read every ``searchCriteria[...]`` query parameter; ``ValueError`` names a bad one."""
    reading = _Reading()
    for key, value in args.items():
        match = KEY.match(key)
        if match is not None:
            reading.take(key, PART.findall(match.group(1)), value)
    return reading.criteria()


@dataclass
class _Reading:
    """The ``searchCriteria[...]`` parameters read so far, by their indices."""

    groups: dict[int, dict[int, dict[str, str]]] = field(default_factory=lambda: defaultdict(dict))
    sorts: dict[int, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    page_size: int | None = None
    current_page: int | None = None

    def take(self, key: str, parts: list[str], value: str) -> None:
        """One parameter, its key split into its bracketed parts."""
        if parts[:1] == ["filter_groups"] and len(parts) == 5 and parts[2] == "filters":
            group_index, position, attribute = _index(key, parts[1]), _index(key, parts[3]), parts[4]
            if attribute not in ("field", "value", "condition_type"):
                raise QueryError(f"{key}: use field, value or condition_type")
            self.groups[group_index].setdefault(position, {})[attribute] = value
        elif parts in (["pageSize"], ["page_size"]):
            self.page_size = _positive(key, value)
        elif parts in (["currentPage"], ["current_page"]):
            self.current_page = _positive(key, value)
        elif parts[:1] in (["sortOrders"], ["sort_orders"]) and len(parts) == 3:
            self.sorts[_index(key, parts[1])][parts[2]] = value
        else:
            raise QueryError(f"{key} is not a searchCriteria parameter this API understands")

    def criteria(self) -> SearchCriteria:
        """The criteria, groups and sort orders in the order of their indices."""
        groups = [[_filter(item) for _, item in sorted(filters.items())] for _, filters in sorted(self.groups.items())]
        sort_orders = [self.sorts[index] for index in sorted(self.sorts)]
        return SearchCriteria(groups, self.page_size, self.current_page, sort_orders)


def _filter(item: dict[str, str]) -> dict[str, str]:
    """A filter with its defaults (``eq``, an empty value); it must name its field."""
    if "field" not in item:
        raise QueryError("searchCriteria filter without a field: every filter needs [field] and [value]")
    item.setdefault("condition_type", "eq")
    item.setdefault("value", "")
    return item


def apply(query: Select[Any], criteria: SearchCriteria) -> Select[Any]:
    """Add the filters and sort orders to a subscription query."""
    for group in criteria.groups:
        query = query.where(or_(*(_condition(item) for item in group)))
    for order in criteria.sort_orders:
        column = _column(order.get("field", ""), "sortOrders")
        direction = order.get("direction", "ASC").upper()
        if direction not in ("ASC", "DESC"):
            raise QueryError(f"searchCriteria sortOrders direction must be ASC or DESC, got {direction!r}")
        query = query.order_by(column.desc() if direction == "DESC" else column.asc())
    return query


def _condition(item: dict[str, str]) -> ColumnElement[bool]:
    name, raw, condition = item["field"], item["value"], item["condition_type"].lower()
    column = _column(name, "filter")
    allowed = (
        BOOLEAN_CONDITIONS if name in BOOLEAN_FIELDS else NUMBER_CONDITIONS if name in INTEGER_FIELDS else CONDITIONS
    )
    if condition not in allowed:
        raise QueryError(f"searchCriteria condition_type {condition!r} for {name}: use one of {sorted(allowed)}")
    if condition == "null":
        return column.is_(None)
    if condition == "notnull":
        return column.is_not(None)
    if condition in ("like", "nlike"):
        clause = column.like(raw)
        return ~clause if condition == "nlike" else clause
    if condition in ("in", "nin"):
        values = [_value(name, part.strip()) for part in raw.split(",") if part.strip()]
        return column.not_in(values) if condition == "nin" else column.in_(values)
    value = _value(name, raw)
    comparisons = {
        "eq": column == value,
        "neq": column != value,
        "gt": column > value,
        "gteq": column >= value,
        "lt": column < value,
        "lteq": column <= value,
    }
    return and_(comparisons[condition])


def _column(name: str, where: str) -> InstrumentedAttribute[Any]:
    if name not in COLUMNS:
        raise QueryError(f"searchCriteria {where} field {name!r} is not one of {sorted(COLUMNS)}")
    return COLUMNS[name]


def _value(name: str, raw: str) -> Any:
    if name in INTEGER_FIELDS:
        return whole_number(f"searchCriteria value for {name}", raw, -MAX_ID, MAX_ID)
    if name == "status":
        lowered = raw.lower()
        if lowered not in ("1", "0", "true", "false"):
            raise QueryError(f"searchCriteria value for status must be 1, 0, true or false, got {raw!r}")
        return lowered in ("1", "true")
    if name == "event_name":
        return raw.lower()
    return raw


def _index(key: str, text: str) -> int:
    if not text.isdecimal():
        raise QueryError(f"{key}: [{text}] must be a number")
    return int(text)


def _positive(key: str, text: str) -> int:
    if not text.isdecimal() or not 1 <= int(text) <= MAX_PAGE:
        raise QueryError(f"{key} must be a whole number from 1 to {MAX_PAGE}, got {text!r}")
    return int(text)
