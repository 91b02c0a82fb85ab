"""What the admin pages and the portal share: one set of subscription, log and trace pages, each
request seen through the caller's :class:`~flask_async_events.auth.Principal` (an admin sees every
owner's rows, a portal user only their own), and the templates they are drawn with.

Each surface registers :func:`~flask_async_events.pages.views.add_shared_pages` on its blueprint and
says, before every request, who the caller is and how to tell them things
(:func:`~flask_async_events.pages.access.use`).
"""

from __future__ import annotations

from flask import Blueprint, Flask

templates = Blueprint("async_events_pages", __name__, template_folder="templates")


def register_page_templates(app: Flask) -> None:
    """Make the shared templates findable (once, whichever surface asks first)."""
    if templates.name not in app.blueprints:
        app.register_blueprint(templates)
