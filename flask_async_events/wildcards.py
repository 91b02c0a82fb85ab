"""``*`` wildcards, matched in time linear in the text: subscription event names (``sales.*``),
filter and search terms (``data.email:*@example.com``) and allow-listed targets.

A pattern is its literal runs between the stars. The first run must start the text and the last
must end it; each run between them is found left to right, at the first place after the one before.
The first place is always as good as any later one (what follows only needs room after it), so no
choice is ever taken back: a pattern written to make a backtracking matcher take exponential time
(``*a*a*a*a*b`` against a long run of ``a``) costs one scan of the text per run here.
"""

from __future__ import annotations

from functools import lru_cache

STAR = "*"


@lru_cache(maxsize=4096)
def _runs(pattern: str, fold_case: bool) -> tuple[str, ...]:
    return tuple((pattern.lower() if fold_case else pattern).split(STAR))


def wildcard_matches(pattern: str, text: str, *, fold_case: bool = True) -> bool:
    """Whether ``text`` matches ``pattern`` as a whole, ``*`` standing for any run of characters
    (dots and line breaks included); with ``fold_case``, letters match in either case."""
    runs = _runs(pattern, fold_case)
    if fold_case:
        text = text.lower()
    if len(runs) == 1:
        return text == runs[0]
    first, *middle, last = runs
    if len(text) < len(first) + len(last) or not text.startswith(first) or not text.endswith(last):
        return False
    position, end = len(first), len(text) - len(last)
    for run in middle:
        found = text.find(run, position, end)
        if found < 0:
            return False
        position = found + len(run)
    return True
