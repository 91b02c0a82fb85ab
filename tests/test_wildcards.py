"""``*`` wildcards: the same answers as a regular expression gives, in time linear in the text."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_async_events.wildcards import wildcard_matches

CASES = [
    ("sales.*", "sales.order.created", True),
    ("sales.*", "sales.", True),
    ("sales.*", "sale", False),
    ("*.created", "sales.order.created", True),
    ("*", "", True),
    ("", "", True),
    ("", "x", False),
    ("a*b*c", "abc", True),
    ("a*b*c", "aXbYc", True),
    ("a*b*c", "acb", False),
    ("ab*ba", "aba", False),  # the runs may not overlap
    ("*@example.com", "ROnI@Example.COM", True),
    ("**", "anything\nat all", True),
    ("x*", "yx", False),
]


@pytest.mark.parametrize(("pattern", "text", "expected"), CASES)
def test_a_pattern_matches_the_whole_text(pattern: str, text: str, expected: bool) -> None:
    assert wildcard_matches(pattern, text) is expected


def test_letters_match_in_either_case_unless_told_otherwise() -> None:
    assert wildcard_matches("arn:aws:sqs:*:customer-*", "arn:aws:sqs:eu-west-1:Customer-1") is True
    assert wildcard_matches("arn:aws:sqs:*:customer-*", "arn:aws:sqs:eu-west-1:Customer-1", fold_case=False) is False


def _by_regex(pattern: str, text: str) -> bool:
    expression = ".*".join(re.escape(run) for run in pattern.split("*"))
    return re.fullmatch(expression, text, re.IGNORECASE | re.DOTALL) is not None


@given(st.text("ab*.", max_size=8), st.text("abAB.", max_size=12))
@settings(max_examples=500, deadline=None, database=None)
def test_it_agrees_with_a_regular_expression(pattern: str, text: str) -> None:
    assert wildcard_matches(pattern, text) is _by_regex(pattern, text)


def test_a_pattern_built_to_backtrack_is_answered_in_one_pass() -> None:
    """``*a*a...*b`` against a long run of ``a``: a backtracking matcher tries every way to place
    the stars (the regular expression above would not finish); here each run is looked for once."""
    pattern = "*a" * 20 + "*b"
    assert wildcard_matches(pattern, "a" * 10_000) is False
    assert wildcard_matches(pattern, "a" * 10_000 + "b") is True
