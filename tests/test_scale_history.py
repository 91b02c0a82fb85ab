"""The data-scale benchmark keeps the history it writes in PostgreSQL, and the next run copies it:
``--fresh``, or a kept database its run stopped before finishing, writes it again, and a fill that
fails leaves no database behind (they are gigabytes at full size). Runs in the PostgreSQL pass."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench import scale
from bench.common import admin_connection, database_uri, drop_database, kept_database
from tests.conftest import DB_BACKEND, IN_CI, SERVER_URIS, RedisServer, _server_available

pytestmark = [
    pytest.mark.database,
    pytest.mark.skipif(DB_BACKEND != "postgresql", reason="the kept history is PostgreSQL's; it runs in that pass"),
]

ATTEMPTS = 202  # no real run uses this size: its kept database is this test's own


@pytest.fixture
def made(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The databases a test's runs made, dropped afterwards with the kept one."""
    if not _server_available(SERVER_URIS["postgresql"]):
        if IN_CI:
            pytest.fail("PostgreSQL is not reachable and CI=true requires this test")
        pytest.skip("PostgreSQL is not reachable")
    monkeypatch.setenv("BENCH_REDIS_URL", redis_server.url)
    monkeypatch.setenv("BENCH_DATABASE_URI", "")  # each run sets it to its own database
    kept = database_uri(scale.history_name(ATTEMPTS))
    drop_database(kept)
    uris: list[str] = []
    yield uris
    for uri in [*uris, kept]:
        drop_database(uri)


def run(made: list[str], folder: Path, *, fresh: bool = False) -> str:
    """One run's history; returns how it was made."""
    args = argparse.Namespace(attempts=ATTEMPTS, database="postgresql", fresh=fresh)
    uri, how = scale.history(args, folder)
    made.append(uri)
    engine = sa.create_engine(uri)
    with engine.connect() as connection:
        attempts = connection.scalar(sa.text("SELECT count(*) FROM async_event_subscriber_log"))
    engine.dispose()
    assert attempts == ATTEMPTS
    return how


def test_the_next_run_copies_the_history_the_first_kept(made: list[str], tmp_path: Path) -> None:
    first = run(made, tmp_path)
    assert first.startswith("written in ")
    second = run(made, tmp_path)
    assert second.startswith(f"{first}; this run copied it in ")
    assert made[0] != made[1]


def test_fresh_or_a_keep_left_unfinished_writes_it_again(made: list[str], tmp_path: Path) -> None:
    run(made, tmp_path)
    name = scale.history_name(ATTEMPTS)
    with admin_connection() as connection:  # what a run stopped between the copy and its comment leaves
        connection.execute(sa.text(f'COMMENT ON DATABASE "{name}" IS NULL'))
    assert kept_database(name) is None
    assert run(made, tmp_path).startswith("written in ")
    assert kept_database(name) is not None
    assert run(made, tmp_path, fresh=True).startswith("written in ")
    assert "copied" in run(made, tmp_path)


def test_a_fill_that_fails_leaves_no_database(made: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(uri: str, attempts: int, token: str) -> float:
        raise RuntimeError("the disk is full")

    def databases() -> set[str]:
        with admin_connection() as connection:
            return set(connection.scalars(sa.text("SELECT datname FROM pg_database")))

    before = databases()
    monkeypatch.setattr(scale, "fill", broken)
    with pytest.raises(RuntimeError, match="the disk is full"):
        run(made, tmp_path)
    assert databases() == before
    assert kept_database(scale.history_name(ATTEMPTS)) is None
