"""The portal over real HTTP sessions (Flask's test client keeps the portal's cookie): portal
links and their refusals, token logins that end when the token is revoked, what an owner can do,
and that nothing of another owner's is visible or reachable: by link, by id, by search, by CSV."""

from __future__ import annotations

import csv
import io
import re
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from flask_async_events.auth import create_token, revoke_token
from flask_async_events.errors import ConfigError
from flask_async_events.models import DeliveryAttempt, Subscription
from flask_async_events.portal.links import link_token, make_grant
from flask_async_events.portal.session import COOKIE
from tests.appfactory import db, events
from tests.conftest import AppEnv, Receiver, run_burst
from tests.helpers import PREFIX, form_csrf, log_in, place_order

PORTAL = "/async-events/portal"


def _link(app: Flask, owner: str, **options: Any) -> str:
    with app.test_request_context():
        return events.portal_link(owner=owner, **options)


def _enter(app: Flask, owner: str, **options: Any) -> FlaskClient:
    client = app.test_client()
    answer = client.get(_link(app, owner, **options))
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/subscriptions")
    return client


def _own(app: Flask, owner: str, url: str, event_name: str = "sales.order.created") -> int:
    with app.app_context():
        subscription = events.subscribe(event_name, url, verification_token="whsec_dGVzdHNlY3JldA==", owner=owner)
        db.session.commit()
        return subscription.subscription_id


@pytest.fixture
def shop(env: AppEnv, receiver: Receiver) -> tuple[Flask, dict[str, int]]:
    """Two customers with a subscription each, and a delivered order for both."""
    app = env.app(SECRET_KEY="portal-tests", ASYNC_EVENTS_RETRY_SCHEDULE=[])
    ids = {
        "customer:1": _own(app, "customer:1", receiver.respond("/one")),
        "customer:2": _own(app, "customer:2", receiver.respond("/two", [500])),
    }
    place_order(app, email="alice@example.com")
    run_burst(app)
    return app, ids


def test_a_portal_link_opens_a_session_for_its_owner_only(shop: tuple[Flask, dict[str, int]]) -> None:
    app, ids = shop
    link = _link(app, "customer:1")
    assert link.startswith("http://localhost/async-events/portal/enter?token=")
    client = _enter(app, "customer:1")
    page = client.get(f"{PORTAL}/subscriptions")
    assert page.status_code == 200
    assert f'data-subscription="{ids["customer:1"]}"'.encode() in page.data
    assert f'data-subscription="{ids["customer:2"]}"'.encode() not in page.data
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Content-Security-Policy"].endswith("; frame-ancestors 'self'")
    assert page.headers["X-Frame-Options"] == "SAMEORIGIN"
    cookie = client.get_cookie(COOKIE, path=PORTAL)
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"


def test_altered_and_expired_links_are_refused_with_a_page_that_says_so(shop: tuple[Flask, dict[str, int]]) -> None:
    app, _ = shop
    client = app.test_client()
    link = _link(app, "customer:1")
    token = link.split("token=")[1]
    altered = client.get(f"{PORTAL}/enter?token={token[:-2]}xx")
    assert altered.status_code == 403 and b"not valid" in altered.data
    other_owner = token.replace(
        token.split(".")[0], link_token("portal-tests", make_grant("customer:2", [], 60)).split(".")[0]
    )
    assert client.get(f"{PORTAL}/enter?token={other_owner}").status_code == 403
    with app.app_context():
        expired = link_token("portal-tests", make_grant("customer:1", [], 60, now=time.time() - 61))
    answer = client.get(f"{PORTAL}/enter?token={expired}")
    assert answer.status_code == 403 and b"has expired" in answer.data
    assert client.get(f"{PORTAL}/subscriptions").status_code == 302  # no session came of them
    forged = link_token("another-apps-key", make_grant("customer:1", [], 3600))
    assert client.get(f"{PORTAL}/enter?token={forged}").status_code == 403


def test_a_portal_link_opens_nothing_in_the_rest_api(shop: tuple[Flask, dict[str, int]]) -> None:
    app, _ = shop
    token = _link(app, "customer:1").split("token=")[1]
    answer = app.test_client().get(f"{PREFIX}/async_events", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401


def test_portal_link_arguments_are_checked(shop: tuple[Flask, dict[str, int]]) -> None:
    app, _ = shop
    for options, field in (
        ({"owner": ""}, "owner"),
        ({"owner": "x" * 256}, "owner"),
        ({"owner": "customer:1", "expires_in": 10}, "expires_in"),
        ({"owner": "customer:1", "expires_in": 8 * 24 * 3600}, "expires_in"),
        ({"owner": "customer:1", "resources": "sales"}, "resources"),
    ):
        with pytest.raises(ValueError, match=field):
            _link(app, **options)
    app.secret_key = None
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        _link(app, "customer:1")


def test_every_url_of_one_owner_is_a_404_for_another(shop: tuple[Flask, dict[str, int]]) -> None:
    """Every portal route that names a subscription or a delivery, read from the app's URL map (a
    route added later is covered too), with the other owner's id."""
    app, ids = shop
    theirs = ids["customer:2"]
    with app.app_context():
        their_uuid = db.session.scalar(select(DeliveryAttempt.uuid).where(DeliveryAttempt.subscription_id == theirs))
    assert their_uuid
    client = _enter(app, "customer:1")
    csrf = form_csrf(client.get(f"{PORTAL}/subscriptions/{ids['customer:1']}").data)
    tried = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("async_events_portal.") or not rule.arguments & {"subscription_id", "uuid"}:
            continue
        url = rule.rule.replace("<int:subscription_id>", str(theirs)).replace("<uuid>", their_uuid)
        for method in sorted((rule.methods or set()) & {"GET", "POST"}):
            form = {"csrf_token": csrf, "status": "disable", "since": "1h", "recipient_url": "http://127.0.0.1:9/"}
            answer = client.open(url, method=method, data=form if method == "POST" else None)
            assert answer.status_code == 404, (method, url)
            tried.append((method, rule.endpoint))
    assert len(tried) >= 11  # the nine subscription routes, the trace and its replay
    with app.app_context():
        untouched = db.session.get(Subscription, theirs)
        assert untouched is not None and untouched.status and untouched.deleted_at is None
        assert untouched.recipient_url.endswith("/two")


def test_search_and_csv_never_cross_owners(shop: tuple[Flask, dict[str, int]]) -> None:
    app, ids = shop
    client = _enter(app, "customer:1")
    theirs = client.get(f"{PORTAL}/logs", query_string={"q": f"subscription:{ids['customer:2']}"})
    assert theirs.status_code == 200 and b"0 attempt(s)" in theirs.data
    mine = client.get(f"{PORTAL}/logs", query_string={"q": "data.customer_email:alice@example.com"})
    assert b"1 attempt(s)" in mine.data
    rows = list(csv.DictReader(io.StringIO(client.get(f"{PORTAL}/logs.csv").get_data(as_text=True))))
    assert [row["subscription_id"] for row in rows] == [str(ids["customer:1"])]
    assert list(csv.DictReader(io.StringIO(client.get(f"{PORTAL}/logs.csv?q=status:500").get_data(as_text=True)))) == []
    listed = list(csv.DictReader(io.StringIO(client.get(f"{PORTAL}/subscriptions.csv").get_data(as_text=True))))
    assert [(row["subscription_id"], row["owner"]) for row in listed] == [(str(ids["customer:1"]), "customer:1")]
    assert all("verification_token" not in row for row in listed)


def test_a_bad_search_names_the_problem_and_the_csv_export_refuses_it(shop: tuple[Flask, dict[str, int]]) -> None:
    app, _ = shop
    client = _enter(app, "customer:1")
    answer = client.get(f"{PORTAL}/logs", query_string={"q": "status:[500 TO"})
    assert answer.status_code == 400 and b"the range at position 1 is not closed" in answer.data
    refused = client.get(f"{PORTAL}/logs.csv", query_string={"q": "status:[500 TO"}, follow_redirects=True)
    assert b"q: the range at position 1 is not closed" in refused.data


def test_an_owner_creates_pings_rotates_and_deletes_its_subscription(
    shop: tuple[Flask, dict[str, int]], receiver: Receiver
) -> None:
    app, _ = shop
    client = _enter(app, "customer:3", resources=["sales"])
    form = client.get(f"{PORTAL}/subscriptions/new")
    assert b"An order was placed" in form.data  # the catalogue, with descriptions
    csrf = form_csrf(form.data)
    refused = client.post(
        f"{PORTAL}/subscriptions/new",
        data={"csrf_token": csrf, "event_name": "sales.order.created", "recipient_url": "ftp://example.com/x"},
    )
    assert refused.status_code == 400 and b"recipient_url" in refused.data
    created = client.post(
        f"{PORTAL}/subscriptions/new",
        data={"csrf_token": csrf, "event_name": "sales.order.created", "recipient_url": receiver.respond("/three")},
    )
    secret = re.search(rb'id="new-secret".*?<code>(whsec_[^<]+)</code>', created.data, re.S)
    assert created.status_code == 200 and secret
    with app.app_context():
        mine = db.session.scalar(select(Subscription).where(Subscription.owner == "customer:3"))
        assert mine is not None and events.state().box.decrypt(mine.verification_token) == secret.group(1).decode()
        subscription_id = mine.subscription_id
    page = f"{PORTAL}/subscriptions/{subscription_id}"
    assert b"new-secret" not in client.get(page).data  # shown once
    pinged = client.post(f"{page}/ping", data={"csrf_token": csrf})
    assert b'id="ping-answer"' in pinged.data and b'class="ok">200</span>' in pinged.data
    assert any(request.path == "/three" for request in receiver.requests)
    rotated = client.post(f"{page}/rotate", data={"csrf_token": csrf, "grace": "1h"})
    assert b"New signing secret, shown this once" in rotated.data
    changed = client.post(f"{page}/edit", data={"csrf_token": csrf, "recipient_url": "http://", "metadata": "http"})
    assert b"recipient_url" in client.get(changed.headers["Location"]).data
    kept = client.post(f"{page}/delete", data={"csrf_token": csrf}, follow_redirects=True)
    assert b"Tick the box beside Delete to confirm." in kept.data  # nothing without the box ticked
    client.post(f"{page}/delete", data={"csrf_token": csrf, "confirm": "yes"})
    assert client.get(page).status_code == 404
    with app.app_context():
        assert db.session.get(Subscription, subscription_id).deleted_at is not None  # type: ignore[union-attr]


def test_an_owner_may_only_subscribe_to_events_its_resources_allow(shop: tuple[Flask, dict[str, int]]) -> None:
    app, _ = shop
    client = _enter(app, "customer:4")  # no resources
    form = client.get(f"{PORTAL}/subscriptions/new")
    assert b"sales.order.created" not in form.data and b"customer.created" in form.data
    refused = client.post(
        f"{PORTAL}/subscriptions/new",
        data={
            "csrf_token": form_csrf(form.data),
            "event_name": "sales.order.created",
            "recipient_url": "http://127.0.0.1:9/x",
        },
    )
    assert refused.status_code == 400 and b"isn&#39;t authorized to access sales" in refused.data


def test_forms_need_the_sessions_csrf_token(shop: tuple[Flask, dict[str, int]]) -> None:
    app, ids = shop
    client = _enter(app, "customer:1")
    answer = client.post(f"{PORTAL}/subscriptions/{ids['customer:1']}/delete", data={"csrf_token": "forged"})
    assert answer.status_code == 400
    with app.app_context():
        assert db.session.get(Subscription, ids["customer:1"]).deleted_at is None  # type: ignore[union-attr]


def test_a_token_login_ends_when_the_token_is_revoked(shop: tuple[Flask, dict[str, int]]) -> None:
    app, _ = shop
    with app.app_context():
        secret = create_token(db.session, "acme", resources=["sales"])
        admin = create_token(db.session, "ops", admin=True)
        db.session.commit()
    client = app.test_client()
    forged = client.post(f"{PORTAL}/login", data={"token": secret, "csrf_token": "from-another-site"})
    assert forged.status_code == 401 and b"The form expired" in forged.data
    assert b"admin token" in log_in(client, f"{PORTAL}/login", admin).data
    assert log_in(client, f"{PORTAL}/login", "fae_nope").status_code == 401
    assert log_in(client, f"{PORTAL}/login", secret).status_code == 302
    assert client.get(f"{PORTAL}/subscriptions").status_code == 200
    with app.app_context():
        revoke_token(db.session, "acme")
        db.session.commit()
    answer = client.get(f"{PORTAL}/subscriptions", follow_redirects=True)
    assert answer.request.path == f"{PORTAL}/login" and b"was revoked" in answer.data
    assert client.get(f"{PORTAL}/subscriptions").headers["Location"] == f"{PORTAL}/login"  # the cookie is gone


def test_logging_out_ends_the_session(shop: tuple[Flask, dict[str, int]]) -> None:
    app, ids = shop
    client = _enter(app, "customer:1")
    csrf = form_csrf(client.get(f"{PORTAL}/subscriptions").data)
    client.post(f"{PORTAL}/logout", data={"csrf_token": csrf})
    assert client.get(f"{PORTAL}/subscriptions/{ids['customer:1']}").status_code == 302


def test_an_embedded_portal_names_its_framers_and_sends_cookies_across_sites(env: AppEnv) -> None:
    app = env.app(SECRET_KEY="portal-tests", ASYNC_EVENTS_PORTAL_FRAME_ANCESTORS="https://shop.example.com self")
    client = _enter(app, "customer:1")
    page = client.get(f"{PORTAL}/subscriptions")
    assert page.headers["Content-Security-Policy"].endswith("; frame-ancestors https://shop.example.com 'self'")
    assert "X-Frame-Options" not in page.headers
    cookie = client.get_cookie(COOKIE, path=PORTAL)
    assert cookie is not None and cookie.secure and cookie.same_site == "None"


def test_bad_portal_settings_fail_at_start_up_naming_the_key(env: AppEnv) -> None:
    with pytest.raises(ConfigError, match=re.escape("ASYNC_EVENTS_PORTAL_FRAME_ANCESTORS: 'https://a.com;'")):
        env.app(ASYNC_EVENTS_PORTAL_FRAME_ANCESTORS="https://a.com; script-src *")
    with pytest.raises(ConfigError, match="ASYNC_EVENTS_PORTAL_URL"):
        env.app(ASYNC_EVENTS_PORTAL_FRAME_ANCESTORS=None, ASYNC_EVENTS_PORTAL_URL="portal")


def test_without_a_secret_key_the_portal_says_what_it_needs(env: AppEnv) -> None:
    app = env.app()
    app.secret_key = None
    answer = app.test_client().get(f"{PORTAL}/subscriptions")
    assert answer.status_code == 503 and b"SECRET_KEY" in answer.data


def test_the_portal_can_be_turned_off(env: AppEnv) -> None:
    app = env.app(SECRET_KEY="portal-tests", ASYNC_EVENTS_PORTAL_URL="")
    assert app.test_client().get(f"{PORTAL}/login").status_code == 404
    with pytest.raises(ConfigError, match="ASYNC_EVENTS_PORTAL_URL is empty"):
        _link(app, "customer:1")
