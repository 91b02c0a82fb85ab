"""The admin pages in headless Chromium (Debian's, driven by Playwright): log in, search the log,
open a trace, replay and see the new attempt, mass-disable subscriptions, set a rate limit, bulk-retry dead letters.
Screenshots go to ``test-output/screenshots``. Forms without a CSRF token are refused."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import select
from standardwebhooks import Webhook

from flask_async_events.auth import create_token
from flask_async_events.models import Subscription
from tests.appfactory import db
from tests.browser import CHROMIUM, CHROMIUM_FLAGS, SCREENSHOTS, live_server, need_browser
from tests.conftest import AppEnv, Receiver, run_burst
from tests.helpers import MAGENTO_TOKEN, attempts, log_in, place_order, states, subscribe


@pytest.fixture
def served(env: AppEnv, receiver: Receiver) -> Iterator[tuple[Flask, str, str]]:
    """The shop on a live server: two orders dead at a flaky endpoint, one delivered, two more
    subscriptions to disable; and an admin token."""
    need_browser()
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[])
    subscribe(app, receiver.respond("/ok"))
    subscribe(app, receiver.respond("/flaky", [500, 500, 200]))
    subscribe(app, receiver.respond("/crm"), event_name="customer.created")
    subscribe(app, receiver.respond("/erp"), event_name="customer.created")
    place_order(app, email="first@example.com")
    place_order(app, email="second@example.com")
    run_burst(app)
    with app.app_context():
        secret = create_token(db.session, "on-call", admin=True)
        db.session.commit()
    with live_server(app) as root:
        yield app, f"{root}/async-events/admin", secret


def test_an_operator_finds_replays_disables_and_retries_in_the_browser(served: tuple[Flask, str, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    app, base, secret = served
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})

        # Log in: the log page sends a newcomer to the login form, and back after it.
        page.goto(f"{base}/logs")
        page.fill("#token", "not-a-token")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_contain_text("not valid")
        page.fill("#token", secret)
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("h1")).to_have_text("Attempt log")

        # Search: one query answers "what happened to the order of first@example.com?"
        page.fill("input[name=q]", 'data.customer_email:"first@example.com" AND status:500')
        page.get_by_role("button", name="Search").click()
        expect(page.locator("text=1 attempt(s)")).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / "attempt-log.png"), full_page=True)
        page.fill("input[name=q]", "status:[500 TO")
        page.get_by_role("button", name="Search").click()
        expect(page.get_by_role("alert")).to_contain_text("the range at position 1 is not closed")

        # Open the trace of the dead delivery and replay it: the new attempt shows up.
        page.fill("input[name=q]", 'data.customer_email:"first@example.com" AND status:500')
        page.get_by_role("button", name="Search").click()
        page.locator("table a").first.click()
        expect(page.locator("h1#status")).to_have_text("Dead Lettered")
        page.get_by_role("button", name="Replay").click()
        expect(page.get_by_role("status")).to_contain_text("Sent again")
        run_burst(app)  # the flaky endpoint is back: 200
        page.reload()
        expect(page.locator("#attempts tr")).to_have_count(3)  # a header and two attempts
        expect(page.locator("h1#status")).to_have_text("Delivered with 1 retry")
        page.screenshot(path=str(SCREENSHOTS / "trace.png"), full_page=True)

        # Mass-disable the two customer subscriptions.
        page.get_by_role("link", name="Subscriptions").click()
        for row in page.locator("tr", has_text="customer.created").all():
            row.locator("input[type=checkbox]").check()
        page.get_by_role("button", name="Disable selected").click()
        expect(page.get_by_role("status")).to_contain_text("Disabled 2 subscription(s)")
        with app.app_context():
            disabled = db.session.scalars(select(Subscription.event_name).where(Subscription.status.is_(False)))
            assert sorted(disabled) == ["customer.created", "customer.created"]

        # Limit the order endpoint to 5 deliveries a second; a value that is not a rate is refused.
        order_row = page.locator("tr", has_text="/ok")
        order_row.locator("input[type=checkbox]").check()
        page.fill("input[name=rate_limit]", "fast")
        page.get_by_role("button", name="Set rate limit").click()
        expect(page.get_by_role("status")).to_contain_text("rate_limit must be a number or blank, got 'fast'")
        order_row.locator("input[type=checkbox]").check()
        page.fill("input[name=rate_limit]", "5")
        page.get_by_role("button", name="Set rate limit").click()
        expect(page.get_by_role("status")).to_contain_text("1 subscription(s) now have at most 5 deliveries per second")
        expect(order_row.locator("td.rate")).to_have_text("5/s")
        with app.app_context():
            limits = db.session.scalars(select(Subscription.rate_limit).order_by(Subscription.subscription_id))
            assert list(limits) == [5.0, None, None, None]

        # Bulk-retry the remaining dead letter.
        page.get_by_role("link", name="Dead letters").click()
        page.locator("input[name=uuids]").first.check()
        page.screenshot(path=str(SCREENSHOTS / "dead-letters.png"), full_page=True)
        page.get_by_role("button", name="Retry selected").click()
        expect(page.get_by_role("status")).to_contain_text("Replaying 1 dead letter(s)")
        run_burst(app)
        assert sorted(states(app)) == ["delivered"] * 4
        page.get_by_role("link", name="Queue health").click()
        expect(page.locator("h1")).to_have_text("Queue health")
        # The charts, drawn on the server: this hour's bar holds every attempt made in this test.
        hour = page.locator("svg.chart g.hour").last
        logged = attempts(app)
        assert int(hour.get_attribute("data-succeeded") or -1) == sum(a.success for a in logged)
        assert int(hour.get_attribute("data-failed") or -1) == sum(not a.success for a in logged)
        expect(page.locator("svg.chart").first).to_have_attribute("aria-label", re.compile("succeeded and"))
        page.screenshot(path=str(SCREENSHOTS / "health.png"), full_page=True)
        page.get_by_role("link", name="last 7 days").click()
        expect(page.locator("svg.chart").first.locator("g.hour")).to_have_count(7 * 24)
        browser.close()


def test_an_operator_sets_headers_and_a_filter_and_rotates_a_secret_in_the_browser(
    served: tuple[Flask, str, str], receiver: Receiver
) -> None:
    from playwright.sync_api import expect, sync_playwright

    app, base, secret = served
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{base}/subscriptions/1")
        page.fill("#token", secret)
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("h1")).to_have_text("Subscription 1")

        # Headers: one a credential (masked once saved), one plain; a reserved name is refused.
        page.fill("textarea[name=headers]", "Host: evil.example")
        page.get_by_role("button", name="Save headers").click()
        expect(page.get_by_role("status")).to_contain_text("'Host' is set by flask-async-events")
        page.fill("textarea[name=headers]", "Authorization: Bearer shop-42\nX-Request-Source: acme")
        page.get_by_role("button", name="Save headers").click()
        expect(page.get_by_role("status")).to_contain_text("Saved 2 header(s).")
        expect(page.locator("textarea[name=headers]")).to_have_value(
            "Authorization: ********\nX-Request-Source: acme\n"
        )
        page.get_by_role("button", name="Save headers").click()  # saved again as shown: the credential stays

        # A filter: one that cannot be read is refused with its position; a good one is kept.
        page.fill("input[name=filter]", "data.total:>=")
        page.get_by_role("button", name="Save filter").click()
        expect(page.get_by_role("status")).to_contain_text("filter: data.total: >= needs a value (position 1)")
        page.fill("input[name=filter]", "data.customer_email:*@example.com")
        page.get_by_role("button", name="Save filter").click()
        expect(page.get_by_role("status")).to_contain_text("Filter saved.")
        expect(page.locator("input[name=filter]")).to_have_value("data.customer_email:*@example.com")

        # Rotate: the new secret is shown once; both sign for the grace period.
        page.get_by_role("button", name="Rotate secret").click()
        new_secret = page.locator("#new-secret code").inner_text()
        assert new_secret.startswith("whsec_")
        page.screenshot(path=str(SCREENSHOTS / "subscription.png"), full_page=True)
        page.goto(f"{base}/subscriptions/1")  # shown once: never again
        expect(page.locator("#new-secret")).to_have_count(0)
        expect(page.locator("dd", has_text="the previous secret also signs until")).to_be_visible()
        browser.close()
    place_order(app)
    run_burst(app)
    request = receiver.at("/ok")[-1]
    assert request.headers["Authorization"] == "Bearer shop-42" and request.headers["X-Request-Source"] == "acme"
    Webhook(new_secret).verify(request.body, request.headers)
    Webhook(MAGENTO_TOKEN.encode()).verify(request.body, request.headers)


def test_an_operator_creates_edits_and_exports_in_the_browser(
    served: tuple[Flask, str, str], receiver: Receiver
) -> None:
    from playwright.sync_api import expect, sync_playwright

    app, base, secret = served
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
        page.goto(f"{base}/subscriptions")
        page.fill("#token", secret)
        page.get_by_role("button", name="Log in").click()

        # Create one for a customer: a URL the SSRF policy refuses is shown, the form keeps its values.
        page.get_by_role("link", name="New subscription").click()
        expect(page.locator("#events")).to_contain_text("An order was placed")
        page.fill("#event_name", "sales.order.created")
        page.fill("#recipient_url", "http://169.254.169.254/latest/meta-data")
        page.fill("#owner", "customer:42")
        page.get_by_role("button", name="Create subscription").click()
        expect(page.get_by_role("alert")).to_contain_text("recipient_url")
        expect(page.locator("#owner")).to_have_value("customer:42")
        page.fill("#recipient_url", receiver.respond("/customer-42"))
        page.get_by_role("button", name="Create subscription").click()
        expect(page.locator("#new-secret code")).to_contain_text("whsec_")
        with app.app_context():
            created = db.session.scalar(select(Subscription).where(Subscription.owner == "customer:42"))
            assert created is not None and created.event_name == "sales.order.created"

        # Edit it: a bad rate is refused naming the field; a new URL and rate are kept.
        page.fill("input[name=rate_limit]", "0")
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.get_by_role("status")).to_contain_text("rate_limit must be between")
        page.fill("input[name=recipient_url]", receiver.respond("/customer-42-v2"))
        page.fill("input[name=rate_limit]", "2.5")
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.get_by_role("status")).to_contain_text("at most 2.5 deliveries per second")
        expect(page.locator("#recipient")).to_contain_text("/customer-42-v2")

        # Download the subscriptions and the log as CSV.
        page.get_by_role("link", name="Subscriptions").click()
        with page.expect_download() as download:
            page.get_by_role("link", name="Download CSV").click()
        exported = download.value.path().read_text()
        assert "customer:42" in exported and "/customer-42-v2" in exported and "whsec_" not in exported
        page.get_by_role("link", name="Attempt log").click()
        page.fill("input[name=q]", "status:500")
        page.get_by_role("button", name="Search").click()
        with page.expect_download() as download:
            page.locator("#csv").click()
        rows = download.value.path().read_text().splitlines()
        assert rows[0].startswith("created,uuid,event_name,subscription_id")
        assert len(rows) == 1 + sum(attempt.status_code == 500 for attempt in attempts(app))
        browser.close()


def test_the_pages_need_an_admin_login_and_forms_their_csrf_token(env: AppEnv, receiver: Receiver) -> None:
    app = env.app()
    subscribe(app, receiver.respond())
    with app.app_context():
        admin = create_token(db.session, "on-call", admin=True)
        sales = create_token(db.session, "sales-app", resources=["sales"])
        db.session.commit()
    client = app.test_client()
    prefix = "/async-events/admin"
    response = client.get(f"{prefix}/health")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    response = client.post(f"{prefix}/login", data={"token": admin})  # from another site: no CSRF token
    assert response.status_code == 401 and b"The form expired" in response.data
    response = log_in(client, f"{prefix}/login", sales)
    assert response.status_code == 401 and b"not an admin token" in response.data
    assert log_in(client, f"{prefix}/login", admin).status_code == 302
    response = client.post(f"{prefix}/subscriptions", data={"ids": ["1"], "action": "disable"})
    assert response.status_code == 400 and b"The form expired" in response.data
    with app.app_context():
        assert list(db.session.scalars(select(Subscription.status))) == [True]
    assert client.get(f"{prefix}/health").status_code == 200


def test_admin_forms_explain_bad_input_and_login_stays_on_this_site(env: AppEnv, receiver: Receiver) -> None:
    app = env.app()
    subscription_id = subscribe(app, receiver.respond())
    with app.app_context():
        admin = create_token(db.session, "on-call", admin=True)
        db.session.commit()
    client = app.test_client()
    prefix = "/async-events/admin"
    response = log_in(client, f"{prefix}/login?next=//elsewhere.example/", admin)
    assert response.headers["Location"] == f"{prefix}/"  # never off to another site
    client.get(f"{prefix}/dead-letters")
    with client.session_transaction() as session:
        csrf = session["async_events_csrf"]
    response = client.post(
        f"{prefix}/dead-letters/recover",
        data={"csrf_token": csrf, "subscription_id": str(subscription_id), "since": "last week"},
        follow_redirects=True,
    )
    assert b"since: &#39;last week&#39; is not a time (2026-01-31T12:00) or a duration (2h, 3d)" in response.data
    response = client.post(
        f"{prefix}/dead-letters/recover",
        data={"csrf_token": csrf, "subscription_id": "seven", "since": "1h"},
        follow_redirects=True,
    )
    assert b"subscription takes a whole number, not &#39;seven&#39;" in response.data
    response = client.post(f"{prefix}/subscriptions", data={"csrf_token": csrf}, follow_redirects=True)
    assert b"Select at least one subscription." in response.data
