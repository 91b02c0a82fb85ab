"""The self-service portal: server-rendered pages where a subscriber manages its own webhooks, at
``ASYNC_EVENTS_PORTAL_URL``; the host app lets a customer in with :func:`portal_link`."""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask, has_request_context, request

from flask_async_events.errors import ConfigError
from flask_async_events.pages import register_page_templates
from flask_async_events.portal.links import link_token, make_grant
from flask_async_events.portal.views import portal
from flask_async_events.state import get_state


def register_portal(app: Flask, url: str) -> None:
    register_page_templates(app)
    app.register_blueprint(portal, url_prefix=url)


def portal_link(app: Flask, owner: str, resources: Iterable[str], expires_in: float) -> str:
    """A URL that opens the portal as ``owner`` until ``expires_in`` seconds from now: absolute
    inside a request (the host and scheme it came in on), else a path from the site's root."""
    url = get_state(app).settings.portal_url
    if url is None:
        raise ConfigError("the portal is off (ASYNC_EVENTS_PORTAL_URL is empty): portal links need it on")
    token = link_token(app.secret_key, make_grant(owner, resources, expires_in))
    path = f"{url.rstrip('/')}/enter?token={token}"
    if has_request_context():
        return f"{request.host_url.rstrip('/')}{request.script_root}{path}"
    return path
