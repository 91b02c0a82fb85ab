"""The pattern index: built and dropped by the CLI on PostgreSQL (delivery going on), refused with
a reason elsewhere or where pg_trgm cannot be made, and used by payload patterns once it is there."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_async_events.errors import IndexUnavailable
from flask_async_events.operations.pattern_index import create_pattern_index, pattern_index_state
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
            connection.execute(sa.text("DROP INDEX IF EXISTS ix_async_event_subscriber_log_text"))
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
            sa.text(
                "UPDATE pg_index SET indisvalid = false WHERE indexrelid ="
                " 'ix_async_event_subscriber_log_text'::regclass"
            )
        )
    assert pattern_index_state(engine) == "invalid"
    cli(app, "db", "pattern-index")
    assert pattern_index_state(engine) == "valid"


@pytest.mark.skipif(DB_BACKEND == "postgresql", reason="the other databases have no pattern index")
def test_the_pattern_index_is_refused_where_it_cannot_be(app: Flask) -> None:
    output = cli_error(app, "db", "pattern-index")
    assert f"the pattern index is PostgreSQL's (pg_trgm); on {DB_BACKEND}" in output
    assert "Traceback" not in output


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
