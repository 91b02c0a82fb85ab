"""A search's statements end at ``ASYNC_EVENTS_SEARCH_TIMEOUT`` on this run's database, the search
answers a 400 saying to narrow it, and the connection goes back to the pool without the limit."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy import insert

from flask_async_events.errors import SearchTimeout
from flask_async_events.models import Delivery, DeliveryAttempt, Event, Subscription, utcnow
from flask_async_events.operations.time_limit import time_limited
from tests.appfactory import db
from tests.conftest import AppEnv
from tests.helpers import PREFIX, token

ROWS = 30_000


def _slow_statement(dialect: str) -> sa.TextClause:
    """A statement that runs for seconds on each database."""
    if dialect == "postgresql":
        return sa.text("SELECT pg_sleep(5)")
    if dialect == "sqlite":
        return sa.text(
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 100000000) SELECT count(*) FROM c"
        )
    return sa.text("SELECT SLEEP(5)")


def _session_limit(dialect: str) -> object:
    """The limit a connection of the pool carries now (none: what the database starts with)."""
    if dialect == "postgresql":
        return db.session.scalar(sa.text("SELECT current_setting('statement_timeout')"))
    if dialect == "sqlite":
        return None
    variable = "max_statement_time" if db.session.connection().dialect.is_mariadb else "max_execution_time"  # type: ignore[attr-defined]
    return db.session.scalar(sa.text(f"SELECT @@SESSION.{variable}"))


def test_a_statement_past_the_limit_ends_and_the_limit_is_lifted_after(app: Flask) -> None:
    with app.app_context():
        dialect = db.engine.dialect.name
        before = _session_limit(dialect)
        db.session.rollback()
        started = time.monotonic()
        expected = r"the search took longer than 0.2 s \(ASYNC_EVENTS_SEARCH_TIMEOUT\)"
        with pytest.raises(SearchTimeout, match=expected), time_limited(db.session, 0.2):
            db.session.execute(_slow_statement(dialect))
        assert time.monotonic() - started < 3  # ended by the limit, not by the statement's own end
        assert _session_limit(dialect) == before
        with time_limited(db.session, 5):
            assert db.session.scalar(sa.text("SELECT 1")) == 1
        assert _session_limit(dialect) == before


def test_a_statement_that_fails_otherwise_keeps_its_own_error_and_lifts_the_limit(app: Flask) -> None:
    with app.app_context():
        dialect = db.engine.dialect.name
        before = _session_limit(dialect)
        db.session.rollback()
        with pytest.raises(sa.exc.DBAPIError) as raised, time_limited(db.session, 5):
            db.session.execute(sa.text("SELECT * FROM no_such_table"))
        assert not isinstance(raised.value, SearchTimeout)
        db.session.rollback()
        assert _session_limit(dialect) == before


def _many_attempts(app: Flask) -> None:
    """Attempts whose bodies a payload search must read one by one, written with SQL."""
    with app.app_context():
        now = utcnow()
        db.session.execute(
            insert(Subscription),
            [
                {
                    "subscription_id": 1,
                    "event_name": "*",
                    "recipient_url": "https://example.com/",
                    "verification_token": "t",
                }
            ],
        )
        db.session.execute(
            insert(Event),
            [{"id": 1, "uuid": "e1", "event_name": "echo.event", "store_id": 0, "arguments": "{}", "created_at": now}],
        )
        db.session.execute(insert(Delivery), [{"id": 1, "uuid": "d1", "event_id": 1, "subscription_id": 1}])
        body = json.dumps({"data": {"email": "someone@example.com", "tags": [f"tag-{n}" for n in range(20)]}})
        rows = [
            {"log_id": n, "uuid": "d1", "subscription_id": 1, "delivery_id": 1, "attempt": n, "success": True,
             "response_data": "", "created": now, "serialized_data": body}
            for n in range(1, ROWS + 1)
        ]  # fmt: skip
        db.session.execute(insert(DeliveryAttempt), rows)
        db.session.commit()


def test_a_search_past_the_limit_is_a_400_saying_how_to_narrow_it(env: AppEnv) -> None:
    app = env.app(ASYNC_EVENTS_SEARCH_TIMEOUT=0.01)
    _many_attempts(app)
    client, auth = app.test_client(), token(app, "admin", admin=True)
    answer = client.get(
        f"{PREFIX}/async_event_logs", query_string={"q": "data.tags:*zz* OR data.email:*qq*"}, headers=auth
    )
    assert answer.status_code == 400
    assert answer.get_json()["message"].startswith(
        "q: the search took longer than 0.01 s (ASYNC_EVENTS_SEARCH_TIMEOUT)"
    )
    assert client.get(f"{PREFIX}/async_events", headers=auth).status_code == 200  # the next request is as usual
