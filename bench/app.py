"""The app the benchmarks' workers run: one event with a ~1 KB payload, configured by environment,
and a shop route that stores an order with or without publishing (the publish-overhead benchmark)."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import redis
import sqlalchemy as sa
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


@events.event("bench.backlog")
def bench_backlog(id: int) -> dict[str, Any]:
    """What the hostile-endpoints benchmark piles up for endpoints that hang or drip."""
    return {"id": id, "padding": PADDING}


def count_queries(redis_url: str) -> None:
    """Count every SQL statement this process sends, into Redis ``bench:queries`` twice a second
    (the hostile-endpoints benchmark's queries per second)."""
    counted = {"n": 0}
    lock = threading.Lock()

    def note(*_: Any) -> None:
        with lock:
            counted["n"] += 1

    def flush() -> None:
        connection = redis.Redis.from_url(redis_url)
        while True:
            time.sleep(0.5)
            with lock:
                n, counted["n"] = counted["n"], 0
            try:
                if n:
                    connection.incrby("bench:queries", n)
            except redis.RedisError:  # the benchmark is over and its Redis gone
                return

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", note)
    threading.Thread(target=flush, daemon=True, name="bench-query-count").start()


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
    if "BENCH_JOURNAL_DIR" in os.environ:  # where the attempt journal is spooled ("": not at all)
        app.config["ASYNC_EVENTS_JOURNAL_DIR"] = os.environ["BENCH_JOURNAL_DIR"]
    for name, value in os.environ.items():  # trying a setting: BENCH_SET_ASYNC_EVENTS_BATCH_SIZE=500
        if name.startswith("BENCH_SET_"):
            app.config[name.removeprefix("BENCH_SET_")] = json.loads(value)
    db.init_app(app)
    events.init_app(app, db=db)
    if os.environ.get("BENCH_COUNT_QUERIES"):
        count_queries(os.environ["BENCH_REDIS_URL"])

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
