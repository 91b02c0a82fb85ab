"""Numbers, times and durations read from what a user typed: each within its range, or an error
naming the field; never an overflow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flask_async_events.bounds import EARLIEST, in_time_range, parse_duration, parse_moment, parse_time, whole_number
from flask_async_events.errors import InvalidValue

NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)


def test_whole_numbers_stay_in_their_range() -> None:
    assert whole_number("status", "500") == 500
    assert whole_number("status", "-3") == -3
    with pytest.raises(InvalidValue, match=r"status must be a whole number from -2147483648 to 2147483647"):
        whole_number("status", "99999999999999999999")
    with pytest.raises(InvalidValue, match=r"store takes a whole number, not '1e3'"):
        whole_number("store", "1e3")
    with pytest.raises(InvalidValue, match="subscription"):
        whole_number("subscription", "9" * 5000)


@pytest.mark.parametrize(
    "text",
    ["9999-12-31", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+14:00", "1969-12-31T23:59:59Z", "0001-01-01"],
)
def test_times_outside_1970_to_9999_name_their_field(text: str) -> None:
    with pytest.raises(InvalidValue, match=r"^since must be a time from 1970-01-01 to 9999-12-30"):
        parse_time("since", text)


def test_times_are_read_as_utc_unless_they_say_otherwise() -> None:
    assert parse_time("since", "2026-01-31") == datetime(2026, 1, 31, tzinfo=UTC)
    assert parse_time("since", "2026-01-31T12:00+02:00") == datetime(2026, 1, 31, 10, tzinfo=UTC)
    assert parse_time("since", "2026-01-31T12:00Z") == datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert in_time_range("until", datetime(2026, 1, 31, 12)) == datetime(2026, 1, 31, 12, tzinfo=UTC)
    with pytest.raises(InvalidValue, match="since takes a date or time"):
        parse_time("since", "yesterday")


def test_durations_have_a_longest() -> None:
    assert parse_duration("grace", "24h") == timedelta(hours=24)
    assert parse_duration("grace", "2w") == timedelta(days=14)
    with pytest.raises(InvalidValue, match=r"^grace must be at most 7 days, got 999999999999d"):
        parse_duration("grace", "999999999999d", timedelta(days=7))
    with pytest.raises(InvalidValue, match=r"^--older-than must be at most 36600 days"):
        parse_duration("--older-than", "99999999w")
    with pytest.raises(InvalidValue, match=r"grace: 'a month' is not a duration"):
        parse_duration("grace", "a month")
    assert parse_duration("--older-than", "90min") == timedelta(minutes=90)


@pytest.mark.parametrize("text", ["1m", "1 m", "2mo", "3 months"])
def test_m_is_refused_a_minute_to_some_a_month_to_others(text: str) -> None:
    with pytest.raises(InvalidValue, match=r"could be minutes or months: write min for minutes, or days \(30d\)"):
        parse_duration("--older-than", text)
    with pytest.raises(InvalidValue, match="could be minutes or months"):
        parse_moment("since", text, NOW)


def test_a_moment_is_a_time_or_that_long_ago_never_before_1970() -> None:
    assert parse_moment("since", "2h", NOW) == NOW - timedelta(hours=2)
    assert parse_moment("since", "2026-01-01", NOW) == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_moment("since", "5000w", NOW) == EARLIEST
    with pytest.raises(InvalidValue, match=r"since: 'soon' is not a time \(2026-01-31T12:00\) or a duration"):
        parse_moment("since", "soon", NOW)
