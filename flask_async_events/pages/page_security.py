"""The headers every admin and portal page is sent with: a Content-Security-Policy that lets the
page run no script at all and load nothing from elsewhere (its one style block carries this
response's nonce), says who may frame it, and keeps it out of caches and referrers.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from flask import Response, g

NONCE = "async_events_csp_nonce"


def csp_nonce() -> str:
    """This response's nonce for the layout's ``<style>`` block (made on first use)."""
    nonce: str | None = g.get(NONCE)
    if nonce is None:
        nonce = secrets.token_urlsafe(16)
        setattr(g, NONCE, nonce)
    return nonce


def secure_page(response: Response, frame_ancestors: Sequence[str] = ()) -> Response:
    """Add the page headers; ``frame_ancestors``: the sources that may frame it (none: this site only)."""
    sources = " ".join(frame_ancestors) or "'self'"
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'nonce-{csp_nonce()}'; img-src 'self' data:; form-action 'self';"
        f" base-uri 'none'; frame-ancestors {sources}"
    )
    if not frame_ancestors:
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
