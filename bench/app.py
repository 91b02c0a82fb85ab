"""The app the benchmarks' workers run: one event with a ~1 KB payload, configured by environment,
and a shop route that stores an order with or without publishing (the publish-overhead benchmark)."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Mapped, mapped_column

from flask_async_events import AsyncEvents

db = SQLAlchemy()
events = AsyncEvents()
PADDING = "x" * 1000


class BenchOrder(db.Model):  # type: ignore[name-defined]
    id: Mapped[int] = mapped_column(primary_key=True)
    total: Mapped[int]


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
    )
    db.init_app(app)
    events.init_app(app, db=db)

    @app.post("/orders")
    def place_order() -> tuple[str, int]:
        order = BenchOrder(total=int(request.args.get("total", "1")))
        db.session.add(order)
        db.session.flush()
        if request.args.get("publish") == "1":
            events.publish("bench.created", id=order.id)
        db.session.commit()
        return "", 201

    return app
