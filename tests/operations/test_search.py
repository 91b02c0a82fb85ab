"""The attempt-log search: a table of queries with the attempts they must find, on every database;
bad queries get a clear error; and any string at all gets a result or a clear error, never a
database error (hypothesis)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from flask_async_events.models import BODY_INDEX
from flask_async_events.operations.pattern_index import PATTERN_INDEX, create_pattern_index, drop_pattern_index
from flask_async_events.operations.search import QueryError, attempts_query
from flask_async_events.state import get_state
from tests.conftest import DB_BACKEND, AppEnv, Receiver, run_burst
from tests.helpers import PREFIX, attempts, log_in, place_order, publish, subscribe, token


@pytest.fixture
def logged(env: AppEnv, receiver: Receiver) -> tuple[Flask, dict[str, int]]:
    """Five attempts: orders 1 (roni_cost@example.com) and 2 (jane@shop.test) to a subscriber that
    answers 200 and one that answers 500 (no retries), and customer 1234 to a third."""
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[])
    subscriptions = {
        "ok": subscribe(app, receiver.respond("/ok")),
        "failing": subscribe(app, receiver.respond("/failing", [500], body="upstream exploded")),
        "customers": subscribe(app, receiver.respond("/customers"), event_name="customer.created"),
    }
    place_order(app)
    place_order(app, email="jane@shop.test")
    publish(app, "customer.created", id=1234)
    run_burst(app)
    assert len(attempts(app)) == 5
    return app, subscriptions


def found(app: Flask, text: str) -> list[tuple[int, int | None]]:
    """(subscription, status) of the attempts a search finds, sorted."""
    with app.app_context():
        session = get_state().db.session
        rows = session.execute(attempts_query(text, session.get_bind().dialect.name)).all()
        return sorted((attempt.subscription_id, attempt.status_code) for attempt, _ in rows)


TABLE = [
    ("", ["ok", "ok", "failing", "failing", "customers"]),
    ("status:500", ["failing", "failing"]),
    ("status:[200 TO 299]", ["ok", "ok", "customers"]),
    ("status:{200 TO 500}", []),
    ("success:true AND event:sales.*", ["ok", "ok"]),
    ("event:sales.* -status:500", ["ok", "ok"]),
    ("NOT success:false", ["ok", "ok", "customers"]),
    ("(status:500 OR event:customer.created) AND NOT subscription:{failing}", ["customers"]),
    ("status:500 OR status:200", ["ok", "ok", "failing", "failing", "customers"]),
    ("data.customer_email:*@example.com", ["ok", "failing"]),
    ('data.customer_email:"jane@shop.test"', ["ok", "failing"]),
    ("data.id:1234", ["customers"]),
    ("data.missing.path:*", []),
    ("created:[2026-01-01 TO *]", ["ok", "ok", "failing", "failing", "customers"]),
    ("created:[* TO 2020-01-01]", []),
    ("customer.created", ["customers"]),
    ('response:"upstream exploded"', ["failing", "failing"]),
    ("response:exploded", ["failing", "failing"]),
    ("upstream*", ["failing", "failing"]),
    ("event:sales.order.created AND data.customer_email:roni*", ["ok", "failing"]),
    ("50%", []),  # % is a literal character, not a LIKE wildcard
]


@pytest.mark.parametrize(("text", "expected"), TABLE)
def test_a_search_finds_exactly_its_attempts(
    logged: tuple[Flask, dict[str, int]], text: str, expected: list[str]
) -> None:
    app, subscriptions = logged
    text = text.replace("{failing}", str(subscriptions["failing"]))
    statuses = {"ok": 200, "failing": 500, "customers": 200}
    assert found(app, text) == sorted((subscriptions[name], statuses[name]) for name in expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("status:abc", "status takes a whole number, not 'abc'"),
        ("colour:red", "unknown field 'colour'"),
        ("(status:500", "the parenthesis at position 1 is not closed"),
        ('response:"abc', "unclosed quote at position 10"),
        ("status:500 AND", "the query ends where a term was expected"),
        ("OR status:500", "unexpected 'OR' at position 1"),
        ("created:yesterday", "created takes a date or time"),
        ("response:[a TO b]", "response is not a number or a time, so it has no ranges"),
        ("[1 TO 2]", "a range needs a field"),
        ("success:maybe", "success is true or false, not 'maybe'"),
        ("data..x:1", "has an empty step"),
        ("(" * 30 + "x" + ")" * 30, "parentheses nest deeper than 20"),
    ],
)
def test_a_bad_search_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(QueryError, match=message.replace("(", r"\(").replace("[", r"\[")):
        attempts_query(text, "sqlite")


def test_the_api_and_the_cli_search_the_log(logged: tuple[Flask, dict[str, int]]) -> None:
    app, subscriptions = logged
    client, headers = app.test_client(), token(app, "ops", admin=True)
    response = client.get(f"{PREFIX}/async_event_logs", query_string={"q": "data.id:1234"}, headers=headers)
    assert response.status_code == 200 and response.get_json()["total_count"] == 1
    response = client.get(f"{PREFIX}/async_event_logs", query_string={"q": "status:abc"}, headers=headers)
    assert response.status_code == 400
    assert response.get_json()["message"] == "q: status takes a whole number, not 'abc'"

    runner = app.test_cli_runner()
    result = runner.invoke(args=["async-events", "logs", "-q", "status:500", "--json"])
    assert result.exit_code == 0, result.output
    assert [row["subscription_id"] for row in json.loads(result.output)] == [subscriptions["failing"]] * 2
    result = runner.invoke(args=["async-events", "logs", "-q", "(status:500"])
    assert result.exit_code == 2 and "the parenthesis at position 1 is not closed" in result.output


QUERY_CHARACTERS = st.sampled_from(
    [*"abcxyz019 :*\"()[]{}-.%_\\@'", "AND", "OR", "NOT", "TO", "status", "data.", "created", "event", "¹", "é"]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(QUERY_CHARACTERS, max_size=30).map("".join))
def test_any_string_gets_results_or_a_clear_error(env: AppEnv, text: str) -> None:
    app = env.app() if not env.apps else env.apps[0]
    with app.app_context():
        session = get_state().db.session
        try:
            query = attempts_query(text, session.get_bind().dialect.name)
        except QueryError as exc:
            assert str(exc)
            return
        session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        session.rollback()


def test_a_search_counts_its_matches_up_to_a_cap_and_pages_on_past_it(
    env: AppEnv, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask_async_events.api import logs
    from flask_async_events.auth import create_token
    from flask_async_events.pages import views
    from tests.appfactory import db

    app = env.app()
    subscribe(app, receiver.respond())
    for _ in range(5):
        place_order(app)
    run_burst(app)
    auth = token(app, "ops", admin=True)
    client = app.test_client()
    answer = client.get(f"{PREFIX}/async_event_logs", headers=auth).get_json()
    assert (answer["total_count"], answer["total_count_exact"]) == (5, True)
    monkeypatch.setattr(logs, "COUNT_CAP", 3)
    monkeypatch.setattr(views, "COUNT_CAP", 3)
    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    answer = client.get(f"{PREFIX}/async_event_logs", headers=auth, query_string={"page_size": 2}).get_json()
    assert (answer["total_count"], answer["total_count_exact"], len(answer["items"])) == (3, False, 2)
    with app.app_context():
        secret = create_token(db.session, "on-call", admin=True)
        db.session.commit()
    assert log_in(client, "/async-events/admin/login", secret).status_code == 302
    first = client.get("/async-events/admin/logs").get_data(as_text=True)
    assert "More than 3 attempts, page 1" in first and "older →" in first
    last = client.get("/async-events/admin/logs?page=3").get_data(as_text=True)
    assert "More than 3 attempts, page 3" in last and "older →" not in last and "newer" in last


@pytest.mark.parametrize(
    ("text", "index", "expected"),
    [
        ("data.id:1234", BODY_INDEX, [("customers", 200)]),
        ('data.customer_email:"2026-01-31"', BODY_INDEX, []),
        ("data.customer_email:JANE@Shop.test", BODY_INDEX, [("ok", 200), ("failing", 500)]),  # either case
        ("data.customer_email:jane*", PATTERN_INDEX, [("ok", 200), ("failing", 500)]),  # a pattern: by trigrams
        ("data.customer_email:JA*SHOP.*", PATTERN_INDEX, [("ok", 200), ("failing", 500)]),  # its runs in order
        ("data.customer_email:*shop*jane", PATTERN_INDEX, []),
        ("data.customer_email:ja*", None, [("ok", 200), ("failing", 500)]),  # no run of 3: the bodies are read
        ("data.customer_email:jäne@shop.test", None, []),  # beyond ASCII: the bodies are read
        ("data.customer_email:jäne*", None, []),
    ],
)
def test_payload_values_are_looked_up_in_an_index_of_the_bodies_on_postgresql(
    logged: tuple[Flask, dict[str, int]], text: str, index: str | None, expected: list[tuple[str, int]]
) -> None:
    app, subscriptions = logged
    assert found(app, text) == sorted((subscriptions[name], status) for name, status in expected)
    if DB_BACKEND != "postgresql":
        return  # the other databases read the bodies, always
    engine = sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    create_pattern_index(engine)
    try:
        assert found(app, text) == sorted((subscriptions[name], status) for name, status in expected)
        plan = _plan(app, text)
    finally:
        drop_pattern_index(engine)
        engine.dispose()
    assert [name for name in (BODY_INDEX, PATTERN_INDEX) if name in plan] == ([index] if index else []), plan


def _plan(app: Flask, text: str) -> str:
    """PostgreSQL's plan for a search, with only bitmap scans left to it (a few rows would
    otherwise be read straight), to show which indexes it can use."""
    with app.app_context():
        session = get_state().db.session
        dialect = session.get_bind().dialect
        compiled = attempts_query(text, dialect.name).compile(dialect=dialect)
        values = {name: json.dumps(v) if isinstance(v, dict | list) else v for name, v in compiled.params.items()}
        connection = session.connection()
        for scan in ("seqscan", "indexscan"):
            connection.exec_driver_sql(f"SET LOCAL enable_{scan} = off")
        plan = "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {compiled}", values))
        session.rollback()
    return plan
