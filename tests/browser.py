"""Headless Chromium (Debian's, driven by Playwright) for the admin and portal tests, and a live
server for an app. Screenshots go to ``test-output/screenshots``; CI=true makes a missing browser a
failure, not a skip."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask
from werkzeug.serving import make_server

from tests.conftest import IN_CI, ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def need_browser() -> None:
    """Skip the test without Chromium (fail in CI)."""
    if not os.path.exists(CHROMIUM):
        if IN_CI:
            pytest.fail("Chromium is not installed and CI=true requires the browser tests (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)


@contextmanager
def live_server(app: Flask) -> Iterator[str]:
    """``app`` served on a free loopback port, in threads; yields its root URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)
