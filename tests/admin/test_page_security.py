"""The admin pages and the portal against clickjacking and stolen cookies: a Content-Security-Policy
that runs no script and lets only this site frame them (the portal: the sites the host names), a
logout that ends the session on the server so a copy of its cookie opens nothing, and a logout
form another site cannot post. In Chromium: styled under that policy, and refused in another
site's frame."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from flask_async_events.auth import create_token
from tests.appfactory import db, events
from tests.browser import CHROMIUM, CHROMIUM_FLAGS, SCREENSHOTS, live_server, need_browser
from tests.conftest import AppEnv
from tests.helpers import form_csrf, log_in

ADMIN = "/async-events/admin"
PORTAL = "/async-events/portal"


def _admin_secret(app: Flask) -> str:
    with app.app_context():
        secret = create_token(db.session, "on-call", admin=True)
        db.session.commit()
    return secret


def _copy_of(client: FlaskClient, app: Flask, name: str, path: str = "/") -> FlaskClient:
    """Another browser holding a copy of ``client``'s cookie ``name``."""
    cookie = client.get_cookie(name, path=path)
    assert cookie is not None, f"no {name} cookie"
    thief = app.test_client()
    thief.set_cookie(name, cookie.value, path=path)
    return thief


def test_an_admin_logout_ends_the_session_for_every_copy_of_its_cookie(app: Flask) -> None:
    client = app.test_client()
    log_in(client, f"{ADMIN}/login", _admin_secret(app))
    thief = _copy_of(client, app, "session")
    assert thief.get(f"{ADMIN}/subscriptions").status_code == 200  # the copy works while the session is on
    csrf = form_csrf(client.get(f"{ADMIN}/subscriptions").data)
    assert client.post(f"{ADMIN}/logout", data={"csrf_token": csrf}).status_code == 302
    replayed = thief.get(f"{ADMIN}/subscriptions")
    assert replayed.status_code == 302 and "/login" in replayed.headers["Location"]
    assert client.get(f"{ADMIN}/subscriptions").status_code == 302


def test_another_site_cannot_log_an_operator_out(app: Flask) -> None:
    client = app.test_client()
    log_in(client, f"{ADMIN}/login", _admin_secret(app))
    forged = client.post(f"{ADMIN}/logout", data={"csrf_token": "from-another-site"})
    assert forged.status_code == 400 and b"Form expired" in forged.data
    assert client.get(f"{ADMIN}/subscriptions").status_code == 200


def test_a_portal_logout_ends_the_session_for_every_copy_of_its_cookie(app: Flask) -> None:
    with app.test_request_context():
        link = events.portal_link(owner="customer:42", resources=["sales"], expires_in=3600)
    client = app.test_client()
    assert client.get(link).status_code == 302
    thief = _copy_of(client, app, "async_events_portal", PORTAL)
    assert thief.get(f"{PORTAL}/subscriptions").status_code == 200
    csrf = form_csrf(client.get(f"{PORTAL}/subscriptions").data)
    client.post(f"{PORTAL}/logout", data={"csrf_token": csrf})
    replayed = thief.get(f"{PORTAL}/subscriptions")
    assert replayed.status_code == 302 and "/login" in replayed.headers["Location"]


def test_admin_and_portal_pages_run_no_script_and_name_who_may_frame_them(env: AppEnv) -> None:
    app = env.app(ASYNC_EVENTS_PORTAL_FRAME_ANCESTORS=["https://shop.example.com"])
    client = app.test_client()
    log_in(client, f"{ADMIN}/login", _admin_secret(app))
    admin_page = client.get(f"{ADMIN}/subscriptions")
    policy = admin_page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'self'" in policy and "form-action 'self'" in policy
    assert "script-src" not in policy and "unsafe-inline" not in policy  # no script runs, inline or not
    assert admin_page.headers["X-Frame-Options"] == "SAMEORIGIN"
    nonce = policy.split("'nonce-")[1].split("'")[0]
    assert f'<style nonce="{nonce}">'.encode() in admin_page.data
    assert b"<script" not in admin_page.data and b" style=" not in admin_page.data and b" on" not in admin_page.data
    login = client.get(f"{PORTAL}/login")
    assert login.headers["Content-Security-Policy"].endswith("frame-ancestors https://shop.example.com")
    assert "X-Frame-Options" not in login.headers  # the host lets its shop frame the portal


def test_chromium_draws_the_pages_under_the_policy_and_refuses_them_in_another_sites_frame(app: Flask) -> None:
    from playwright.sync_api import sync_playwright

    need_browser()
    secret = _admin_secret(app)
    with live_server(app) as root, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1100, "height": 700})
        violations: list[str] = []
        page.on(
            "console", lambda message: violations.append(message.text) if "Content Security" in message.text else None
        )
        page.goto(f"{root}{ADMIN}/login")
        page.fill("#token", secret)
        page.get_by_role("button", name="Log in").click()
        header = page.locator("header")
        assert header.evaluate("element => getComputedStyle(element).backgroundColor") == "rgb(29, 35, 41)"
        assert violations == []

        # A page of another origin frames the admin pages (a hidden "Disable" to click): refused.
        attacker = browser.new_page(viewport={"width": 1100, "height": 700})
        refusals: list[str] = []
        attacker.on("console", lambda message: refusals.append(message.text))
        attacker.set_content(
            f'<iframe id="victim" src="{root}{ADMIN}/subscriptions" width="900" height="400"></iframe>'
        )
        attacker.wait_for_timeout(1000)
        assert attacker.frame_locator("#victim").locator("header").count() == 0  # none of the admin page is drawn
        assert any("frame-ancestors 'self'" in text for text in refusals), refusals
        attacker.screenshot(path=str(SCREENSHOTS / "admin-refused-in-a-frame.png"))
        browser.close()
