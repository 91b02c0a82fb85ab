"""Subscription filters at fan-out: a table of filters and payloads with the deliveries they make,
on this run's database; a filter that cannot be read is refused with its position, through every
surface; a filtered-out event makes no delivery and is counted."""

from __future__ import annotations

import json

import pytest
from flask import Flask

from flask_async_events.state import get_state
from tests.appfactory import FLAKY
from tests.conftest import AppEnv, Receiver, drain, run_burst
from tests.helpers import PREFIX, attempts, create, deliveries, publish, states, subscribe, token

ORDERS = [
    {"id": 1, "total": 250, "tags": ["vip", "eu"], "coupon": "WINTER", "customer": {"email": "a@example.com"}},
    {"id": 2, "total": 99.5, "tags": ["eu"], "customer": {"email": "b@shop.test"}},
    {"id": 3, "total": "100", "tags": [], "coupon": None, "customer": {"email": "C@EXAMPLE.COM"}},
    {"id": 4, "total": 100, "flags": {"test": True}},
]

TABLE = [
    ("", [1, 2, 3, 4]),
    ("data.total:>=100", [1, 4]),  # numbers compare as numbers; "100" is a string
    ("data.total:[100 TO *]", [1, 4]),
    ("data.total:{99.5 TO 250}", [4]),
    ("data.total:<100", [2]),
    ("data.total:100", [3, 4]),  # the number 100, and the string "100"
    ("data.tags:vip", [1]),  # an element of a list
    ("data.tags:e*", [1, 2]),
    ("_exists_:data.coupon", [1]),  # null is not there
    ("NOT _exists_:data.coupon", [2, 3, 4]),
    ("data.customer.email:*@example.com", [1, 3]),  # letters in either case
    ('data.customer.email:"b@shop.test"', [2]),
    ("data.flags.test:true", [4]),
    ("data.tags:vip OR data.total:<100", [1, 2]),
    ("data.tags:eu AND NOT data.tags:vip", [2]),
    ("event:echo.* AND store:0", [1, 2, 3, 4]),
    ("store:1", []),
    ("data.customer.email:[a TO b]", [1]),  # strings in code point order
]


@pytest.mark.parametrize(("query", "expected"), TABLE)
def test_a_filter_delivers_exactly_the_events_that_match(
    env: AppEnv, receiver: Receiver, query: str, expected: list[int]
) -> None:
    app = env.app()
    subscribe(app, receiver.respond("/filtered"), event_name="echo.event", filter=query)
    subscribe(app, receiver.respond("/everything"), event_name="echo.event")
    for order in ORDERS:
        publish(app, "echo.event", payload=order)
    run_burst(app)
    received = sorted(json.loads(request.body)["data"]["id"] for request in receiver.at("/filtered"))
    assert received == expected
    assert len(receiver.at("/everything")) == 4
    assert len(deliveries(app)) == 4 + len(expected)  # no delivery for what was left out
    assert get_state(app).queues.filtered_total() == 4 - len(expected)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("data.total:>=", "data.total: >= needs a value (position 1)"),
        ("data.total:[1 TO", "the range at position 1 is not closed"),
        ("(data.a:1", "the parenthesis at position 1 is not closed"),
        ("vip", "a filter's terms name a field, event:, store: or data.<path> (position 1)"),
        ("status:500", "a filter cannot use 'status'"),
        ("store:main", "store takes a whole number, not 'main' (position 1)"),
        ("event:[a TO b]", "event has no ranges (position 1)"),
        ("data.total:[1 TO b]", "data.total: a range's bounds are both numbers or both text (position 1)"),
        ("data.items.0:x", "not only digits"),
    ],
)
def test_a_bad_filter_is_a_400_with_its_position_and_nothing_is_stored(app: Flask, query: str, message: str) -> None:
    client, auth = app.test_client(), token(app, "shop", admin=True)
    answer = create(client, auth, recipient_url="https://example.com/hook", filter=query)
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json()["message"].startswith("filter: ") and message in answer.get_json()["message"]
    assert client.get(f"{PREFIX}/async_events", headers=auth).get_json()["total_count"] == 0


def test_a_filter_is_set_changed_and_cleared_through_rest_and_the_cli(app: Flask) -> None:
    client, auth = app.test_client(), token(app, "shop", admin=True)
    created = create(client, auth, recipient_url="https://example.com/hook", filter="data.total:>=100").get_json()
    path = f"{PREFIX}/async_event/{created['subscription_id']}"
    assert created["filter"] == "data.total:>=100"
    answer = client.put(path, json={"asyncEvent": {"filter": "data.tags:("}}, headers=auth)
    assert answer.status_code == 400 and "filter: " in answer.get_json()["message"]
    assert client.get(path, headers=auth).get_json()["filter"] == "data.total:>=100"  # kept
    assert client.put(path, json={"asyncEvent": {"filter": None}}, headers=auth).get_json()["filter"] is None

    runner = app.test_cli_runner()
    result = runner.invoke(args=["async-events", "filter", str(created["subscription_id"]), "store:1", "--json"])
    assert json.loads(result.output) == {"subscription_id": created["subscription_id"], "filter": "store:1"}
    refused = runner.invoke(args=["async-events", "filter", str(created["subscription_id"]), "store:x"])
    assert refused.exit_code != 0 and "filter: store takes a whole number" in refused.output
    cleared = runner.invoke(args=["async-events", "filter", str(created["subscription_id"]), "--clear"])
    assert "receives every event it subscribed to (no filter)" in cleared.output
    made = runner.invoke(
        args=["async-events", "subscribe", "echo.event", "https://example.com/b", "--filter", "data.x:1", "--json"]
    )
    assert made.exit_code == 0, made.output
    listed = json.loads(runner.invoke(args=["async-events", "subscriptions", "--json"]).output)
    assert [s["filter"] for s in listed] == [None, "data.x:1"]


def test_a_filter_on_a_payload_that_did_not_resolve_is_asked_once_it_does(env: AppEnv, receiver: Receiver) -> None:
    # The retry comes 5 s later: a burst on a loaded machine must not reach it while resolving still fails.
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[5])
    subscribe(app, receiver.respond("/late"), event_name="flaky.echo", filter="data.total:>=100")
    FLAKY["failing"] = True
    try:
        publish(app, "flaky.echo", payload={"total": 5})
        publish(app, "flaky.echo", payload={"total": 500})
        run_burst(app)  # no payload at fan-out, so both deliveries are made; their first try fails
    finally:
        FLAKY["failing"] = False
    assert states(app) == ["retrying", "retrying"]
    # Resolved at the retry: the filter is asked then, and leaves the small one out.
    drain(app, lambda: "retrying" not in states(app), timeout=30)
    assert states(app) == ["cancelled", "delivered"]
    assert [json.loads(r.body)["data"]["total"] for r in receiver.at("/late")] == [500]
    [cancelled] = [a for a in attempts(app) if a.response_data.startswith("Cancelled")]
    assert cancelled.response_data == "Cancelled: the event does not match the subscription's filter"
