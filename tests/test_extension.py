"""The Python API: publish's checks, set-up errors, embedded defaults, and the shipped migrations."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask import Flask

from flask_async_events import AsyncEvents
from flask_async_events import migrate as migrations
from flask_async_events.config import ConfigError
from flask_async_events.models import BODY_INDEX, DEAD_INDEX, Base
from flask_async_events.state import get_state
from tests.appfactory import db, events
from tests.conftest import DB_BACKEND, AppEnv
from tests.helpers import count_events


def test_arguments_that_are_not_json_fail_at_publish(app: Flask) -> None:
    with app.app_context(), pytest.raises(TypeError, match="must be JSON-serialisable"):
        events.publish("customer.created", id=object())
    with app.app_context(), pytest.raises(TypeError, match="JSON-serialisable"):
        events.publish("customer.created", id=math.nan)
    assert count_events(app) == 0


def test_an_undefined_event_fails_at_publish(app: Flask) -> None:
    with app.app_context(), pytest.raises(ValueError, match=r"'nope\.created' is not defined"):
        events.publish("nope.created", id=1)


def test_a_missing_argument_fails_at_publish(app: Flask) -> None:
    with app.app_context(), pytest.raises(TypeError, match="missing a required argument: 'id'"):
        events.publish("customer.created")


@pytest.mark.parametrize("store_id", [-1, "1", True, 1.5])
def test_a_bad_store_id_fails_at_publish(app: Flask, store_id: object) -> None:
    with app.app_context(), pytest.raises(ValueError, match="store_id"):
        events.publish("customer.created", id=1, store_id=store_id)  # type: ignore[arg-type]


def test_subscribe_checks_its_input(app: Flask) -> None:
    with app.app_context():
        with pytest.raises(ValueError, match="not a defined event"):
            events.subscribe("nope.created", "https://example.com", verification_token="t")
        with pytest.raises(ValueError, match="not a registered notifier"):
            events.subscribe("customer.created", "https://example.com", verification_token="t", metadata="smtp")
        with pytest.raises(ValueError, match="store_id"):
            events.subscribe("customer.created", "https://example.com", verification_token="t", store_id=-2)
        with pytest.raises(ValueError, match="invalid event name"):
            events.subscribe("customer created", "https://example.com", verification_token="t")
        assert events.subscribe("customer.*", "https://example.com", verification_token="t").event_name == "customer.*"
        db.session.rollback()


def test_init_app_twice_is_an_error(app: Flask) -> None:
    with pytest.raises(RuntimeError, match="already set up"):
        events.init_app(app, db=db)


def test_bad_configuration_fails_at_init_app(env: AppEnv) -> None:
    with pytest.raises(ConfigError, match="ASYNC_EVENTS_RETRY_SCHEDULE"):
        env.app(ASYNC_EVENTS_RETRY_SCHEDULE="later")


def test_a_definitions_file_adds_events(env: AppEnv, tmp_path: Path) -> None:
    path = tmp_path / "async_events.toml"
    path.write_text('[[async_event]]\nname = "invoice.paid"\nservice = "tests.appfactory:customer_created"\n')
    app = env.app(ASYNC_EVENTS_DEFINITIONS_FILE=str(path))
    assert get_state(app).definitions.get("invoice.paid") is not None
    assert get_state(app).definitions.get("sales.order.created") is not None


def test_a_duplicate_in_the_definitions_file_fails_at_init_app(env: AppEnv, tmp_path: Path) -> None:
    path = tmp_path / "async_events.toml"
    path.write_text('[[async_event]]\nname = "customer.created"\nservice = "tests.appfactory:customer_created"\n')
    with pytest.raises(ValueError, match="defined twice"):
        env.app(ASYNC_EVENTS_DEFINITIONS_FILE=str(path))


def test_using_the_extension_without_init_app_says_what_to_do() -> None:
    with Flask("bare").app_context(), pytest.raises(RuntimeError, match="init_app"):
        AsyncEvents().publish("x")


def test_embedded_defaults_run_without_redis_or_a_database(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = Flask("embedded", instance_path=str(tmp_path / "instance"))
    app.config["SECRET_KEY"] = "dev"
    embedded = AsyncEvents()
    embedded.event("ping.sent")(lambda: {"pong": True})
    with caplog.at_level(logging.WARNING, logger="flask_async_events"):
        embedded.init_app(app)
    warnings = " ".join(record.getMessage() for record in caplog.records)
    assert "No SQLALCHEMY_DATABASE_URI set" in warnings
    assert "No ASYNC_EVENTS_REDIS_URL set" in warnings
    state = get_state(app)
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path}/instance/async-events.sqlite"
    assert state.queues.connection.ping()
    with app.app_context():
        migrations.upgrade(state.db.engine)
        assert embedded.publish("ping.sent")
        state.db.session.commit()
        assert state.nudger.flush(5)
        assert state.queues.trigger.count == 1
        state.db.session.remove()
        state.db.engine.dispose()


# SQLite cannot reflect expression indexes; the one on the bodies is PostgreSQL's only anyway.
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
def test_migrations_match_the_models_and_round_trip(database_uri: str) -> None:
    engine = sa.create_engine(database_uri)
    try:
        assert migrations.current_revision(engine) == migrations.head_revision()
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "include_name": lambda name, type_, parents: (
                        type_ != "table" or (name or "").startswith("async_event_") or name == "async_event"
                    ),
                    "compare_type": True,
                    # PostgreSQL's indexes of the bodies and of the dead letters are made there only.
                    "include_object": lambda item, name, type_, reflected, compared: (
                        type_ != "index" or name not in (BODY_INDEX, DEAD_INDEX) or engine.dialect.name == "postgresql"
                    ),
                },
            )
            assert compare_metadata(context, Base.metadata) == []
        migrations.downgrade(engine, "base")
        assert "async_event" not in sa.inspect(engine).get_table_names()
        assert "test_order" in sa.inspect(engine).get_table_names()  # the host's tables are left alone
        migrations.upgrade(engine)
        assert migrations.current_revision(engine) == migrations.head_revision()
    finally:
        engine.dispose()


def test_backend_under_test_is_the_one_asked_for(database_uri: str) -> None:
    assert database_uri.startswith(DB_BACKEND)
