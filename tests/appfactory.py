"""The host app the tests (and their subprocess workers) run: a tiny shop with a few events.

Configured from the environment so a worker started with ``flask --app tests.appfactory`` sees the
same database, Redis and settings as the test that started it.
"""

from __future__ import annotations

import datetime
import decimal
import json
import os
import time
from typing import Any

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import String, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from flask_async_events import AsyncEvents


class HostBase(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=HostBase)
events = AsyncEvents()


class Order(db.Model):  # type: ignore[name-defined]
    __tablename__ = "test_order"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_email: Mapped[str] = mapped_column(String(255))
    total: Mapped[str] = mapped_column(String(32))


@events.event("sales.order.created", resources=["sales"], description="An order was placed")
def order_created(id: int) -> dict[str, Any]:
    order = db.session.get(Order, id)
    if order is None:
        raise LookupError(f"order {id} does not exist")
    return {"id": order.id, "customer_email": order.customer_email, "total": order.total}


@events.event("sales.order.shipped")
def order_shipped(id: int, carrier: str = "post") -> dict[str, Any]:
    return {"id": id, "carrier": carrier}


@events.event("customer.created")
def customer_created(id: int) -> dict[str, Any]:
    return {"id": id}


@events.event("broken.event", description="Its service always raises")
def broken(id: int) -> dict[str, Any]:
    raise RuntimeError(f"cannot load thing {id}")


SERVICE_CALLS: list[int] = []


@events.event("counted.event", description="Records each call of its service")
def counted(id: int) -> dict[str, Any]:
    SERVICE_CALLS.append(id)
    return {"id": id}


@events.event("typed.event", description="A payload with dates, decimals and tuples")
def typed(id: int) -> dict[str, Any]:
    return {"when": datetime.date(2026, 1, 2), "amount": decimal.Decimal("1.10"), "tags": ("a",)}


@events.event("sized.event", description="A payload of a chosen size")
def sized(id: int, size: int) -> dict[str, Any]:
    return {"id": id, "blob": "x" * size}


@events.event("echo.event", description="Its payload is what was published")
def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


FLAKY = {"failing": False}


@events.event("flaky.echo", description="Its payload is what was published, unless FLAKY says it fails")
def flaky_echo(payload: dict[str, Any]) -> dict[str, Any]:
    if FLAKY["failing"]:
        raise RuntimeError("the shop's database hiccupped")
    return payload


@events.event("slow.event", description="Its service takes ``seconds`` to answer (noting each call in ``calls``)")
def slow(id: int, seconds: float, calls: str = "") -> dict[str, Any]:
    if calls:
        with open(calls, "a") as noted:
            noted.write(f"{id}\n")
    time.sleep(seconds)
    return {"id": id}


@events.event("broken.query", description="Its service runs a failing SQL query")
def broken_query(id: int) -> dict[str, Any]:
    db.session.execute(text("SELECT * FROM no_such_table"))
    return {"id": id}


BASE_CONFIG: dict[str, Any] = {
    "SECRET_KEY": "test-secret-key",
    "ASYNC_EVENTS_MAINTENANCE_INTERVAL": 1,
    "ASYNC_EVENTS_RELAY_AFTER": 0,
    "ASYNC_EVENTS_TIMEOUT": 3,
    "ASYNC_EVENTS_CONNECT_TIMEOUT": 1,
    "ASYNC_EVENTS_ALLOWED_NETWORKS": ["127.0.0.0/8", "::1/128"],
}


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(BASE_CONFIG)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["FAE_TEST_DATABASE_URI"]
    app.config["ASYNC_EVENTS_REDIS_URL"] = os.environ["FAE_TEST_REDIS_URL"]
    app.config.update(json.loads(os.environ.get("FAE_TEST_CONFIG", "{}")))
    app.config.update(overrides or {})
    db.init_app(app)
    events.init_app(app, db=db)
    return app
