"""The demo receiver: verifies both signatures of every delivery and shows what arrived.

This is what a subscriber writes: check ``webhook-signature`` with the Standard Webhooks library
(or ``flask_async_events.signing.verify_standard``), and/or the Magento module's ``x-magento-signature``,
then use ``webhook-id`` to drop duplicates.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import Any

from flask import Flask, jsonify, render_template, request
from flask.typing import ResponseReturnValue

from demo_app import settings
from flask_async_events.signing import InvalidSignature, verify_legacy, verify_standard


def create_app(secret: str = settings.DEMO_SECRET) -> Flask:
    app = Flask(__name__)
    received: deque[dict[str, Any]] = deque(maxlen=100)
    seen_ids: set[str] = set()
    lock = threading.Lock()

    @app.post("/webhooks")
    def webhook() -> ResponseReturnValue:
        body = request.get_data()
        checks = {}
        try:
            verify_standard(secret, dict(request.headers), body)
            checks["standard_webhooks"] = True
        except InvalidSignature:
            checks["standard_webhooks"] = False
        try:
            verify_legacy(secret, body, request.headers.get("x-magento-signature", ""))
            checks["x_magento_signature"] = True
        except InvalidSignature:
            checks["x_magento_signature"] = False
        if not all(checks.values()):
            return jsonify(message="invalid signature", checks=checks), 401
        webhook_id = request.headers["webhook-id"]
        with lock:
            duplicate = webhook_id in seen_ids
            seen_ids.add(webhook_id)
            received.appendleft(
                {
                    "at": time.strftime("%H:%M:%S"),
                    "webhook_id": webhook_id,
                    "event": request.headers.get("x-async-events-event", "?"),
                    "duplicate": duplicate,
                    "checks": checks,
                    "body": json.dumps(json.loads(body), indent=2),
                }
            )
        return jsonify(received=True, duplicate=duplicate)

    @app.get("/")
    def index() -> ResponseReturnValue:
        with lock:
            items = list(received)
        return render_template("receiver.html", items=items)

    @app.get("/received.json")
    def received_json() -> ResponseReturnValue:
        with lock:
            return jsonify(list(received))

    return app
