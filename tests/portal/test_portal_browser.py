"""A customer in the portal, in headless Chromium: opens the link the shop gave it, adds an endpoint,
pings it, finds the delivery in its log, opens the trace and replays it, rotates the secret, and
sees the chart count the deliveries. Screenshots for the README."""

from __future__ import annotations

import re

from flask import Flask

from tests.appfactory import events
from tests.browser import CHROMIUM, CHROMIUM_FLAGS, SCREENSHOTS, live_server, need_browser
from tests.conftest import AppEnv, Receiver, run_burst
from tests.helpers import attempts, place_order, subscribe


def _portal_link(app: Flask, root: str, owner: str) -> str:
    with app.test_request_context(base_url=root):
        return events.portal_link(owner=owner, resources=["sales"], expires_in=600)


def test_a_customer_manages_its_endpoint_in_the_portal(env: AppEnv, receiver: Receiver) -> None:
    from playwright.sync_api import expect, sync_playwright

    need_browser()
    app = env.app(SECRET_KEY="portal-browser", ASYNC_EVENTS_RETRY_SCHEDULE=[])
    subscribe(app, receiver.respond("/someone-else"))  # the operator's own: never shown to the customer
    with live_server(app) as root, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(_portal_link(app, root, "customer:42"))
        expect(page.locator("h1")).to_have_text("Endpoints")
        assert "token=" not in page.url  # the link left the address bar
        expect(page.locator("#subscriptions")).to_contain_text("No endpoints yet")

        # Add an endpoint from the catalogue; the secret is shown once.
        page.get_by_role("link", name="Add an endpoint").click()
        expect(page.locator("#events")).to_contain_text("An order was placed")
        page.fill("#event_name", "sales.order.created")
        page.fill("#recipient_url", "http://169.254.169.254/latest/meta-data")
        page.get_by_role("button", name="Create subscription").click()
        expect(page.get_by_role("alert")).to_contain_text("recipient_url")
        page.fill("#recipient_url", receiver.respond("/customer-42"))
        page.get_by_role("button", name="Create subscription").click()
        first_secret = page.locator("#new-secret code").inner_text()
        assert first_secret.startswith("whsec_")
        page.screenshot(path=str(SCREENSHOTS / "portal-subscription.png"), full_page=True)

        # Ping it and see the answer.
        page.get_by_role("button", name="Send a test ping").click()
        expect(page.locator("#ping-answer")).to_contain_text("200")
        assert [request.path for request in receiver.requests].count("/customer-42") == 1

        # Two orders are delivered; the log shows them, the trace replays one.
        place_order(app, email="first@example.com")
        place_order(app, email="second@example.com")
        run_burst(app)
        page.get_by_role("link", name="Attempt log", exact=True).click()
        expect(page.locator("text=2 attempt(s)")).to_be_visible()
        expect(page.locator("table")).not_to_contain_text("/someone-else")
        page.fill("input[name=q]", 'data.customer_email:"first@example.com"')
        page.get_by_role("button", name="Search").click()
        expect(page.locator("text=1 attempt(s)")).to_be_visible()
        page.locator("table a").first.click()
        expect(page.locator("h1#status")).to_have_text("Delivered")
        page.get_by_role("button", name="Replay").click()
        expect(page.get_by_role("status")).to_contain_text("Sent again")
        run_burst(app)
        page.reload()
        expect(page.locator("#attempts tr")).to_have_count(3)  # a header and two attempts

        # Rotate the secret: a new one, shown once, and the old one signs on for the grace period.
        page.get_by_role("link", name=re.compile(r"^\d+$")).first.click()
        page.get_by_role("button", name="Rotate secret").click()
        second_secret = page.locator("#new-secret code").inner_text()
        assert second_secret.startswith("whsec_") and second_secret != first_secret
        page.goto(page.url.removesuffix("/rotate"))  # the page again, not the form's answer
        expect(page.locator("#new-secret")).to_have_count(0)

        # The chart counts the three deliveries (pings are not deliveries).
        with app.app_context():
            mine = [a for a in attempts(app) if a.subscription_id != 1]
        assert len(mine) == 3
        chart = page.locator("svg.chart").first
        expect(chart).to_have_attribute("aria-label", re.compile(r": 3 succeeded and 0 failed attempts"))
        assert int(chart.locator("g.hour").last.get_attribute("data-succeeded") or -1) == 3
        page.get_by_role("link", name="Endpoints").click()
        expect(page.locator("svg.chart").first).to_have_attribute("aria-label", re.compile(r": 3 succeeded"))
        page.screenshot(path=str(SCREENSHOTS / "portal.png"), full_page=True)
        browser.close()
