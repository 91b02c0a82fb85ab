"""``*`` wildcards, matched in time linear in the text: subscription event names (``sales.*``),
filter and search terms (``data.email:*@example.com``) and allow-listed targets.

A pattern is its literal runs between the stars. The first run must start the text and the last
must end it; each run between them is found left to right, at the first place after the one before.
The first place is always as good as any later one (what follows only needs room after it), so no
choice is ever taken back: a pattern written to make a backtracking matcher take exponential time
(``*a*a*a*a*b`` against a long run of ``a``) costs one scan of the text per run here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

STAR = "*"

Matcher = Callable[[str], bool]


@lru_cache(maxsize=4096)
def wildcard(pattern: str, *, fold_case: bool = True) -> Matcher:
    """A test of whole texts against ``pattern``, ``*`` standing for any run of characters (dots
    and line breaks included); with ``fold_case``, letters match in either case. The usual shapes
    (an exact value, ``prefix*``, ``*suffix``, ``*part*``) are one string operation each."""
    runs = (pattern.lower() if fold_case else pattern).split(STAR)
    matcher: Matcher
    if len(runs) == 1:
        matcher = runs[0].__eq__
    elif len(runs) == 2:
        matcher = _ends(runs[0], runs[1])
    elif len(runs) == 3 and not runs[0] and not runs[2]:
        matcher = _contains(runs[1])
    else:
        matcher = _runs(runs[0], tuple(runs[1:-1]), runs[-1])
    return (lambda text: matcher(text.lower())) if fold_case else matcher


def wildcard_matches(pattern: str, text: str, *, fold_case: bool = True) -> bool:
    """Whether ``text`` matches ``pattern`` as a whole (see :func:`wildcard`)."""
    return wildcard(pattern, fold_case=fold_case)(text)


def _contains(part: str) -> Matcher:
    """``*part*``."""
    return lambda text: part in text


def _ends(first: str, last: str) -> Matcher:
    """``first*last``: the text starts and ends so, without the two overlapping."""
    least = len(first) + len(last)
    return lambda text: len(text) >= least and text.startswith(first) and text.endswith(last)


def _runs(first: str, middle: tuple[str, ...], last: str) -> Matcher:
    """``first*run*...*run*last``: each run found left to right, at its first place."""
    ends = _ends(first, last)

    def matches(text: str) -> bool:
        if not ends(text):
            return False
        position, end = len(first), len(text) - len(last)
        for run in middle:
            found = text.find(run, position, end)
            if found < 0:
                return False
            position = found + len(run)
        return True

    return matches
