"""The demo shop: placing an order writes the order and its event in one transaction.

Run with ``flask --app demo_app.shop:create_app run``. With no configuration it uses SQLite in the
instance folder and an embedded Redis; set ``FLASK_SQLALCHEMY_DATABASE_URI`` and
``FLASK_ASYNC_EVENTS_REDIS_URL`` (any ``FLASK_``-prefixed key) to use real services.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Flask, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from demo_app import settings
from flask_async_events import AsyncEvents


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
events = AsyncEvents()


class Order(db.Model):  # type: ignore[name-defined]
    __tablename__ = "shop_order"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_email: Mapped[str] = mapped_column(String(255))
    total: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32), default="placed")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "customer_email": self.customer_email, "total": self.total, "status": self.status}


@events.event("sales.order.created", resources=["sales"], description="An order was placed")
def order_created(id: int) -> dict[str, Any]:
    """The payload: the order as the REST API would show it (resolved by the worker)."""
    order = db.session.get(Order, id)
    if order is None:
        raise LookupError(f"order {id} does not exist")
    return order.to_dict()


@events.event("sales.order.shipped", resources=["sales"], description="An order left the warehouse")
def order_shipped(id: int, carrier: str) -> dict[str, Any]:
    order = db.session.get(Order, id)
    if order is None:
        raise LookupError(f"order {id} does not exist")
    return {**order.to_dict(), "carrier": carrier}


DEMO_CUSTOMER = "customer:demo"  # who the demo's signed-in customer is; a real shop takes its user's id


def _order_input() -> tuple[str, str] | str:
    data = request.get_json(silent=True) if request.is_json else request.form
    data = data or {}
    email = str(data.get("customer_email", "")).strip()
    if "@" not in email:
        return "customer_email must be an email address"
    try:
        total = Decimal(str(data.get("total", "")))
    except InvalidOperation:
        return "total must be a number"
    if total < 0:
        return "total must be >= 0"
    return email, f"{total:.2f}"


def create_app() -> Flask:
    app = Flask(__name__, instance_path=settings.INSTANCE_PATH)
    app.config.update(
        SECRET_KEY=settings.SECRET_KEY,
        ASYNC_EVENTS_MAINTENANCE_INTERVAL=5,
        ASYNC_EVENTS_ALLOWED_NETWORKS=["127.0.0.0/8"],  # the demo receiver runs on this machine
    )
    app.config.from_prefixed_env()
    events.init_app(app, db=db)  # no database configured: SQLite in the instance folder
    with app.app_context():
        db.create_all()

    @app.get("/")
    def index() -> ResponseReturnValue:
        orders = db.session.scalars(select(Order).order_by(Order.id.desc()).limit(20)).all()
        return render_template("shop.html", orders=orders, receiver=f"http://127.0.0.1:{settings.RECEIVER_PORT}/")

    @app.post("/orders")
    def place_order() -> ResponseReturnValue:
        parsed = _order_input()
        if isinstance(parsed, str):
            return jsonify(message=parsed), 422
        order = Order(customer_email=parsed[0], total=parsed[1])
        db.session.add(order)
        db.session.flush()
        event_id = events.publish("sales.order.created", id=order.id)
        db.session.commit()  # the order and its event commit together, or neither does
        if request.is_json:
            return jsonify(order=order.to_dict(), event_id=event_id), 201
        return redirect(url_for("index"))

    @app.post("/orders/<int:order_id>/ship")
    def ship_order(order_id: int) -> ResponseReturnValue:
        order = db.session.get(Order, order_id)
        if order is None:
            return jsonify(message=f"order {order_id} does not exist"), 404
        order.status = "shipped"
        event_id = events.publish("sales.order.shipped", id=order.id, carrier=request.args.get("carrier", "post"))
        db.session.commit()
        if request.is_json or request.args.get("format") == "json":
            return jsonify(order=order.to_dict(), event_id=event_id)
        return redirect(url_for("index"))

    @app.get("/account/webhooks")
    def customer_webhooks() -> ResponseReturnValue:
        """The shop's "Webhooks" page for a signed-in customer: one call opens the portal for them."""
        return redirect(events.portal_link(owner=DEMO_CUSTOMER, resources=["sales"], expires_in=3600))

    return app
