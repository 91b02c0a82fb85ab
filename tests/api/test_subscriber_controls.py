"""What subscribers control through the REST API and the CLI: signing-secret rotation with a grace
period (verified with the ``standardwebhooks`` library, as a receiver would), and extra request
headers (checked, masked, encrypted, never logged)."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from flask_async_events.signing import legacy_signature, signing_key
from tests.appfactory import db
from tests.conftest import AppEnv, Receiver, run_burst
from tests.helpers import MAGENTO_TOKEN, PREFIX, attempts, create, deliveries, place_order, token

OLD = MAGENTO_TOKEN


def raw_columns(app: Flask) -> str:
    """Every stored secret column of every subscription, as the database holds them."""
    with app.app_context():
        rows = db.session.execute(
            text("SELECT verification_token, previous_tokens, headers FROM async_event_subscriber")
        ).all()
        return json.dumps([list(row) for row in rows])


def verifies(secret: str, request: Any) -> bool:
    """Whether a receiver holding ``secret`` accepts the delivery (Standard Webhooks)."""
    key = secret if secret.startswith("whsec_") else secret.encode()
    try:
        Webhook(key).verify(request.body, request.headers)
    except WebhookVerificationError:
        return False
    return True


def rotate(client: FlaskClient, auth: dict[str, str], subscription_id: int, **body: Any) -> Any:
    return client.post(f"{PREFIX}/async_event/{subscription_id}/rotate_secret", json=body or None, headers=auth)


# --- rotation -----------------------------------------------------------------------------------


@pytest.mark.one_database
def test_during_the_grace_period_both_secrets_verify_and_after_it_only_the_new(
    env: AppEnv, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = env.app()
    client, auth = app.test_client(), token(app, "sales-app", "sales")
    url = receiver.respond("/rotated")
    subscription_id = create(client, auth, recipient_url=url, verification_token=OLD).get_json()["subscription_id"]

    answer = rotate(client, auth, subscription_id, grace_period=8)
    assert answer.status_code == 200, answer.get_json()
    new = answer.get_json()["verification_token"]
    assert new.startswith("whsec_") and new != OLD
    place_order(app)
    run_burst(app)
    during = receiver.at("/rotated")[-1]
    assert verifies(new, during) and verifies(OLD, during)  # a receiver holding either accepts it
    assert during.headers["Webhook-Signature"].count("v1,") == 2
    assert during.headers["X-Magento-Signature"] == legacy_signature(signing_key(new), during.body)

    ends = datetime.fromisoformat(answer.get_json()["previous_valid_until"]).timestamp()
    time.sleep(max(0.0, ends - time.time()) + 0.5)  # the grace period ends
    place_order(app)
    run_burst(app)
    after = receiver.at("/rotated")[-1]
    assert verifies(new, after) and not verifies(OLD, after)
    assert after.headers["Webhook-Signature"].count("v1,") == 1

    # The old secret is never shown again, logged, or stored in clear.
    shown = [
        client.get(f"{PREFIX}/async_event/{subscription_id}", headers=auth).get_data(True),
        client.get(f"{PREFIX}/async_events", headers=auth).get_data(True),
        answer.get_data(True),
    ]
    assert not any(OLD in response for response in shown)
    assert OLD not in caplog.text and new not in caplog.text
    assert OLD not in raw_columns(app) and new not in raw_columns(app)


def test_a_rotation_keeps_ten_previous_secrets_at_most_newest_first(env: AppEnv, receiver: Receiver) -> None:
    app = env.app()
    client, auth = app.test_client(), token(app, "sales-app", "sales")
    url = receiver.respond("/many")
    subscription_id = create(client, auth, recipient_url=url, verification_token="secret-0").get_json()[
        "subscription_id"
    ]
    for number in range(1, 13):
        assert rotate(client, auth, subscription_id, verification_token=f"secret-{number}").status_code == 200
    place_order(app)
    run_burst(app)
    [request] = receiver.at("/many")
    assert request.headers["Webhook-Signature"].count("v1,") == 11  # the current one and ten before it
    assert verifies("secret-12", request) and verifies("secret-2", request) and not verifies("secret-1", request)
    first = request.headers["Webhook-Signature"].split()[0]
    assert Webhook(b"secret-12").sign(request.headers["Webhook-Id"], _stamp(request), request.body.decode()) == first


def _stamp(request: Any) -> datetime:
    return datetime.fromtimestamp(int(request.headers["Webhook-Timestamp"]), tz=UTC)


def test_rotation_refuses_bad_input_by_name_and_keeps_the_secret(env: AppEnv, receiver: Receiver) -> None:
    app = env.app()
    client, auth = app.test_client(), token(app, "sales-app", "sales")
    subscription_id = create(client, auth, recipient_url=receiver.respond("/kept"), verification_token=OLD).get_json()[
        "subscription_id"
    ]
    refusals: list[tuple[dict[str, Any], str]] = [
        ({"grace_period": 8 * 86400}, "grace_period"),
        ({"grace_period": -1}, "grace_period"),
        ({"verification_token": ""}, "verification_token"),
        ({"verification_token": OLD}, "verification_token"),
        ({"secret": "x"}, "secret"),
    ]
    for body, field in refusals:
        answer = rotate(client, auth, subscription_id, **body)
        assert answer.status_code == 400 and field in answer.get_data(True), (body, answer.get_json())
    other = token(app, "crm-app", "sales")  # another owner: the subscription does not exist for it
    assert rotate(client, other, subscription_id).status_code == 404
    place_order(app)
    run_burst(app)
    [request] = receiver.at("/kept")
    assert verifies(OLD, request) and request.headers["Webhook-Signature"].count("v1,") == 1


def test_the_cli_rotates_with_a_grace_period(env: AppEnv, receiver: Receiver) -> None:
    app = env.app()
    runner = app.test_cli_runner()
    runner.invoke(args=["async-events", "subscribe", "sales.order.created", receiver.respond("/cli"), "--token", OLD])
    result = runner.invoke(args=["async-events", "rotate-secret", "1", "--grace", "2h", "--json"])
    assert result.exit_code == 0, result.output
    rotation = json.loads(result.output)
    assert rotation["verification_token"].startswith("whsec_")
    valid_until = rotation["previous_valid_until"]
    assert valid_until > time.strftime("%Y-%m-%dT%H", time.gmtime(time.time() + 7000))
    bad = runner.invoke(args=["async-events", "rotate-secret", "1", "--grace", "forever"])
    assert bad.exit_code != 0 and "--grace" in bad.output and "is not a duration" in bad.output
    missing = runner.invoke(args=["async-events", "rotate-secret", "99"])
    assert missing.exit_code != 0 and "no subscription 99 (" in missing.output
    place_order(app)
    run_burst(app)
    [request] = receiver.at("/cli")
    assert verifies(OLD, request) and verifies(rotation["verification_token"], request)


# --- headers ------------------------------------------------------------------------------------


def test_headers_arrive_are_masked_and_never_logged_or_stored_in_clear(
    env: AppEnv, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = env.app()
    client, auth = app.test_client(), token(app, "sales-app", "sales")
    url = receiver.respond("/with-headers")
    headers = {
        "Authorization": "Bearer tenant-credential-42",
        "Accept-Language": "de",
        "X-Api-Key": "k-991",
        "Cookie": "session=c-5150",  # no secret-sounding word in these two names: masked all the same
        "X-Auth": "xa-77",
    }
    created = create(client, auth, recipient_url=url, verification_token=MAGENTO_TOKEN, headers=headers)
    assert created.status_code == 200, created.get_json()
    subscription_id = created.get_json()["subscription_id"]
    masked = {
        "Authorization": "********",
        "Accept-Language": "de",  # a harmless name: shown
        "X-Api-Key": "********",
        "Cookie": "********",
        "X-Auth": "********",
    }
    assert created.get_json()["headers"] == masked
    place_order(app)
    run_burst(app)
    [request] = receiver.at("/with-headers")
    assert request.headers["Authorization"] == "Bearer tenant-credential-42"
    assert request.headers["Accept-Language"] == "de" and request.headers["X-Api-Key"] == "k-991"
    assert request.headers["Cookie"] == "session=c-5150" and request.headers["X-Auth"] == "xa-77"
    assert verifies(MAGENTO_TOKEN, request)

    assert client.get(f"{PREFIX}/async_event/{subscription_id}", headers=auth).get_json()["headers"] == masked
    # A client that sends back what it read keeps the stored credential; changed values change.
    changed = {"Authorization": "********", "Accept-Language": "fr"}
    answer = client.put(
        f"{PREFIX}/async_event/{subscription_id}", json={"asyncEvent": {"headers": changed}}, headers=auth
    )
    assert answer.status_code == 200 and answer.get_json()["headers"] == {
        "Authorization": "********",
        "Accept-Language": "fr",
    }
    place_order(app)
    run_burst(app)
    second = receiver.at("/with-headers")[-1]
    assert (
        second.headers["Authorization"] == "Bearer tenant-credential-42" and second.headers["Accept-Language"] == "fr"
    )
    assert "X-Api-Key" not in second.headers  # the set was replaced

    for secret in ("tenant-credential-42", "k-991", "c-5150", "xa-77"):
        assert secret not in caplog.text
    assert "tenant-credential-42" not in raw_columns(app)
    listing = client.get(f"{PREFIX}/async_events", headers=auth).get_data(True)
    assert "tenant-credential-42" not in listing


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Content-Type": "text/plain"}, "'Content-Type' is set by flask-async-events"),
        ({"webhook-id": "x"}, "'webhook-id' is set by flask-async-events"),
        ({"X-Magento-Signature": "x"}, "'X-Magento-Signature' is set by flask-async-events"),
        ({"x-async-events-event": "x"}, "'x-async-events-event' is set by flask-async-events"),
        ({"Host": "evil.example"}, "'Host' is set by flask-async-events"),
        ({"Transfer-Encoding": "chunked"}, "'Transfer-Encoding' is set by flask-async-events"),
        ({"bad name": "x"}, "'bad name' is not a header name"),
        ({"X-Injected": "a\r\nHost: evil.example"}, "the value of 'X-Injected' must be text without line breaks"),
        ({"X-Long": "v" * 1025}, "the value of 'X-Long' is longer than 1024 bytes"),
        ({f"X-H{i}": "v" for i in range(21)}, "at most 20 headers, got 21"),
        ({"X-Tenant": "a", "x-tenant": "b"}, "'x-tenant' is given twice"),
        ({"X-Secret": "********"}, "'X-Secret' is ********, a masked value, but holds none to keep"),
    ],
)
def test_bad_headers_are_refused_by_name(app: Flask, headers: dict[str, str], message: str) -> None:
    client, auth = app.test_client(), token(app, "sales-app", "sales")
    answer = create(client, auth, recipient_url="https://example.com/hook", headers=headers)
    assert answer.status_code == 400 and message in answer.get_json()["message"], answer.get_json()
    assert client.get(f"{PREFIX}/async_events", headers=auth).get_json()["total_count"] == 0  # nothing stored


def test_headers_are_refused_for_a_notifier_that_sends_none(app: Flask) -> None:
    client, auth = app.test_client(), token(app, "sales-app", admin=True)  # an owner may not use the host's bus
    bus = "arn:aws:events:eu-west-1:123456789012:event-bus/orders"
    answer = create(client, auth, recipient_url=bus, metadata="eventbridge", headers={"X-Tenant": "acme"})
    assert (
        answer.status_code == 400
        and "headers: a 'eventbridge' subscription sends no request headers" in (answer.get_json()["message"])
    )
    created = create(client, auth, recipient_url="https://example.com/hook", headers={"X-Tenant": "acme"}).get_json()
    change: dict[str, dict[str, Any]] = {"asyncEvent": {"metadata": "eventbridge", "recipient_url": bus}}
    answer = client.put(f"{PREFIX}/async_event/{created['subscription_id']}", json=change, headers=auth)
    assert answer.status_code == 400 and "sends no request headers" in answer.get_json()["message"]
    change["asyncEvent"]["headers"] = None  # cleared in the same change: allowed
    answer = client.put(f"{PREFIX}/async_event/{created['subscription_id']}", json=change, headers=auth)
    assert answer.status_code == 200 and answer.get_json()["headers"] == {}


def test_the_cli_sets_shows_and_removes_headers(env: AppEnv, receiver: Receiver) -> None:
    app = env.app()
    runner = app.test_cli_runner()
    url = receiver.respond("/cli-headers")
    result = runner.invoke(
        args=[
            "async-events",
            "subscribe",
            "sales.order.created",
            url,
            "--header",
            "X-Token: t-1",
            "--header",
            "Accept-Language: de",
        ]
    )
    assert result.exit_code == 0, result.output
    shown = runner.invoke(args=["async-events", "headers", "1", "--json"])
    assert json.loads(shown.output) == {"X-Token": "********", "Accept-Language": "de"}
    changed = runner.invoke(args=["async-events", "headers", "1", "--set", "X-B: 2", "--remove", "accept-language"])
    assert changed.exit_code == 0 and changed.output.splitlines() == ["X-Token: ********", "X-B: ********"]
    refused = runner.invoke(args=["async-events", "headers", "1", "--set", "Host: evil.example"])
    assert refused.exit_code != 0 and "'Host' is set by flask-async-events" in refused.output
    malformed = runner.invoke(args=["async-events", "headers", "1", "--set", "no colon"])
    assert malformed.exit_code != 0 and "--set" in malformed.output and "write it as 'Name: value'" in malformed.output
    place_order(app)
    run_burst(app)
    [request] = receiver.at("/cli-headers")
    assert (
        request.headers["X-Token"] == "t-1"
        and request.headers["X-B"] == "2"
        and "Accept-Language" not in request.headers
    )
    cleared = runner.invoke(args=["async-events", "headers", "1", "--clear"])
    assert cleared.output.strip() == "Subscription 1 sends no extra headers"


def test_headers_that_no_longer_decrypt_hold_the_delivery_back_instead_of_sending_without_them(
    env: AppEnv, receiver: Receiver
) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[60])
    client, auth = app.test_client(), token(app, "sales-app", "sales")
    url = receiver.respond("/lost-key")
    create(client, auth, recipient_url=url, headers={"Authorization": "Bearer tenant-credential-42"})
    with app.app_context():  # sealed with a key this app no longer has
        db.session.execute(text("UPDATE async_event_subscriber SET headers = 'gAAAAABnot-a-fernet-token'"))
        db.session.commit()
    place_order(app)
    run_burst(app)
    assert receiver.at("/lost-key") == []  # never sent without its credential
    [attempt] = attempts(app)
    assert attempt.error_class == "SecretError" and "ASYNC_EVENTS_ENCRYPTION_KEYS" in attempt.response_data
    assert [d.state for d in deliveries(app)] == ["retrying"]  # fixable: the key can be put back
