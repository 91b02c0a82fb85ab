"""The complexity ceilings `make test` holds the code to, as radon counts them (it counts boolean
operators too): at most 10 per function in the delivery path (``delivery/``, ``worker/``), 15
elsewhere, and no function longer than 60 lines (migrations aside).

Run as ``python -m tests.ceilings``: it lists every function over a ceiling and exits non-zero.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from radon.complexity import cc_visit
from radon.visitors import Function

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("flask_async_events", "demo_app", "bench")
EXEMPT = ("flask_async_events/migrations/",)
DELIVERY_PATH = ("flask_async_events/delivery/", "flask_async_events/worker/")
DELIVERY_CEILING = 10
CEILING = 15
MAX_LINES = 60


@dataclass(frozen=True)
class Breach:
    """One function over a ceiling."""

    where: str
    name: str
    what: str

    def __str__(self) -> str:
        return f"{self.where} {self.name}: {self.what}"


def breaches(root: Path = ROOT) -> Iterator[Breach]:
    """Every function of the checked folders that is over its ceiling."""
    for folder in CHECKED:
        for path in sorted((root / folder).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if not relative.startswith(EXEMPT):
                yield from _file_breaches(relative, path.read_text(encoding="utf-8"))


def _file_breaches(relative: str, source: str) -> Iterator[Breach]:
    ceiling = DELIVERY_CEILING if relative.startswith(DELIVERY_PATH) else CEILING
    for function in _functions(cc_visit(source)):
        where = f"{relative}:{function.lineno}"
        if function.complexity > ceiling:
            yield Breach(where, function.fullname, f"complexity {function.complexity} > {ceiling}")
        length = function.endline - function.lineno + 1
        if length > MAX_LINES:
            yield Breach(where, function.fullname, f"{length} lines > {MAX_LINES}")


def _functions(blocks: list[object]) -> Iterator[Function]:
    """Functions, methods and the functions nested in them (radon lists methods among the
    functions, beside their classes)."""
    for block in blocks:
        if isinstance(block, Function):
            yield block
            yield from _functions(list(block.closures))


def main() -> int:
    found = list(breaches())
    for breach in found:
        print(breach)
    if found:
        print(f"{len(found)} function(s) over the ceilings (tests/ceilings.py says which and why)")
        return 1
    print(f"Complexity ceilings hold: {DELIVERY_CEILING} in the delivery path, {CEILING} elsewhere, {MAX_LINES} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
