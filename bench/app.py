"""The app the benchmarks' workers run: one event with a ~1 KB payload, configured by environment."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_async_events import AsyncEvents

db = SQLAlchemy()
events = AsyncEvents()
PADDING = "x" * 1000


@events.event("bench.created")
def bench_created(id: int) -> dict[str, Any]:
    return {"id": id, "padding": PADDING}


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="bench",
        SQLALCHEMY_DATABASE_URI=os.environ["BENCH_DATABASE_URI"],
        ASYNC_EVENTS_REDIS_URL=os.environ["BENCH_REDIS_URL"],
        ASYNC_EVENTS_MAINTENANCE_INTERVAL=5,
        ASYNC_EVENTS_EVENTBRIDGE_ENDPOINT_URL=os.environ.get("BENCH_EVENTBRIDGE_URL"),
        ASYNC_EVENTS_EVENTBRIDGE_BATCH_SIZE=int(os.environ.get("BENCH_EVENTBRIDGE_BATCH_SIZE", "10")),
        ASYNC_EVENTS_EVENTBRIDGE_SOURCE="bench",
        ASYNC_EVENTS_ALLOWED_NETWORKS=["127.0.0.0/8"],
        ASYNC_EVENTS_ENDPOINT_CONCURRENCY=int(os.environ.get("BENCH_CONC", "8")),
    )
    db.init_app(app)
    events.init_app(app, db=db)
    return app
