"""The admin pages: server-rendered, no JavaScript needed, at ``ASYNC_EVENTS_ADMIN_URL``."""

from __future__ import annotations

from flask import Flask

from flask_async_events.admin.views import admin
from flask_async_events.pages import register_page_templates


def register_admin(app: Flask, url: str) -> None:
    register_page_templates(app)
    app.register_blueprint(admin, url_prefix=url)
