"""The REST API: the Magento module's calls, validation, ownership, tokens, and what is never returned."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from standardwebhooks import Webhook
from werkzeug.serving import make_server

from flask_async_events.models import Subscription
from flask_async_events.notifiers.base import NotifyResult
from flask_async_events.state import get_state
from tests.appfactory import db
from tests.conftest import AppEnv, Receiver, drain, run_burst
from tests.helpers import PREFIX, attempts, create, deliveries, place_order, publish, states, token

MAGENTO_HTTP = {
    "asyncEvent": {
        "event_name": "sales.order.created",
        "recipient_url": "https://example.com/order_created",
        "verification_token": "fD03@NpYbXYg",
        "metadata": "http",
    }
}
MAGENTO_EVENTBRIDGE = {
    "asyncEvent": {
        "event_name": "sales.order.created",
        "recipient_url": "arn:aws:events:ap-southeast-2:005158166381:rule/Test.EventBridge.Rule",
        "verification_token": "aIW0G9n3*9wN",
        "metadata": "event_bridge",
    }
}


@pytest.fixture
def app(env: AppEnv) -> Flask:
    """The test app, whose host lets its API clients aim EventBridge at the Magento example's rules
    (without that, a non-admin token may not use the host's AWS credentials)."""
    return env.app(ASYNC_EVENTS_OWNER_TARGETS={"eventbridge": ["arn:aws:events:*:*:rule/Test.*"]})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def sales(app: Flask) -> dict[str, str]:
    return token(app, "sales-integration", "sales")


# --- the Magento module's curl commands --------------------------------------------------------------------


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.port}"
    server.shutdown()
    thread.join(5)


def magento_curl(base: str, bearer: str, body: dict[str, Any]) -> dict[str, Any]:
    """The Magento module README's curl command, with only the host and the token changed."""
    command = [
        "curl",
        "--silent",
        "--location",
        "--request",
        "POST",
        f"{base}/rest/V1/async_event",
        "--header",
        f"Authorization: Bearer {bearer}",
        "--header",
        "Content-Type: application/json",
        "--data-raw",
        json.dumps(body, indent=4),
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=30).stdout
    result: dict[str, Any] = json.loads(output)
    return result


def test_the_magento_modules_curl_commands_create_working_subscriptions(
    app: Flask, live_server: str, receiver: Receiver
) -> None:
    bearer = token(app, "magento", "sales")["Authorization"].split()[1]
    http = magento_curl(live_server, bearer, MAGENTO_HTTP)
    assert http["event_name"] == "sales.order.created" and http["status"] is True
    assert {"subscription_id", "event_name", "recipient_url", "status", "subscribed_at", "store_id"} <= set(http)
    eventbridge = magento_curl(live_server, bearer, MAGENTO_EVENTBRIDGE)
    assert eventbridge["metadata"] == "event_bridge" and eventbridge["recipient_url"].endswith("Test.EventBridge.Rule")

    # The same http call aimed at a receiver on this machine gets the event, signed with the Magento module's token.
    to_receiver = {"asyncEvent": {**MAGENTO_HTTP["asyncEvent"], "recipient_url": receiver.respond("/order_created")}}
    magento_curl(live_server, bearer, to_receiver)
    with app.app_context():  # the example.com and AWS subscriptions cannot be reached from here
        db.session.execute(text("UPDATE async_event_subscriber SET status = false WHERE subscription_id IN (1, 2)"))
        db.session.commit()
    place_order(app, email="roni_cost@example.com")
    run_burst(app)
    [request] = receiver.at("/order_created")
    assert Webhook(b"fD03@NpYbXYg").verify(request.body, request.headers)["data"]["customer_email"] == (
        "roni_cost@example.com"
    )


# --- create, read, update, delete ----------------------------------------------------------------


def test_create_generates_a_secret_and_returns_it_once(client: FlaskClient, sales: dict[str, str]) -> None:
    response = create(client, sales, recipient_url="https://example.com/hook")
    assert response.status_code == 200
    created = response.get_json()
    assert created["verification_token"].startswith("whsec_")
    again = client.get(f"{PREFIX}/async_event/{created['subscription_id']}", headers=sales).get_json()
    assert "verification_token" not in again
    assert again == {key: value for key, value in created.items() if key != "verification_token"}


def test_the_verification_token_is_never_returned_or_stored_in_clear(
    app: Flask, client: FlaskClient, sales: dict[str, str], receiver: Receiver
) -> None:
    secret = "fD03@NpYbXYg-very-secret"
    created = create(client, sales, recipient_url=receiver.respond(), verification_token=secret)
    subscription_id = created.get_json()["subscription_id"]
    responses = [
        created,
        client.get(f"{PREFIX}/async_event/{subscription_id}", headers=sales),
        client.get(f"{PREFIX}/async_events", headers=sales),
        client.put(f"{PREFIX}/async_event/{subscription_id}", json={"asyncEvent": {"status": True}}, headers=sales),
    ]
    place_order(app)
    run_burst(app)
    uuid = deliveries(app)[0].uuid
    responses += [
        client.get(f"{PREFIX}/async_event_logs", headers=sales),
        client.get(f"{PREFIX}/async_event_logs/{uuid}", headers=sales),
    ]
    for response in responses:
        assert response.status_code == 200, response.get_data(as_text=True)
        assert secret not in response.get_data(as_text=True)
        assert "verification_token" not in response.get_data(as_text=True)
    assert all(secret not in (attempt.serialized_data or "") + attempt.response_data for attempt in attempts(app))
    with app.app_context():
        stored = db.session.scalar(text("SELECT verification_token FROM async_event_subscriber"))
        assert stored and secret not in stored


def test_get_update_and_delete(app: Flask, client: FlaskClient, sales: dict[str, str], receiver: Receiver) -> None:
    subscription_id = create(client, sales, recipient_url=receiver.respond("/a")).get_json()["subscription_id"]
    url = f"{PREFIX}/async_event/{subscription_id}"
    changed = client.put(url, json={"asyncEvent": {"recipient_url": receiver.url("/b")}}, headers=sales).get_json()
    assert changed["recipient_url"].endswith("/b") and changed["status"] is True and changed["metadata"] == "http"
    disabled = client.put(url, json={"asyncEvent": {"status": False}}, headers=sales).get_json()
    assert disabled["status"] is False and disabled["recipient_url"].endswith("/b")

    assert client.delete(url, headers=sales).status_code == 204
    gone = client.get(url, headers=sales)
    assert gone.status_code == 404
    assert gone.get_json()["message"] == f"Async event with subscription ID {subscription_id} does not exist"
    assert client.get(f"{PREFIX}/async_events", headers=sales).get_json()["total_count"] == 0
    with app.app_context():
        kept = db.session.get(Subscription, subscription_id)
        assert kept is not None and kept.status is False and kept.deleted_at is not None


def test_update_refuses_fields_that_cannot_change(client: FlaskClient, sales: dict[str, str]) -> None:
    subscription_id = create(client, sales, recipient_url="https://example.com/x").get_json()["subscription_id"]
    url = f"{PREFIX}/async_event/{subscription_id}"
    for field, value in (("event_name", "customer.created"), ("verification_token", "new"), ("store_id", 3)):
        response = client.put(url, json={"asyncEvent": {field: value}}, headers=sales)
        assert response.status_code == 400
        assert response.get_json()["message"].startswith(f"asyncEvent.{field}: {field} cannot be changed")
    # Echoing back what GET returned is fine: read-only keys it cannot change are ignored.
    current = client.get(url, headers=sales).get_json()
    echo = {key: current[key] for key in ("subscription_id", "subscribed_at", "status", "metadata", "recipient_url")}
    assert client.put(url, json={"asyncEvent": echo}, headers=sales).status_code == 200


def test_a_rate_limit_is_set_shown_changed_and_lifted(client: FlaskClient, sales: dict[str, str]) -> None:
    created = create(client, sales, recipient_url="https://example.com/x", rate_limit=2.5).get_json()
    assert created["rate_limit"] == 2.5
    url = f"{PREFIX}/async_event/{created['subscription_id']}"
    assert client.get(url, headers=sales).get_json()["rate_limit"] == 2.5
    changed = client.put(url, json={"asyncEvent": {"rate_limit": 10}}, headers=sales)
    assert changed.status_code == 200 and changed.get_json()["rate_limit"] == 10
    refused = client.put(url, json={"asyncEvent": {"rate_limit": 0}}, headers=sales)
    assert refused.status_code == 400 and "asyncEvent.rate_limit" in refused.get_json()["message"]
    assert client.get(url, headers=sales).get_json()["rate_limit"] == 10  # a refused change keeps what was stored
    lifted = client.put(url, json={"asyncEvent": {"rate_limit": None}}, headers=sales)
    assert lifted.status_code == 200 and lifted.get_json()["rate_limit"] is None
    unlimited = create(client, sales, recipient_url="https://example.com/y").get_json()
    assert unlimited["rate_limit"] is None


def test_disabling_through_the_api_cancels_pending_retries(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[300])
    client, headers = app.test_client(), token(app, "t", "sales")
    subscription_id = create(client, headers, recipient_url=receiver.respond("/down", [503])).get_json()[
        "subscription_id"
    ]
    place_order(app)
    run_burst(app)
    assert states(app) == ["retrying"]
    client.put(f"{PREFIX}/async_event/{subscription_id}", json={"asyncEvent": {"status": False}}, headers=headers)
    assert states(app) == ["cancelled"]


# --- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({}, 400, "asyncEvent"),
        ({"asyncEvent": {"recipient_url": "https://e.com", "metadata": "http"}}, 400, "asyncEvent.event_name"),
        ({"asyncEvent": {**MAGENTO_HTTP["asyncEvent"], "colour": "red"}}, 400, "asyncEvent.colour"),
        ({**MAGENTO_HTTP, "extra": 1}, 400, "extra"),
        ({"asyncEvent": {**MAGENTO_HTTP["asyncEvent"], "event_name": "nope.created"}}, 400, "event_name"),
        ({"asyncEvent": {**MAGENTO_HTTP["asyncEvent"], "event_name": "sales order"}}, 400, "event name"),
        ({"asyncEvent": {**MAGENTO_HTTP["asyncEvent"], "metadata": "smtp"}}, 400, "metadata"),
        ({"asyncEvent": {**MAGENTO_HTTP["asyncEvent"], "recipient_url": "ftp://e.com/x"}}, 400, "recipient_url"),
        ({"asyncEvent": {**MAGENTO_HTTP["asyncEvent"], "recipient_url": "https://u:p@e.com/x"}}, 400, "recipient_url"),
        ({"asyncEvent": {**MAGENTO_HTTP["asyncEvent"], "recipient_url": "not a url"}}, 400, "recipient_url"),
        ({"asyncEvent": {**MAGENTO_HTTP["asyncEvent"], "store_id": -1}}, 400, "asyncEvent.store_id"),
        ({"asyncEvent": {**MAGENTO_HTTP["asyncEvent"], "store_id": "one"}}, 400, "asyncEvent.store_id"),
        ({"asyncEvent": {**MAGENTO_EVENTBRIDGE["asyncEvent"], "recipient_url": "arn:aws:sqs:x"}}, 400, "recipient_url"),
        ({"asyncEvent": ["not", "an", "object"]}, 400, "asyncEvent"),
        ({"asyncEvent": {**MAGENTO_HTTP["asyncEvent"], "rate_limit": 0}}, 400, "asyncEvent.rate_limit"),
        ({"asyncEvent": {**MAGENTO_HTTP["asyncEvent"], "rate_limit": -5}}, 400, "asyncEvent.rate_limit"),
        ({"asyncEvent": {**MAGENTO_HTTP["asyncEvent"], "rate_limit": 1e6}}, 400, "asyncEvent.rate_limit"),
        ({"asyncEvent": {**MAGENTO_HTTP["asyncEvent"], "rate_limit": "fast"}}, 400, "asyncEvent.rate_limit"),
        ({"asyncEvent": {**MAGENTO_HTTP["asyncEvent"], "rate_limit": True}}, 400, "asyncEvent.rate_limit"),
    ],
)
def test_bad_input_gets_a_message_naming_the_field(
    client: FlaskClient, sales: dict[str, str], body: dict[str, Any], status: int, field: str
) -> None:
    response = client.post(f"{PREFIX}/async_event", json=body, headers=sales)
    assert response.status_code == status
    payload = response.get_json()
    assert field in payload["message"], payload


def test_malformed_json_is_a_400_not_a_500(client: FlaskClient, sales: dict[str, str]) -> None:
    for data in ("{", "[1, 2]", "null", '"text"'):
        response = client.post(
            f"{PREFIX}/async_event", data=data, headers={**sales, "Content-Type": "application/json"}
        )
        assert response.status_code == 400, data
        assert response.get_json()["message"]


def test_unknown_ids_get_the_magento_modules_message(client: FlaskClient, sales: dict[str, str]) -> None:
    for subscription_id in ("99", "abc", "-1", "9" * 40, "\u00b9"):  # a superscript one is a digit, not a number
        response = client.get(f"{PREFIX}/async_event/{subscription_id}", headers=sales)
        assert response.status_code == 404
        assert response.get_json()["message"] == f"Async event with subscription ID {subscription_id} does not exist"


def test_the_events_resources_are_checked(app: Flask, client: FlaskClient) -> None:
    customers_only = token(app, "crm", "customers")
    response = create(client, customers_only, recipient_url="https://example.com/x")
    assert response.status_code == 401
    assert response.get_json()["message"] == "The consumer isn't authorized to access sales."
    # A wildcard needs the resources of every event it matches.
    response = create(client, customers_only, recipient_url="https://example.com/x", event_name="*")
    assert response.get_json()["message"] == "The consumer isn't authorized to access sales."
    assert create(client, customers_only, recipient_url="https://e.com/x", event_name="customer.*").status_code == 200


def test_a_wildcard_never_receives_events_its_token_may_not_see(
    env: AppEnv, receiver: Receiver, tmp_path: Path
) -> None:
    app = env.app()
    customers_only = token(app, "crm", "customers")
    response = create(app.test_client(), customers_only, recipient_url=receiver.respond(), event_name="customer.*")
    assert response.status_code == 200
    # Later the app is deployed with a new event that needs a resource the token does not hold.
    definitions = tmp_path / "more_events.toml"
    definitions.write_text(
        '[[async_event]]\nname = "customer.vip.created"\nservice = "tests.appfactory:customer_created"\n'
        'resources = ["vip"]\n'
    )
    redeployed = env.app(ASYNC_EVENTS_DEFINITIONS_FILE=str(definitions))
    publish(redeployed, "customer.vip.created", id=1)
    publish(redeployed, "customer.created", id=2)
    run_burst(redeployed)
    assert [json.loads(r.body)["data"]["id"] for r in receiver.requests] == [2]


# --- authentication and ownership ----------------------------------------------------------------


def test_missing_wrong_and_revoked_tokens_get_401(app: Flask, client: FlaskClient) -> None:
    headers = token(app, "temporary", "sales")
    assert client.get(f"{PREFIX}/async_events", headers=headers).status_code == 200
    for bad in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": ""}):
        response = client.get(f"{PREFIX}/async_events", headers=bad)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.get_json()["message"]
    result = app.test_cli_runner().invoke(args=["async-events", "token", "revoke", "temporary"])
    assert result.exit_code == 0, result.output
    assert client.get(f"{PREFIX}/async_events", headers=headers).status_code == 401


def test_one_tenant_cannot_touch_anothers_subscriptions_or_logs(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[])
    client = app.test_client()
    alice, bob, admin = token(app, "alice", "sales"), token(app, "bob", "sales"), token(app, "ops", admin=True)
    mine = create(client, alice, recipient_url=receiver.respond("/alice", [500])).get_json()["subscription_id"]
    create(client, bob, recipient_url=receiver.respond("/bob"))
    place_order(app)
    run_burst(app)
    alice_uuid = next(d.uuid for d in deliveries(app) if d.subscription_id == mine)

    base = f"{PREFIX}/async_event/{mine}"
    for method, url, body in (
        ("get", base, None),
        ("put", base, {"asyncEvent": {"status": False}}),
        ("delete", base, None),
        ("post", f"{base}/recover", {"since": "2020-01-01T00:00:00Z"}),
        ("post", f"{base}/ping", None),
        ("get", f"{PREFIX}/async_event_logs/{alice_uuid}", None),
        ("post", f"{PREFIX}/async_event_logs/{alice_uuid}/replay", None),
    ):
        response = getattr(client, method)(url, json=body, headers=bob)
        assert response.status_code == 404, (method, url, response.get_json())
    bobs = client.get(f"{PREFIX}/async_events", headers=bob).get_json()
    assert [s["subscription_id"] for s in bobs["items"]] == [2]
    bob_logs = client.get(f"{PREFIX}/async_event_logs", headers=bob).get_json()["items"]
    assert {log["subscription_id"] for log in bob_logs} == {2}
    assert client.get(f"{PREFIX}/async_event_logs?subscription_id={mine}", headers=bob).get_json()["total_count"] == 0
    # Alice's own view and the admin's.
    assert client.get(base, headers=alice).status_code == 200
    assert client.get(f"{PREFIX}/async_events", headers=admin).get_json()["total_count"] == 2
    assert client.get(f"{PREFIX}/async_event_logs/{alice_uuid}", headers=admin).status_code == 200


def test_the_host_can_bring_its_own_authorization(env: AppEnv) -> None:
    from flask_async_events import Principal
    from tests.appfactory import events

    def from_header(request: Any) -> Principal | None:
        user = request.headers.get("X-User")
        return Principal(owner=f"user:{user}", resources=frozenset({"sales"})) if user else None

    events.authorize(from_header)
    try:
        app = env.app()
        client = app.test_client()
        assert client.get(f"{PREFIX}/async_events").status_code == 401
        created = create(client, {"X-User": "ann"}, recipient_url="https://example.com/x")
        assert created.status_code == 200
        assert client.get(f"{PREFIX}/async_events", headers={"X-User": "ann"}).get_json()["total_count"] == 1
        assert client.get(f"{PREFIX}/async_events", headers={"X-User": "ben"}).get_json()["total_count"] == 0
    finally:
        events._authorizer = None


# --- lists, catalogue, logs, trace, replay, recover, ping ---------------------------------------


def test_list_filters_pages_and_the_magento_search_criteria(app: Flask, client: FlaskClient) -> None:
    admin = token(app, "ops", admin=True)
    for name, store in (("sales.order.created", 0), ("customer.created", 1), ("customer.created", 2)):
        create(client, admin, recipient_url="https://example.com/x", event_name=name, store_id=store)
    client.put(f"{PREFIX}/async_event/3", json={"asyncEvent": {"status": False}}, headers=admin)

    def ids(query: str) -> list[int]:
        response = client.get(f"{PREFIX}/async_events?{query}", headers=admin)
        assert response.status_code == 200, response.get_json()
        return [item["subscription_id"] for item in response.get_json()["items"]]

    assert ids("event_name=customer.created") == [2, 3]
    assert ids("status=false") == [3]
    assert ids("store_id=1") == [2]
    assert ids("page=2&page_size=2") == [3]
    criteria = "searchCriteria[filter_groups][0][filters][0]"
    assert ids(f"{criteria}[field]=event_name&{criteria}[value]=customer.created") == [2, 3]
    assert ids(f"{criteria}[field]=store_id&{criteria}[value]=1,2&{criteria}[condition_type]=in") == [2, 3]
    assert ids(f"{criteria}[field]=event_name&{criteria}[value]=%25order%25&{criteria}[condition_type]=like") == [1]
    either = "searchCriteria[filter_groups][0][filters][1]"
    assert ids(f"{criteria}[field]=store_id&{criteria}[value]=2&{either}[field]=store_id&{either}[value]=0") == [1, 3]
    assert ids("searchCriteria[pageSize]=1&searchCriteria[currentPage]=3") == [3]
    newest_first = "searchCriteria[sortOrders][0][field]=subscription_id&searchCriteria[sortOrders][0][direction]=DESC"
    assert ids(newest_first) == [3, 2, 1]
    echoed = client.get(f"{PREFIX}/async_events?searchCriteria[pageSize]=1", headers=admin).get_json()
    assert echoed["search_criteria"]["page_size"] == 1 and echoed["total_count"] == 3
    bad = client.get(f"{PREFIX}/async_events?{criteria}[field]=verification_token&{criteria}[value]=x", headers=admin)
    assert bad.status_code == 400 and "verification_token" in bad.get_json()["message"]


def test_definitions_list_the_catalogue(client: FlaskClient, sales: dict[str, str]) -> None:
    catalogue = client.get(f"{PREFIX}/async_events/definitions", headers=sales).get_json()
    assert {"name": "sales.order.created", "description": "An order was placed", "resources": ["sales"]} in catalogue


def test_logs_trace_replay_and_recover(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[0, 0])
    client, headers = app.test_client(), token(app, "t", "sales")
    url = receiver.respond("/flaky", [500, 500, 500, 200, 200, 200])
    subscription_id = create(client, headers, recipient_url=url).get_json()["subscription_id"]
    place_order(app)
    # Until dead: a burst worker now and then ends before its last retry due at once is sent.
    drain(app, lambda: states(app) == ["dead"])
    uuid = deliveries(app)[0].uuid

    logs = client.get(f"{PREFIX}/async_event_logs?uuid={uuid}", headers=headers).get_json()
    assert logs["total_count"] == 3 and [item["status_code"] for item in logs["items"]] == [500, 500, 500]
    assert client.get(f"{PREFIX}/async_event_logs?success=true", headers=headers).get_json()["total_count"] == 0
    assert client.get(f"{PREFIX}/async_event_logs?event_name=sales.*", headers=headers).get_json()["total_count"] == 3
    trace = client.get(f"{PREFIX}/async_event_logs/{uuid}", headers=headers).get_json()
    assert trace["status"] == "Dead Lettered with 2 retries"
    assert trace["payload"]["data"]["customer_email"] == "roni_cost@example.com"
    assert [a["attempt"] for a in trace["attempts"]] == [1, 2, 3]

    replayed = client.post(f"{PREFIX}/async_event_logs/{uuid}/replay", headers=headers)
    assert replayed.status_code == 202
    run_burst(app)
    trace = client.get(f"{PREFIX}/async_event_logs/{uuid}", headers=headers).get_json()
    assert trace["status"] == "Delivered with 3 retries" and trace["state"] == "delivered"

    receiver.server.clear()  # two more orders, while the endpoint is down: both end dead
    receiver.respond("/flaky", [500])
    place_order(app)
    place_order(app)
    drain(app, lambda: sorted(states(app)) == ["dead", "dead", "delivered"])  # as above: retries due at once
    receiver.server.clear()
    receiver.respond("/flaky", [200])
    recovered = client.post(
        f"{PREFIX}/async_event/{subscription_id}/recover", json={"since": "2020-01-01T00:00:00"}, headers=headers
    ).get_json()
    assert (recovered["total"], recovered["status"]) == (2, "queued")  # counted now, sent by the workers
    run_burst(app)
    assert states(app) == ["delivered"] * 3
    progress = client.get(f"{PREFIX}/async_event_jobs/{recovered['job']}", headers=headers).get_json()
    assert (progress["status"], progress["done"], progress["sent"]) == ("finished", 2, 2)
    missing = client.get(f"{PREFIX}/async_event_logs/00000000-0000-0000-0000-000000000000", headers=headers)
    assert missing.status_code == 404 and "no longer exists" in missing.get_json()["message"]


def test_recover_and_replay_refuse_a_disabled_subscription(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[])
    client, headers = app.test_client(), token(app, "t", "sales")
    subscription_id = create(client, headers, recipient_url=receiver.respond("/x", [500])).get_json()["subscription_id"]
    place_order(app)
    run_burst(app)
    client.put(f"{PREFIX}/async_event/{subscription_id}", json={"asyncEvent": {"status": False}}, headers=headers)
    response = client.post(f"{PREFIX}/async_event_logs/{deliveries(app)[0].uuid}/replay", headers=headers)
    assert response.status_code == 409 and "enable it" in response.get_json()["message"]
    response = client.post(
        f"{PREFIX}/async_event/{subscription_id}/recover", json={"since": "2020-01-01T00:00:00Z"}, headers=headers
    )
    assert response.status_code == 409
    response = client.post(f"{PREFIX}/async_event/{subscription_id}/recover", json={}, headers=headers)
    assert response.status_code == 400 and "since" in response.get_json()["message"]


def test_ping_sends_a_signed_test_event_and_returns_the_answer(
    client: FlaskClient, sales: dict[str, str], receiver: Receiver
) -> None:
    url = receiver.respond("/ping", [418], body="short and stout")
    created = create(client, sales, recipient_url=url, verification_token="ping-secret").get_json()
    answer = client.post(f"{PREFIX}/async_event/{created['subscription_id']}/ping", headers=sales).get_json()
    assert answer["success"] is False and answer["status_code"] == 418 and answer["response_data"] == "short and stout"
    [request] = receiver.at("/ping")
    assert Webhook(b"ping-secret").verify(request.body, request.headers) == {
        "data": {"ping": True, "subscription_id": created["subscription_id"]}
    }
    assert request.headers["X-Async-Events-Event"] == "async_events.ping"


# --- documentation, and the host's own pages -----------------------------------------------------


def test_the_openapi_document_and_swagger_ui_are_served_offline(client: FlaskClient) -> None:
    document = client.get(f"{PREFIX}/openapi.json").get_json()
    assert document["info"]["title"] == "flask-async-events"
    assert f"{PREFIX}/async_event" in document["paths"]
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    page = client.get(f"{PREFIX}/docs").get_data(as_text=True)
    assert f"{PREFIX}/docs/assets/swagger-ui-bundle.js" in page
    with client.get(f"{PREFIX}/docs/assets/swagger-ui-bundle.js") as script:
        assert script.status_code == 200 and script.mimetype == "text/javascript"


def test_the_host_apps_error_pages_are_left_alone(app: Flask, client: FlaskClient) -> None:
    @app.route("/host/forbidden")
    def forbidden() -> Any:
        from flask import abort

        abort(403)

    for path, status in (("/no/such/page", 404), ("/host/forbidden", 403)):
        response = client.get(path)
        assert response.status_code == status
        assert response.mimetype == "text/html"  # not turned into JSON by the API


def test_the_api_mounts_on_the_hosts_own_api(env: AppEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    from flask_smorest import Api

    from tests import appfactory

    created: list[Api] = []

    def with_host_api(overrides: dict[str, Any] | None = None) -> Flask:
        app = Flask("host-with-api")
        app.config.update(
            appfactory.BASE_CONFIG,
            SQLALCHEMY_DATABASE_URI=env.database_uri,
            ASYNC_EVENTS_REDIS_URL=env.redis.url,
            API_TITLE="Host API",
            API_VERSION="1",
            OPENAPI_VERSION="3.0.3",
            OPENAPI_URL_PREFIX="/api-docs",
        )
        api = Api(app)
        created.append(api)
        appfactory.db.init_app(app)
        appfactory.events.init_app(app, db=appfactory.db, api=api)
        env.apps.append(app)
        return app

    app = with_host_api()
    document = app.test_client().get("/api-docs/openapi.json").get_json()
    assert document["info"]["title"] == "Host API" and f"{PREFIX}/async_events" in document["paths"]
    assert app.test_client().get(f"{PREFIX}/async_events").status_code == 401


def test_ping_with_a_notifier_this_server_lacks_says_what_to_do(app: Flask, client: FlaskClient) -> None:
    headers = token(app, "t", "sales")
    subscription_id = create(client, headers, recipient_url="https://example.com/x").get_json()["subscription_id"]
    store(app, subscription_id, "metadata", "gone")
    response = client.post(f"{PREFIX}/async_event/{subscription_id}/ping", headers=headers)
    assert response.status_code == 409 and "install its plug-in" in response.get_json()["message"]


def store(app: Flask, subscription_id: int, column: str, value: str) -> None:
    """Change a subscription's column behind the API's back."""
    with app.app_context():
        db.session.execute(
            text(f"UPDATE async_event_subscriber SET {column} = :v WHERE subscription_id = :i"),
            {"v": value, "i": subscription_id},
        )
        db.session.commit()


class RaisingNotifier:
    def notify(self, recipient: object, message: object) -> NotifyResult:
        raise ConnectionResetError("the plug-in fell over")


def test_ping_goes_through_the_delivery_checks_and_guard(app: Flask, client: FlaskClient) -> None:
    headers = token(app, "t", "sales")
    subscription_id = create(client, headers, recipient_url="https://example.com/x").get_json()["subscription_id"]
    url = f"{PREFIX}/async_event/{subscription_id}/ping"
    get_state(app).app_notifiers["raising"] = RaisingNotifier()
    store(app, subscription_id, "metadata", "raising")
    answer = client.post(url, headers=headers)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["success"] is False and answer.get_json()["error_class"] == "ConnectionResetError"
    assert "the plug-in fell over" in answer.get_json()["response_data"]
    store(app, subscription_id, "verification_token", "not-fernet")  # no key decrypts it
    refused = client.post(url, headers=headers)
    assert refused.status_code == 409 and "cannot decrypt a verification token" in refused.get_json()["message"]


@pytest.mark.parametrize(
    ("method", "url", "body", "where"),
    [
        ("get", f"{PREFIX}/async_events?event_name=%00&status=false", None, "event_name"),
        ("get", f"{PREFIX}/async_event_logs?q=a%00b", None, "q"),
        ("get", f"{PREFIX}/async_event_logs/%00", None, "uuid"),
        (
            "post",
            f"{PREFIX}/async_event",
            {"asyncEvent": {"event_name": "a\x00", "metadata": "http"}},
            "body.asyncEvent.event_name",
        ),
    ],
)
def test_a_nul_character_anywhere_is_a_400_naming_where(
    client: FlaskClient, sales: dict[str, str], method: str, url: str, body: Any, where: str
) -> None:
    response = getattr(client, method)(url, headers=sales, json=body)
    assert response.status_code == 400, response.get_data(True)
    assert response.get_json()["message"] == f"{where}: must not contain NUL characters"


def test_a_wrong_method_or_path_under_the_api_answers_json_and_the_host_keeps_its_pages(client: FlaskClient) -> None:
    wrong = client.patch(f"{PREFIX}/async_event/1")
    assert wrong.status_code == 405 and wrong.is_json
    assert wrong.get_json()["message"] == "PATCH is not allowed here; use DELETE, GET, HEAD, OPTIONS, PUT"
    assert wrong.headers["Allow"] == "DELETE, GET, HEAD, OPTIONS, PUT"
    unknown = client.get(f"{PREFIX}/no_such_route")
    assert unknown.status_code == 404 and unknown.is_json
    host = client.get("/no-such-page-of-the-host")
    assert host.status_code == 404 and not host.is_json  # the host's own error page


def test_a_body_not_sent_as_json_is_a_415_that_says_so(client: FlaskClient, sales: dict[str, str]) -> None:
    fields = {"event_name": "sales.order.created", "recipient_url": "https://example.com/", "metadata": "http"}
    body = json.dumps({"asyncEvent": fields})
    answer = client.post(f"{PREFIX}/async_event", data=body, content_type="text/plain", headers=sales)
    assert answer.status_code == 415
    message = "the body is text/plain: send it as JSON, with Content-Type: application/json"
    assert answer.get_json()["message"] == message
    assert client.get(f"{PREFIX}/async_events", headers=sales).get_json()["total_count"] == 0
