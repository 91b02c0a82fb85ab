"""One language, two back ends: for random payloads and random queries, the Python evaluator that
filters subscriptions at fan-out finds exactly the attempts the SQL search finds, on this run's
database (hypothesis)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert

from flask_async_events.delivery.filters import compile_filter, matches
from flask_async_events.models import Delivery, DeliveryAttempt, Event, Subscription, utcnow
from flask_async_events.operations.search import attempts_query
from flask_async_events.state import get_state
from tests.conftest import AppEnv

KEYS = ["a", "b", "tags"]
EVENTS = ["sales.order.created", "customer.created"]
WORDS = ["x", "X", "xy", "y", "true", "1", "2.5", "a b", "50%", "_", "xyz", "wXyz-v", "zxy"]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([-1.5, 0.5, 2.0, 2.5, 10.0]),
    st.sampled_from(WORDS),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.fixed_dictionaries({"c": SCALARS}))
PAYLOADS = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=3)
FIELDS = st.sampled_from(["data.a", "data.b", "data.tags", "data.a.c", "data.b.c"])
# Patterns with a run of three characters or more are looked up by trigrams on PostgreSQL first.
TERM_VALUES = st.sampled_from(
    [
        *["x", "X*", "*y", "x*y", "true", "false", "1", "2.5", "-1.5", "2", '"a b"', "50%", "_"],
        *["xyz*", "*XYZ", "w*yz-*", "*xy*", "*zxy*", "xyz", "*50%*", "tags*"],
    ]
)
BOUNDS = st.sampled_from(["*", "0", "1", "2.5", "-2"])
TEXT_BOUNDS = st.sampled_from(["*", "a", "x", "xz", "Y"])


@st.composite
def leaves(draw: st.DrawFn) -> str:
    field = draw(FIELDS)
    kind = draw(st.sampled_from(["term", "range", "text range", "compare", "exists", "event", "store"]))
    if kind == "term":
        return f"{field}:{draw(TERM_VALUES)}"
    if kind == "range":
        low, high = draw(BOUNDS), draw(BOUNDS)
        return f"{field}:{draw(st.sampled_from('[{'))}{low} TO {high}{draw(st.sampled_from(']}'))}"
    if kind == "text range":
        return f"{field}:[{draw(TEXT_BOUNDS)} TO {draw(TEXT_BOUNDS)}]"
    if kind == "compare":
        return f"{field}:{draw(st.sampled_from(['>', '>=', '<', '<=']))}{draw(st.sampled_from(['0', '1', '2.5']))}"
    if kind == "exists":
        return f"_exists_:{field}"
    if kind == "event":
        return f"event:{draw(st.sampled_from(['sales.*', 'customer.created', '*.created', 'SALES.ORDER.CREATED']))}"
    return f"store:{draw(st.sampled_from(['0', '1', '[1 TO *]']))}"


QUERIES = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda pair: f"({pair[0]} AND {pair[1]})"),
        st.tuples(inner, inner).map(lambda pair: f"({pair[0]} OR {pair[1]})"),
        inner.map(lambda query: f"NOT {query}"),
    ),
    max_leaves=4,
)


def _store(app: Flask, documents: list[tuple[dict[str, Any], str, int]]) -> list[int]:
    """The documents as attempt rows (the body each delivered), in place of the last example's."""
    with app.app_context():
        session = get_state().db.session
        for model in (DeliveryAttempt, Delivery, Event, Subscription):
            session.execute(delete(model))
        now = utcnow()
        session.execute(
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
        ids = []
        for number, (payload, event_name, store_id) in enumerate(documents, start=1):
            body = json.dumps({"data": payload})
            session.execute(
                insert(Event),
                [
                    {
                        "id": number,
                        "uuid": str(uuid.uuid4()),
                        "event_name": event_name,
                        "store_id": store_id,
                        "arguments": "{}",
                        "body": body,
                        "created_at": now,
                    }
                ],
            )
            session.execute(
                insert(Delivery),
                [{"id": number, "uuid": str(uuid.uuid4()), "event_id": number, "subscription_id": 1}],
            )
            session.execute(
                insert(DeliveryAttempt),
                [
                    {
                        "log_id": number,
                        "uuid": str(uuid.uuid4()),
                        "subscription_id": 1,
                        "delivery_id": number,
                        "success": True,
                        "serialized_data": body,
                        "created": now,
                    }
                ],
            )
            ids.append(number)
        session.commit()
        return ids


DOCUMENTS = st.lists(st.tuples(PAYLOADS, st.sampled_from(EVENTS), st.integers(0, 2)), min_size=1, max_size=6)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(documents=DOCUMENTS, queries=st.lists(QUERIES, min_size=1, max_size=4))
def test_the_python_evaluator_agrees_with_the_sql_search(
    env: AppEnv, documents: list[tuple[dict[str, Any], str, int]], queries: list[str]
) -> None:
    app = env.app() if not env.apps else env.apps[0]
    ids = _store(app, documents)
    with app.app_context():
        session = get_state().db.session
        dialect = session.get_bind().dialect.name
        for query in queries:
            node = compile_filter(query)
            assert node is not None
            in_python = {
                number
                for number, (payload, event_name, store_id) in zip(ids, documents, strict=True)
                if matches(node, {"data": payload}, event_name, store_id)
            }
            in_sql = {attempt.log_id for attempt, _ in session.execute(attempts_query(query, dialect))}
            session.rollback()
            assert in_sql == in_python, (query, documents)
