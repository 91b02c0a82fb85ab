"""The complexity ceilings' check (``make complexity``): it names each function over its ceiling."""

from __future__ import annotations

from pathlib import Path

from tests.ceilings import breaches


def _write(root: Path, relative: str, source: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)


def _branches(count: int) -> str:
    return (
        "def decide(x):\n"
        + "".join(f"    if x == {n}:\n        return {n}\n" for n in range(count))
        + "    return -1\n"
    )


def test_a_function_over_its_folders_ceiling_is_named(tmp_path: Path) -> None:
    _write(tmp_path, "flask_async_events/delivery/stage.py", _branches(10))  # complexity 11 > 10
    _write(tmp_path, "flask_async_events/operations/report.py", _branches(10))  # 11 <= 15
    _write(tmp_path, "flask_async_events/migrations/versions/0001.py", _branches(30))  # exempt
    _write(tmp_path, "bench/long.py", "def long():\n" + "    x = 1\n" * 60 + "    return x\n")
    found = sorted(str(breach) for breach in breaches(tmp_path))
    assert found == [
        "bench/long.py:1 long: 62 lines > 60",
        "flask_async_events/delivery/stage.py:1 decide: complexity 11 > 10",
    ]


def test_methods_and_nested_functions_are_measured(tmp_path: Path) -> None:
    nested = (
        "class Stage:\n    def run(self, x):\n        " + _branches(16).replace("\n", "\n        ") + "return decide\n"
    )
    _write(tmp_path, "demo_app/views.py", nested)
    assert [breach.name for breach in breaches(tmp_path)] == ["decide"]
