"""Fixtures of the delivery stages' tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    """A folder of spools of its own (the test's database is in ``tmp_path``)."""
    folder = tmp_path / "spool"
    folder.mkdir()
    return folder
