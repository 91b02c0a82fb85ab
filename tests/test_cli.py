"""``flask async-events ...`` as an operator uses it."""

from __future__ import annotations

import json
from functools import partial

from flask import Flask
from standardwebhooks import Webhook

from tests.conftest import AppEnv, Receiver
from tests.helpers import deliveries, place_order, states


def cli(app: Flask, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=["async-events", *args])
    assert result.exit_code == 0, result.output
    return result.output


def cli_error(app: Flask, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=["async-events", *args])
    assert result.exit_code != 0
    return result.output


def test_list_shows_events_and_notifiers(app: Flask) -> None:
    listing = json.loads(cli(app, "list", "--json"))
    names = [event["name"] for event in listing["events"]]
    assert "sales.order.created" in names and "customer.created" in names
    created = next(e for e in listing["events"] if e["name"] == "sales.order.created")
    assert created == {"name": "sales.order.created", "description": "An order was placed", "resources": ["sales"]}
    assert listing["notifiers"] == ["eventbridge", "http", "sqs"]
    assert listing["aliases"] == {"event_bridge": "eventbridge"}
    assert "sales.order.created  [sales]  An order was placed" in cli(app, "list")


def test_subscribe_publish_worker_status(app: Flask, receiver: Receiver) -> None:
    url = receiver.respond()
    created = json.loads(cli(app, "subscribe", "customer.*", url, "--json"))
    secret = created["verification_token"]
    assert secret.startswith("whsec_")

    assert cli(app, "publish", "customer.created", "--arg", "id=7").strip()
    status = json.loads(cli(app, "status", "--json"))
    assert status["pending_events"] == 1
    assert status["queues"]["event.trigger"]["queued"] == 1

    cli(app, "worker", "--burst")
    [request] = receiver.requests
    assert Webhook(secret).verify(request.body, request.headers) == {"data": {"id": 7}}
    status = json.loads(cli(app, "status", "--json"))
    assert status["deliveries"]["delivered"] == 1
    assert status["pending_events"] == 0 and status["oldest_undelivered_seconds"] == 0

    listing = json.loads(cli(app, "subscriptions", "--json"))
    assert listing[0]["event_name"] == "customer.*" and "verification_token" not in listing[0]


def test_cli_errors_are_messages_not_tracebacks(app: Flask) -> None:
    assert "is not defined" in cli_error(app, "publish", "nope.created")
    assert "missing a required argument" in cli_error(app, "publish", "customer.created")
    assert "not valid JSON" in cli_error(app, "publish", "customer.created", "--json-args", "{")
    assert "not a defined event" in cli_error(app, "subscribe", "nope", "https://example.com")
    assert "no delivery with uuid" in cli_error(app, "replay", "0000")
    assert "Traceback" not in cli_error(app, "publish", "customer.created", "--arg", "novalue")


def test_rate_limits_are_set_listed_changed_and_refused_with_a_reason(app: Flask) -> None:
    created = json.loads(cli(app, "subscribe", "customer.*", "https://example.com/x", "--rate-limit", "2", "--json"))
    subscription_id = str(created["subscription_id"])
    limit = partial(cli, app, "rate-limit", subscription_id)
    refused = partial(cli_error, app, "rate-limit", subscription_id)
    assert json.loads(cli(app, "subscriptions", "--json"))[0]["rate_limit"] == 2
    assert "at most 2/s" in cli(app, "subscriptions")
    assert "now have at most 0.5 deliveries per second" in limit("--per-second", "0.5")
    assert json.loads(cli(app, "subscriptions", "--json"))[0]["rate_limit"] == 0.5
    assert "rate_limit must be between" in refused("--per-second", "0")
    assert "not a number: 'fast'" in refused("--per-second", "fast")
    assert "no subscription 99; nothing was changed" in refused("99", "--per-second", "1")
    assert "rate_limit must be between" in cli_error(app, "subscribe", "x.*", "https://e.com", "--rate-limit", "-1")
    assert json.loads(cli(app, "subscriptions", "--json"))[0]["rate_limit"] == 0.5  # refusals changed nothing
    assert "now have no rate limit" in limit("--per-second", "none")
    assert json.loads(cli(app, "subscriptions", "--json"))[0]["rate_limit"] is None


def test_dead_letters_and_replay(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[])
    cli(app, "subscribe", "sales.order.created", receiver.respond("/x", [500, 200]), "--token", "secret")
    place_order(app)
    cli(app, "worker", "--burst")
    [letter] = json.loads(cli(app, "dead-letters", "--json"))
    assert letter["attempts"] == 1 and letter["last_response"] == "ok"
    cli(app, "replay", letter["uuid"])
    cli(app, "worker", "--burst")
    assert states(app) == ["delivered"]
    assert deliveries(app)[0].uuid == letter["uuid"]
    assert "No dead letters." in cli(app, "dead-letters")


def test_replaying_for_a_disabled_subscription_says_to_enable_it(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[])
    cli(app, "subscribe", "sales.order.created", receiver.respond("/x", [500]), "--token", "secret")
    place_order(app)
    cli(app, "worker", "--burst")
    cli(app, "disable", "1")
    assert "enable it before replaying" in cli_error(app, "replay", deliveries(app)[0].uuid)
    cli(app, "enable", "1")
    cli(app, "replay", deliveries(app)[0].uuid)


def test_db_commands(app: Flask) -> None:
    assert "current: 0009  head: 0009" in cli(app, "db", "current")
    assert "Database at revision 0009" in cli(app, "db", "upgrade")


def test_token_commands(app: Flask) -> None:
    created = json.loads(cli(app, "token", "create", "crm", "-r", "customers", "--json"))
    assert created["token"].startswith("fae_") and created["resources"] == ["customers"]
    assert "exists already" in cli_error(app, "token", "create", "crm")
    [listed] = json.loads(cli(app, "token", "list", "--json"))
    assert listed["name"] == "crm" and listed["revoked"] is False and created["token"] not in json.dumps(listed)
    assert "no token named 'nobody'" in cli_error(app, "token", "revoke", "nobody")
    cli(app, "token", "revoke", str(listed["id"]))
    assert json.loads(cli(app, "token", "list", "--json"))[0]["revoked"] is True


def test_enable_and_disable_name_ids_that_do_not_exist_and_change_nothing(app: Flask, receiver: Receiver) -> None:
    url = receiver.respond()
    cli(app, "subscribe", "customer.*", url)
    cli(app, "subscribe", "sales.*", url)
    assert "Enabled 2 subscription(s): 1, 2" in cli(app, "enable", "1", "2")
    said = cli_error(app, "disable", "1", "2", "999", "12345")
    assert "no subscription 999, 12345; nothing was changed" in said
    assert [s["status"] for s in json.loads(cli(app, "subscriptions", "--json"))] == [True, True]
    assert "no subscription 777" in cli_error(app, "disable", "777")
    assert "no subscription 3" in cli_error(app, "rate-limit", "3", "--per-second", "5")


def test_a_deleted_subscription_is_never_enabled_again_nor_delivered_to(app: Flask, receiver: Receiver) -> None:
    from tests.helpers import PREFIX, create, token

    auth = token(app, "shop", "sales")
    client = app.test_client()
    deleted = create(client, auth, recipient_url=receiver.respond("/deleted")).get_json()["subscription_id"]
    kept = create(client, auth, recipient_url=receiver.respond("/kept")).get_json()["subscription_id"]
    assert client.delete(f"{PREFIX}/async_event/{deleted}", headers=auth).status_code == 204
    said = cli_error(app, "enable", str(deleted))
    assert f"subscription {deleted} was deleted (subscribe again); nothing was changed" in said
    listing = json.loads(cli(app, "subscriptions", "--json"))
    assert [s["subscription_id"] for s in listing] == [kept]  # deleted ones are hidden
    everything = json.loads(cli(app, "subscriptions", "--all", "--json"))
    assert [(s["subscription_id"], s["deleted"], s["status"]) for s in everything] == [
        (deleted, True, False),
        (kept, False, True),
    ]
    place_order(app)
    cli(app, "worker", "--burst")
    assert [request.path for request in receiver.requests] == ["/kept"]
    assert len(deliveries(app)) == 1
