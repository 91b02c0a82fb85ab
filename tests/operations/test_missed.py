"""Recovering what a subscription missed: disabled for 50 events, re-enabled, ``recover --missed``
delivers exactly those 50, with a dry-run count first; through the REST API too."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from flask import Flask

from flask_async_events.auth import create_token
from tests.appfactory import db, events
from tests.conftest import AppEnv, Receiver, run_burst
from tests.helpers import PREFIX, create, deliveries, log_in, next_second, publish, subscribe, token


def publish_many(app: Flask, name: str, ids: range) -> None:
    with app.app_context():
        for number in ids:
            events.publish(name, payload={"id": number, "total": number})
        db.session.commit()


def ids_at(receiver: Receiver, path: str) -> list[int]:
    return sorted(json.loads(request.body)["data"]["id"] for request in receiver.at(path))


def test_recover_missed_delivers_exactly_what_a_disabled_subscription_missed(env: AppEnv, receiver: Receiver) -> None:
    app = env.app()
    runner = app.test_cli_runner()
    url = receiver.respond("/missed")
    runner.invoke(args=["async-events", "subscribe", "echo.event", url, "--filter", "data.total:<1000"])
    next_second()
    publish_many(app, "echo.event", range(5))  # received before the outage
    run_burst(app)
    since = (
        datetime.now(UTC) - timedelta(seconds=1)
    ).isoformat()  # whole seconds in MySQL; those before have deliveries
    runner.invoke(args=["async-events", "disable", "1"])
    publish_many(app, "echo.event", range(100, 150))  # fifty missed while disabled
    publish_many(app, "echo.event", range(5000, 5003))  # also missed, but its filter leaves them out
    publish(app, "sales.order.shipped", id=1)  # another event: never its business
    run_burst(app)
    runner.invoke(args=["async-events", "enable", "1"])
    publish_many(app, "echo.event", range(200, 202))  # received after it came back
    run_burst(app)
    assert ids_at(receiver, "/missed") == [*range(5), 200, 201]

    recover = ["async-events", "recover", "--subscription", "1", "--since", since, "--missed"]
    dry = runner.invoke(args=[*recover, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "Would deliver 50 missed event(s), of 53 published since then that it never received." in dry.output
    assert ids_at(receiver, "/missed") == [*range(5), 200, 201]  # a dry run sends nothing

    result = runner.invoke(args=[*recover, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["missed"] == 50 and report["count"] == 0 and len(report["uuids"]) == 50
    run_burst(app)
    assert ids_at(receiver, "/missed") == [*range(5), *range(100, 150), 200, 201]
    again = json.loads(
        runner.invoke(
            args=["async-events", "recover", "--subscription", "1", "--since", since, "--missed", "--json"]
        ).output
    )
    assert again["missed"] == 0  # nothing twice
    assert len(deliveries(app)) == 57


def test_the_rest_api_recovers_missed_events_of_the_callers_subscription_only(env: AppEnv, receiver: Receiver) -> None:
    app = env.app()
    client, shop = app.test_client(), token(app, "shop", admin=True)
    created = create(client, shop, event_name="echo.event", recipient_url=receiver.respond("/rest-missed")).get_json()
    path = f"{PREFIX}/async_event/{created['subscription_id']}"
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()  # MySQL keeps whole seconds
    next_second()
    client.put(path, json={"asyncEvent": {"status": False}}, headers=shop)
    publish_many(app, "echo.event", range(10))
    run_burst(app)
    disabled = client.post(f"{path}/recover", json={"since": since, "missed": True}, headers=shop)
    assert disabled.status_code == 409 and "is disabled" in disabled.get_json()["message"]
    client.put(path, json={"asyncEvent": {"status": True}}, headers=shop)
    other = token(app, "someone-else", "sales")
    assert client.post(f"{path}/recover", json={"since": since, "missed": True}, headers=other).status_code == 404
    answer = client.post(f"{path}/recover", json={"since": since, "missed": True}, headers=shop)
    assert answer.status_code == 202 and answer.get_json()["total"] == 10 and answer.get_json()["status"] == "queued"
    run_burst(app)
    assert ids_at(receiver, "/rest-missed") == list(range(10))
    progress = client.get(f"{PREFIX}/async_event_jobs/{answer.get_json()['job']}", headers=shop).get_json()
    assert (progress["status"], progress["done"], progress["sent"]) == ("finished", 10, 10)
    plain = client.post(f"{path}/recover", json={"since": since}, headers=shop).get_json()
    assert (plain["total"], plain["status"]) == (0, "queued")  # dead letters only: none


def test_the_admin_pages_recover_missed_events(env: AppEnv, receiver: Receiver) -> None:
    app = env.app()
    subscription_id = subscribe(app, receiver.respond("/admin-missed"), event_name="echo.event")
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    next_second()
    app.test_cli_runner().invoke(args=["async-events", "disable", str(subscription_id)])
    publish_many(app, "echo.event", range(3))
    run_burst(app)
    app.test_cli_runner().invoke(args=["async-events", "enable", str(subscription_id)])
    with app.app_context():
        admin = create_token(db.session, "on-call", admin=True)
        db.session.commit()
    client = app.test_client()
    prefix = "/async-events/admin"
    log_in(client, f"{prefix}/login", admin)
    client.get(f"{prefix}/dead-letters")
    with client.session_transaction() as session:
        csrf = session["async_events_csrf"]
    form = {"csrf_token": csrf, "subscription_id": str(subscription_id), "since": since, "missed": "1"}
    started = client.post(f"{prefix}/dead-letters/recover", data=form)
    assert started.status_code == 302 and "/async-events/admin/jobs/" in started.location
    page = client.get(started.location)
    assert b"Recovering subscription 1" in page.data and b"0 of 3 examined" in page.data
    assert b'http-equiv="refresh"' in page.data  # it follows the job while it runs
    run_burst(app)
    assert ids_at(receiver, "/admin-missed") == [0, 1, 2]
    page = client.get(started.location)
    assert b"3 of 3 examined" in page.data and b"3 deliveries replayed or made" in page.data
    assert b'http-equiv="refresh"' not in page.data
