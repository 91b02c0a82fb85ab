"""The demo: an order placed in the shop arrives, verified, at the demo receiver."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from demo_app import receiver as demo_receiver
from demo_app import settings, shop
from tests.conftest import AppEnv, run_burst


@pytest.fixture
def receiver_server() -> Iterator[tuple[Flask, BaseWSGIServer]]:
    app = demo_receiver.create_app()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, server
    server.shutdown()
    thread.join(5)


def test_an_order_arrives_verified_at_the_receiver(
    env: AppEnv, receiver_server: tuple[Flask, BaseWSGIServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver_app, server = receiver_server
    monkeypatch.setenv("FLASK_SQLALCHEMY_DATABASE_URI", env.database_uri)
    monkeypatch.setenv("FLASK_ASYNC_EVENTS_REDIS_URL", env.redis.url)
    app = shop.create_app()
    env.apps.append(app)
    with app.app_context():
        shop.events.subscribe("*", f"http://127.0.0.1:{server.port}/webhooks", verification_token=settings.DEMO_SECRET)
        shop.db.session.commit()
    client = app.test_client()
    response = client.post("/orders", json={"customer_email": "roni_cost@example.com", "total": "45"})
    assert response.status_code == 201
    assert response.get_json()["order"]["total"] == "45.00"
    assert client.post("/orders/1/ship?format=json").status_code == 200
    run_burst(app)

    received = receiver_app.test_client().get("/received.json").get_json()
    assert sorted(item["event"] for item in received) == ["sales.order.created", "sales.order.shipped"]
    assert all(item["checks"] == {"standard_webhooks": True, "x_magento_signature": True} for item in received)
    created = next(item for item in received if item["event"] == "sales.order.created")
    assert '"customer_email": "roni_cost@example.com"' in created["body"]
    page = receiver_app.test_client().get("/").get_data(as_text=True)
    assert "sales.order.created" in page and "signature verified" in page
    with app.app_context():
        shop.db.drop_all()  # the shop's own table, not the test app's


def test_the_receiver_refuses_a_forged_delivery(receiver_server: tuple[Flask, BaseWSGIServer]) -> None:
    receiver_app, _ = receiver_server
    response = receiver_app.test_client().post(
        "/webhooks",
        data=b'{"data":{"id":1}}',
        headers={"webhook-id": "x", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"},
    )
    assert response.status_code == 401
    assert response.get_json()["checks"] == {"standard_webhooks": False, "x_magento_signature": False}


def test_the_shop_rejects_bad_input_with_a_message(env: AppEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_SQLALCHEMY_DATABASE_URI", env.database_uri)
    monkeypatch.setenv("FLASK_ASYNC_EVENTS_REDIS_URL", env.redis.url)
    app = shop.create_app()
    env.apps.append(app)
    client = app.test_client()
    response = client.post("/orders", json={"customer_email": "nobody", "total": "1"})
    assert response.status_code == 422 and "customer_email" in response.get_json()["message"]
    response = client.post("/orders", json={"customer_email": "a@b.c", "total": "lots"})
    assert response.status_code == 422 and "total" in response.get_json()["message"]
    assert client.post("/orders/99/ship").status_code == 404
    with app.app_context():
        shop.db.drop_all()
