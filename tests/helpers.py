"""Small helpers the tests share: subscribing, placing orders, reading rows."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from flask_async_events.auth import create_token
from flask_async_events.models import Delivery, DeliveryAttempt, Event
from tests.appfactory import Order, db, events

MAGENTO_TOKEN = "fD03@NpYbXYg"
PREFIX = "/rest/V1"  # the REST API's default mount point


def subscribe(
    app: Flask, url: str, event_name: str = "sales.order.created", token: str = MAGENTO_TOKEN, **options: Any
) -> int:
    with app.app_context():
        subscription = events.subscribe(event_name, url, verification_token=token, **options)
        db.session.commit()
        return subscription.subscription_id


def place_order(app: Flask, email: str = "roni_cost@example.com", total: str = "12.50", **publish: Any) -> str:
    """Create an order and publish sales.order.created in the same transaction."""
    with app.app_context():
        order = Order(customer_email=email, total=total)
        db.session.add(order)
        db.session.flush()
        event_id = events.publish("sales.order.created", id=order.id, **publish)
        db.session.commit()
        return event_id


def publish(app: Flask, name: str, **arguments: Any) -> str:
    with app.app_context():
        event_id = events.publish(name, **arguments)
        db.session.commit()
        return event_id


def next_second() -> None:
    """Wait for the clock's next whole second. MySQL and MariaDB keep whole seconds, so a recovery
    of missed events takes only those of a later second than the subscription's creation."""
    time.sleep(1.01 - time.time() % 1)


def deliveries(app: Flask) -> list[Delivery]:
    with app.app_context():
        rows = db.session.scalars(select(Delivery).order_by(Delivery.id)).all()
        db.session.expunge_all()
        return list(rows)


def attempts(app: Flask, uuid: str | None = None) -> list[DeliveryAttempt]:
    with app.app_context():
        query = select(DeliveryAttempt).order_by(DeliveryAttempt.log_id)
        if uuid is not None:
            query = query.where(DeliveryAttempt.uuid == uuid)
        rows = db.session.scalars(query).all()
        db.session.expunge_all()
        return list(rows)


def states(app: Flask) -> list[str]:
    return [delivery.state for delivery in deliveries(app)]


def all_final(app: Flask) -> bool:
    """Whether there are deliveries and every one has ended (delivered, dead or cancelled)."""
    return all(state in ("delivered", "dead", "cancelled") for state in states(app)) and bool(states(app))


def count_events(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Event)) or 0


def body_json(body: bytes) -> Any:
    return json.loads(body.decode())


def token(app: Flask, name: str, *resources: str, admin: bool = False) -> dict[str, str]:
    """The Authorization header of a new API token."""
    with app.app_context():
        secret = create_token(db.session, name, resources=resources, admin=admin)
        db.session.commit()
    return {"Authorization": f"Bearer {secret}"}


def create(client: FlaskClient, auth: dict[str, str], **fields: Any) -> Any:
    """POST a subscription to the REST API (sales.order.created over http unless told otherwise)."""
    body = {"asyncEvent": {"event_name": "sales.order.created", "metadata": "http", **fields}}
    return client.post(f"{PREFIX}/async_event", json=body, headers=auth)


def form_csrf(page: bytes) -> str:
    """The CSRF token of the first form on a page."""
    found = re.search(rb'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1).decode()


def log_in(client: FlaskClient, login_url: str, secret: str) -> TestResponse:
    """Fill in a login form (its CSRF token included) with a token."""
    return client.post(login_url, data={"token": secret, "csrf_token": form_csrf(client.get(login_url).data)})


@dataclass(frozen=True)
class Try:
    """One attempt as the attempt journal names it: its (delivery id, attempt) and its delivery's uuid."""

    attempt_key: tuple[int, int]
    uuid: str = "00000000-0000-4000-8000-000000000000"
