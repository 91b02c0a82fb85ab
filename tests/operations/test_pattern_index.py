"""The pattern index: built and dropped by the CLI on PostgreSQL (delivery going on), refused with
a reason elsewhere or where pg_trgm cannot be made, and used by payload patterns once it is there."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_async_events.errors import IndexUnavailable
from flask_async_events.operations.pattern_index import PATTERN_INDEX, create_pattern_index, pattern_index_state
from tests.conftest import DB_BACKEND, SERVER_URIS
from tests.test_cli import cli, cli_error


@pytest.fixture
def engine(app: Flask) -> Iterator[sa.Engine]:
    """The test database's engine; the pattern index is gone again afterwards (it is not in the
    models, and the database is shared by the tests)."""
    engine = sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    yield engine
    if DB_BACKEND == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text(f"DROP INDEX IF EXISTS {PATTERN_INDEX}"))
    engine.dispose()


@pytest.mark.skipif(DB_BACKEND != "postgresql", reason="the pattern index is PostgreSQL's")
def test_the_cli_builds_and_drops_the_pattern_index(app: Flask, engine: sa.Engine) -> None:
    assert pattern_index_state(engine) == "absent"
    assert "Pattern index built in" in cli(app, "db", "pattern-index")
    assert pattern_index_state(engine) == "valid"
    assert "Pattern index built in" in cli(app, "db", "pattern-index")  # again: nothing to do
    assert "Pattern index dropped" in cli(app, "db", "pattern-index", "--drop")
    assert pattern_index_state(engine) == "absent"
    assert "There was no pattern index" in cli(app, "db", "pattern-index", "--drop")


@pytest.mark.skipif(DB_BACKEND != "postgresql", reason="the pattern index is PostgreSQL's")
def test_an_interrupted_build_is_replaced(app: Flask, engine: sa.Engine) -> None:
    """An invalid index (what a cancelled CONCURRENTLY build leaves) is dropped and built again."""
    create_pattern_index(engine)
    with engine.begin() as connection:
        connection.execute(
            sa.text(f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{PATTERN_INDEX}'::regclass")
        )
    assert pattern_index_state(engine) == "invalid"
    cli(app, "db", "pattern-index")
    assert pattern_index_state(engine) == "valid"


@pytest.mark.skipif(DB_BACKEND == "postgresql", reason="the other databases have no pattern index")
def test_the_pattern_index_is_refused_where_it_cannot_be(app: Flask) -> None:
    for command in (["db", "pattern-index"], ["db", "pattern-index", "--drop"]):
        output = cli_error(app, *command)
        assert f"the pattern index is PostgreSQL's (pg_trgm); on {DB_BACKEND}" in output
        assert "Traceback" not in output


@pytest.mark.skipif(DB_BACKEND != "postgresql", reason="the pattern index is PostgreSQL's")
def test_a_build_that_stops_says_so_and_the_next_one_builds(app: Flask, engine: sa.Engine) -> None:
    """Another session holds the log's table (as a long VACUUM would): the build gives up at its lock
    timeout with the reason and what to do, and builds once the table is free."""
    create_pattern_index(engine)
    cli(app, "db", "pattern-index", "--drop")  # pg_trgm is there now: what follows is the build itself
    impatient = sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"], connect_args={"options": "-c lock_timeout=200"})
    holder = engine.connect()
    try:
        holder.execute(sa.text("LOCK TABLE async_event_subscriber_log IN SHARE UPDATE EXCLUSIVE MODE"))
        with pytest.raises(IndexUnavailable, match=r"was not built \(canceling statement due to lock timeout\)"):
            create_pattern_index(impatient)
    finally:
        holder.rollback()
        holder.close()
        impatient.dispose()
    assert pattern_index_state(engine) in ("absent", "invalid")
    create_pattern_index(engine)
    assert pattern_index_state(engine) == "valid"


@pytest.mark.database  # it makes its own database and role on the server
@pytest.mark.skipif(DB_BACKEND != "postgresql", reason="pg_trgm is PostgreSQL's")
def test_a_role_that_may_not_make_pg_trgm_is_told_what_to_do() -> None:
    admin = sa.create_engine(SERVER_URIS["postgresql"], isolation_level="AUTOCOMMIT")
    name = f"fae_test_plain_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE ROLE {name} LOGIN"))
        connection.execute(sa.text(f"CREATE DATABASE {name}"))  # owned by the admin: no CREATE for the role
    plain = sa.create_engine(SERVER_URIS["postgresql"].replace("postgres@", f"{name}@").rsplit("/", 1)[0] + f"/{name}")
    try:
        with pytest.raises(IndexUnavailable, match=r"permission denied.*a superuser can run CREATE EXTENSION pg_trgm"):
            create_pattern_index(plain)
        assert pattern_index_state(plain) == "absent"
    finally:
        plain.dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            connection.execute(sa.text(f"DROP ROLE IF EXISTS {name}"))
        admin.dispose()
