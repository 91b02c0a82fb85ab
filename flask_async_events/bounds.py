"""Numbers, times and durations read from what a user typed, each checked against the range it
can have before anything computes with it: every query, form field and option that takes one goes
through here, so none can overflow a database column or a date, and each out-of-range value is an
:class:`~flask_async_events.errors.InvalidValue` that names its field.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from flask_async_events.errors import InvalidValue

# Times from the Unix epoch to a day before the calendar ends: every time the package stores is in
# it, and a day's span or any time zone's offset can be added to it without leaving the calendar.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)
INT32 = (-(2**31), 2**31 - 1)  # what an INTEGER column holds on every database
UNITS = {"s": 1, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
LONGEST = timedelta(days=100 * 366)  # no duration the package takes is longer
_DURATION = re.compile(r"\s*(\d{1,12}(?:\.\d{1,6})?)\s*(s|min|h|d|w)\s*")
_MONTH_OR_MINUTE = re.compile(r"\s*\d{1,12}(?:\.\d{1,6})?\s*(m|mo|mon|month|months)\s*")
_WHOLE = re.compile(r"[-+]?\d{1,30}")


def whole_number(field: str, text: str, low: int = INT32[0], high: int = INT32[1]) -> int:
    """``text`` as a whole number from ``low`` to ``high``."""
    if not _WHOLE.fullmatch(text.strip()):
        raise InvalidValue(f"{field} takes a whole number, not {text!r}")
    value = int(text)
    if not low <= value <= high:
        raise InvalidValue(f"{field} must be a whole number from {low} to {high}, got {text}")
    return value


def in_time_range(field: str, moment: datetime) -> datetime:
    """A time as UTC (a naive one is taken as UTC), if it lies from 1970 to 9999."""
    try:
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        utc = aware.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise InvalidValue(f"{field} must be a time from {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}, got {moment}")
    return utc


def parse_time(field: str, text: str) -> datetime:
    """A time written in ISO 8601 (``2026-01-31``, ``2026-01-31T12:00``, with an offset or ``Z``;
    UTC unless it says otherwise), within the range of :func:`in_time_range`."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidValue(
            f"{field} takes a date or time such as 2026-01-31 or 2026-01-31T12:00, not {text!r}"
        ) from None
    return in_time_range(field, moment)


def parse_duration(field: str, text: str, longest: timedelta = LONGEST) -> timedelta:
    """``30d``, ``12h``, ``90min``, ``3600s`` or ``2w``, at most ``longest``. ``m`` is refused: a
    minute to some, a month to others (an operator pruning ``1m`` must not lose a month)."""
    if _MONTH_OR_MINUTE.fullmatch(text.lower()):
        raise InvalidValue(
            f"{field}: {text.strip()!r} could be minutes or months: write min for minutes, or days (30d)"
        )
    match = _DURATION.fullmatch(text.lower())
    if match is None:
        raise InvalidValue(
            f"{field}: {text!r} is not a duration: use a number and a unit, as in 30d, 12h, 90min, 3600s or 2w"
        )
    seconds = float(match.group(1)) * UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds > longest.total_seconds():
        raise InvalidValue(f"{field} must be at most {_spoken(longest)}, got {text.strip()}")
    return timedelta(seconds=seconds)


def _spoken(span: timedelta) -> str:
    """A duration as a person reads it: in days if whole days, else in seconds."""
    seconds = span.total_seconds()
    return f"{seconds / 86400:g} days" if seconds % 86400 == 0 else f"{seconds:g} seconds"


def parse_moment(field: str, text: str, now: datetime) -> datetime:
    """A time (:func:`parse_time`), or a duration (:func:`parse_duration`) meaning that long before
    ``now``, as in ``since=2h``; never earlier than 1970."""
    if _DURATION.fullmatch(text.lower()) or _MONTH_OR_MINUTE.fullmatch(text.lower()):
        return max(now - parse_duration(field, text), EARLIEST)
    try:
        return parse_time(field, text)
    except InvalidValue as exc:
        if "takes a date" not in str(exc):
            raise
        raise InvalidValue(f"{field}: {text!r} is not a time (2026-01-31T12:00) or a duration (2h, 3d)") from None
