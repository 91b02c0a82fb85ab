"""Tenant isolation through the REST API, as a non-admin token would try it: every input is bounded
where it enters, with a 4xx naming the field or the setting, and nothing already stored changes.

The regressions of the findings: numbers, dates and nesting that were 500s; the confused deputy
(an owner aiming the host's AWS credentials at the host's own queue or bus); a backfill of events
published before the subscription; unbounded subscriptions and pings; filters and searches over
their limits. The cost of filters is in tests/delivery/test_filter_cost.py, the statement time
limit in tests/operations/test_time_limit.py, and what runs in real processes in
tests/worker/test_isolation.py.
"""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.datastructures import Headers
from werkzeug.test import EnvironBuilder

from flask_async_events.models import Subscription
from tests.appfactory import db
from tests.conftest import AppEnv, Receiver, drain
from tests.helpers import PREFIX, create, deliveries, next_second, place_order, subscribe, token

SEARCH_CRITERIA = "searchCriteria[filter_groups][0][filters][0]"


def _criteria(field: str, value: str, condition: str) -> str:
    return (
        f"{PREFIX}/async_events?{SEARCH_CRITERIA}[field]={field}&{SEARCH_CRITERIA}[value]={value}"
        f"&{SEARCH_CRITERIA}[condition_type]={condition}"
    )


def _subscription_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Subscription)) or 0


# Each was a 500 before: an overflow of a database integer or of a date, or a condition the
# database cannot apply to that column.
BAD_QUERIES = [
    (f"{PREFIX}/async_event_logs?q=status:99999999999999999999", "q: status must be a whole number from"),
    (f"{PREFIX}/async_event_logs?q=subscription:99999999999999999999", "q: subscription must be a whole number"),
    (f"{PREFIX}/async_event_logs?q=duration:>99999999999999999999", "q: duration must be a whole number"),
    (f"{PREFIX}/async_event_logs?q=created:9999-12-31", "q: created must be a time from 1970-01-01 to 9999-12-30"),
    (f"{PREFIX}/async_event_logs?q=created:[9999-12-31 TO *]", "q: created must be a time from 1970-01-01"),
    (f"{PREFIX}/async_event_logs?since=9999-12-31T23:59:59-01:00", "since: must be a time from 1970-01-01"),
    (f"{PREFIX}/async_event_logs?until=0001-01-01T00:00:00%2B14:00", "until: must be a time from 1970-01-01"),
    (_criteria("status", "1", "gt"), "searchCriteria condition_type 'gt' for status"),
    (_criteria("status", "1", "like"), "searchCriteria condition_type 'like' for status"),
    (_criteria("store_id", "1", "like"), "searchCriteria condition_type 'like' for store_id"),
    (_criteria("subscription_id", "99999999999999999999", "eq"), "searchCriteria value for subscription_id must"),
]


@pytest.mark.parametrize(("url", "message"), BAD_QUERIES)
def test_an_out_of_range_value_in_a_query_is_a_400_naming_it(app: Flask, url: str, message: str) -> None:
    answer = app.test_client().get(url, headers=token(app, "owner", "sales"))
    assert answer.status_code == 400, answer.get_json()
    assert message in answer.get_json()["message"]


@pytest.mark.parametrize(
    ("since", "message"),
    [
        ("9999-12-31T23:59:59-01:00", "since: must be a time from 1970-01-01 to 9999-12-30"),
        ("0001-01-01T00:00:00+14:00", "since: must be a time from 1970-01-01 to 9999-12-30"),
    ],
)
def test_an_out_of_range_recovery_time_is_a_400(app: Flask, receiver: Receiver, since: str, message: str) -> None:
    auth = token(app, "owner", "sales")
    client = app.test_client()
    subscription_id = create(client, auth, recipient_url=receiver.url()).get_json()["subscription_id"]
    answer = client.post(f"{PREFIX}/async_event/{subscription_id}/recover", json={"since": since}, headers=auth)
    assert answer.status_code == 400
    assert answer.get_json()["message"] == message


def test_a_body_over_the_limit_is_a_413_before_it_is_read_and_nothing_is_stored(env: AppEnv) -> None:
    app = env.app(ASYNC_EVENTS_MAX_BODY=4096)
    auth = token(app, "owner", "sales")
    padding = "x" * 5000
    body = {"asyncEvent": {"event_name": "sales.order.created", "recipient_url": "https://example.com/", "x": padding}}
    answer = app.test_client().post(f"{PREFIX}/async_event", json=body, headers=auth)
    assert answer.status_code == 413
    assert answer.get_json()["message"] == "the request body is larger than 4096 bytes (ASYNC_EVENTS_MAX_BODY)"
    assert _subscription_count(app) == 0


def test_a_body_without_a_length_is_cut_off_at_the_limit(env: AppEnv) -> None:
    app = env.app(ASYNC_EVENTS_MAX_BODY=4096)
    headers = {**token(app, "owner", "sales"), "Content-Type": "application/json"}
    body = b'{"asyncEvent": {"x": "' + b"x" * 8192 + b'"}}'
    environ = EnvironBuilder(
        path=f"{PREFIX}/async_event", method="POST", headers=Headers(headers), data=body
    ).get_environ()
    del environ["CONTENT_LENGTH"]  # as a chunked request comes in: its end is where the stream ends
    environ["wsgi.input_terminated"] = True
    answer = app.test_client().open(environ)
    assert answer.status_code == 413
    assert "ASYNC_EVENTS_MAX_BODY" in answer.get_json()["message"]
    assert _subscription_count(app) == 0


@pytest.mark.parametrize("depth", [65, 5000])
def test_json_nested_deeper_than_64_levels_is_a_400(app: Flask, depth: int) -> None:
    body = "[" * depth + "]" * depth
    answer = app.test_client().post(
        f"{PREFIX}/async_event", data=body, content_type="application/json", headers=token(app, "owner", "sales")
    )
    assert answer.status_code == 400
    assert answer.get_json()["message"] == "the JSON body nests deeper than 64 levels"


def test_json_nested_64_levels_is_read_as_usual(app: Flask) -> None:
    body = "[" * 64 + "]" * 64
    answer = app.test_client().post(
        f"{PREFIX}/async_event", data=body, content_type="application/json", headers=token(app, "owner", "sales")
    )
    assert answer.status_code == 400
    assert "nests deeper" not in answer.get_json()["message"]  # refused by the schema, not by its depth


@pytest.mark.parametrize(
    ("filter_text", "limit"),
    [
        (" OR ".join(f"data.id:{n}" for n in range(21)), "at most 20 terms (ASYNC_EVENTS_FILTER_LIMITS terms)"),
        ("data.email:" + "*a" * 11, "at most 10 * wildcards (ASYNC_EVENTS_FILTER_LIMITS wildcards)"),
    ],
)
def test_a_filter_over_the_limits_is_refused_when_it_is_saved(
    app: Flask, receiver: Receiver, filter_text: str, limit: str
) -> None:
    client, auth = app.test_client(), token(app, "owner", "sales")
    answer = create(client, auth, recipient_url=receiver.url(), filter=filter_text)
    assert answer.status_code == 400
    assert limit in answer.get_json()["message"]
    assert _subscription_count(app) == 0
    subscription_id = create(client, auth, recipient_url=receiver.url(), filter="data.id:1").get_json()[
        "subscription_id"
    ]
    answer = client.put(
        f"{PREFIX}/async_event/{subscription_id}", json={"asyncEvent": {"filter": filter_text}}, headers=auth
    )
    assert answer.status_code == 400 and limit in answer.get_json()["message"]
    assert client.get(f"{PREFIX}/async_event/{subscription_id}", headers=auth).get_json()["filter"] == "data.id:1"


def test_the_limits_are_the_hosts_to_set(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_FILTER_LIMITS={"length": 200, "terms": 2})
    client, auth = app.test_client(), token(app, "owner", "sales")
    answer = create(client, auth, recipient_url=receiver.url(), filter="data.email:" + "a" * 190)
    assert (
        answer.get_json()["message"]
        == "filter: a query may have at most 200 characters (ASYNC_EVENTS_FILTER_LIMITS length)"
    )
    answer = create(client, auth, recipient_url=receiver.url(), filter="data.id:1 OR data.id:2 OR data.id:3")
    assert answer.get_json()["message"] == "filter: a query may have at most 2 terms (ASYNC_EVENTS_FILTER_LIMITS terms)"
    assert _subscription_count(app) == 0


def test_a_search_over_the_limits_is_a_400_naming_the_limit(app: Flask) -> None:
    query = " OR ".join(f"data.email:*{n}*" for n in range(6))
    answer = app.test_client().get(f"{PREFIX}/async_event_logs", query_string={"q": query}, headers=token(app, "o"))
    assert answer.status_code == 400
    assert (
        answer.get_json()["message"]
        == "q: a query may have at most 10 * wildcards (ASYNC_EVENTS_FILTER_LIMITS wildcards)"
    )


HOST_TARGETS = [
    ("sqs", "arn:aws:sqs:eu-west-1:123456789012:host-internal-jobs"),
    ("eventbridge", "default"),
    ("event_bridge", "arn:aws:events:eu-west-1:123456789012:event-bus/default"),
]


@pytest.mark.parametrize(("notifier", "target"), HOST_TARGETS)
def test_an_owner_cannot_aim_the_hosts_credentials_at_the_hosts_own_resources(
    app: Flask, receiver: Receiver, notifier: str, target: str
) -> None:
    client, auth = app.test_client(), token(app, "owner", "sales")
    answer = create(client, auth, recipient_url=target, metadata=notifier)
    assert answer.status_code == 403
    assert (
        "ASYNC_EVENTS_OWNER_TARGETS" in answer.get_json()["message"]
        and "host's credentials" in answer.get_json()["message"]
    )
    assert _subscription_count(app) == 0
    mine = create(client, auth, recipient_url=receiver.url()).get_json()["subscription_id"]
    changes = {"asyncEvent": {"metadata": notifier, "recipient_url": target}}
    answer = client.put(f"{PREFIX}/async_event/{mine}", json=changes, headers=auth)
    assert answer.status_code == 403
    assert client.get(f"{PREFIX}/async_event/{mine}", headers=auth).get_json()["recipient_url"] == receiver.url()


def test_the_host_allow_lists_targets_for_owners_and_admins_are_not_limited(env: AppEnv) -> None:
    app = env.app(ASYNC_EVENTS_OWNER_TARGETS={"sqs": ["arn:aws:sqs:*:123456789012:customer-*"]})
    client, owner, admin = app.test_client(), token(app, "owner", "sales"), token(app, "admin", admin=True)
    allowed = create(client, owner, recipient_url="arn:aws:sqs:eu-west-1:123456789012:customer-7", metadata="sqs")
    assert allowed.status_code == 200
    refused = create(client, owner, recipient_url="arn:aws:sqs:eu-west-1:123456789012:Customer-7", metadata="sqs")
    assert refused.status_code == 403  # patterns match ARNs and URLs as written, letters' case included
    assert "arn:aws:sqs:*:123456789012:customer-*" in refused.get_json()["message"]
    hosts = create(client, admin, recipient_url="arn:aws:sqs:eu-west-1:123456789012:host-internal-jobs", metadata="sqs")
    assert hosts.status_code == 200


def test_recover_missed_never_reaches_before_the_subscription(env: AppEnv, receiver: Receiver) -> None:
    """The finding: a new subscription recovered ``since=2000-01-01`` with ``missed`` and received
    every earlier order, other customers' emails in them."""
    app = env.app()
    subscribe(app, receiver.respond("/host"))  # the host's own subscription, so the orders fan out
    place_order(app, email="earlier@example.com")
    drain(app, lambda: len(receiver.at("/host")) == 1)
    client, auth = app.test_client(), token(app, "owner", "sales")
    subscription_id = create(client, auth, recipient_url=receiver.respond("/mine")).get_json()["subscription_id"]
    answer = client.post(
        f"{PREFIX}/async_event/{subscription_id}/recover",
        json={"since": "2000-01-01T00:00:00", "missed": True},
        headers=auth,
    )
    assert answer.status_code == 202
    assert answer.get_json()["total"] == 0  # nothing since it was made
    job = answer.get_json()["job"]
    drain(app, lambda: client.get(f"{PREFIX}/async_event_jobs/{job}", headers=auth).get_json()["status"] == "finished")
    assert receiver.at("/mine") == []
    assert len(deliveries(app)) == 1


def test_recover_missed_delivers_what_came_while_it_was_disabled_as_a_job(env: AppEnv, receiver: Receiver) -> None:
    app = env.app()
    client, auth = app.test_client(), token(app, "owner", "sales")
    subscription_id = create(client, auth, recipient_url=receiver.respond("/mine")).get_json()["subscription_id"]
    next_second()  # MySQL keeps whole seconds
    client.put(f"{PREFIX}/async_event/{subscription_id}", json={"asyncEvent": {"status": False}}, headers=auth)
    for n in range(3):
        place_order(app, email=f"while-disabled-{n}@example.com")
    drain(app, lambda: True)
    client.put(f"{PREFIX}/async_event/{subscription_id}", json={"asyncEvent": {"status": True}}, headers=auth)
    answer = client.post(
        f"{PREFIX}/async_event/{subscription_id}/recover",
        json={"since": "2000-01-01T00:00:00", "missed": True},
        headers=auth,
    )
    assert answer.status_code == 202
    job = answer.get_json()["job"]
    assert answer.get_json()["status"] == "queued" and answer.get_json()["total"] == 3
    drain(app, lambda: len(receiver.at("/mine")) == 3)
    progress = client.get(f"{PREFIX}/async_event_jobs/{job}", headers=auth).get_json()
    assert (progress["status"], progress["done"], progress["sent"]) == ("finished", 3, 3)
    other = client.get(f"{PREFIX}/async_event_jobs/{job}", headers=token(app, "other", "sales"))
    assert other.status_code == 404  # another owner's job is not there


def test_an_owner_may_hold_only_so_many_subscriptions(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_MAX_SUBSCRIPTIONS_PER_OWNER=3)
    client, auth, admin = app.test_client(), token(app, "owner", "sales"), token(app, "admin", admin=True)
    made = [create(client, auth, recipient_url=receiver.url()).get_json()["subscription_id"] for _ in range(3)]
    answer = create(client, auth, recipient_url=receiver.url())
    assert answer.status_code == 403
    assert "ASYNC_EVENTS_MAX_SUBSCRIPTIONS_PER_OWNER = 3" in answer.get_json()["message"]
    assert _subscription_count(app) == 3
    assert create(client, token(app, "another", "sales"), recipient_url=receiver.url()).status_code == 200
    assert all(create(client, admin, recipient_url=receiver.url()).status_code == 200 for _ in range(4))
    client.delete(f"{PREFIX}/async_event/{made[0]}", headers=auth)
    assert create(client, auth, recipient_url=receiver.url()).status_code == 200  # a deleted one frees its place


def test_pings_are_rate_limited_per_owner_with_retry_after(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_TEST_SENDS_PER_MINUTE=2)
    client, auth, other = app.test_client(), token(app, "owner", "sales"), token(app, "other", "sales")
    mine = create(client, auth, recipient_url=receiver.respond("/ping")).get_json()["subscription_id"]
    theirs = create(client, other, recipient_url=receiver.respond("/ping")).get_json()["subscription_id"]
    answers = [client.post(f"{PREFIX}/async_event/{mine}/ping", headers=auth) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert "ASYNC_EVENTS_TEST_SENDS_PER_MINUTE" in answers[2].get_json()["message"]
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 60
    assert len(receiver.at("/ping")) == 2  # the refused one sent nothing
    assert client.post(f"{PREFIX}/async_event/{theirs}/ping", headers=other).status_code == 200
