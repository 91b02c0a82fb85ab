"""The app the chaos workers and publisher run: one event, short timeouts, a quick retry schedule."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_async_events import AsyncEvents

EVENT = "chaos.order.created"
TIMEOUT = 1.0
# Nine retries over ~45 s: enough to outlast the receiver's faults, which stop after three per delivery.
RETRY_SCHEDULE = [0.5, 1, 2, 3, 5, 8, 8, 8, 8]

db = SQLAlchemy()
events = AsyncEvents()


@events.event(EVENT)
def order_created(n: int) -> dict[str, Any]:
    return {"n": n}


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="chaos",
        SQLALCHEMY_DATABASE_URI=os.environ["CHAOS_DATABASE_URI"],
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        ASYNC_EVENTS_REDIS_URL=os.environ["CHAOS_REDIS_URL"],
        ASYNC_EVENTS_TIMEOUT=TIMEOUT,
        ASYNC_EVENTS_CONNECT_TIMEOUT=1,
        ASYNC_EVENTS_RETRY_SCHEDULE=os.environ.get("CHAOS_RETRY_SCHEDULE") or RETRY_SCHEDULE,
        ASYNC_EVENTS_MAINTENANCE_INTERVAL=2,
        ASYNC_EVENTS_RELAY_AFTER=5,
        # The receiver fails 30% of requests: after an outage opens a circuit, a few probes in a row can
        # fail by chance, and the default cool-down cap (600 s) would outlast the run's drain deadline.
        # Circuits still open, hold, probe and are lost with Redis; they only cool down for 20 s at most.
        ASYNC_EVENTS_CIRCUIT_MAX_COOLDOWN=20,
        ASYNC_EVENTS_ALLOWED_NETWORKS=["127.0.0.0/8"],
        ASYNC_EVENTS_JOURNAL_DIR=os.environ.get("CHAOS_JOURNAL_DIR", ""),  # the run's folder, or "": Redis only
    )
    db.init_app(app)
    events.init_app(app, db=db)
    return app
