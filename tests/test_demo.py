"""The demo: an order placed in the shop arrives, verified, at the demo receiver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from bench.sentinel import free_port
from demo_app import receiver as demo_receiver
from demo_app import settings, shop
from tests.conftest import ROOT, AppEnv, run_burst


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


def test_the_shops_webhooks_page_opens_the_portal_for_its_customer(
    env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLASK_SQLALCHEMY_DATABASE_URI", env.database_uri)
    monkeypatch.setenv("FLASK_ASYNC_EVENTS_REDIS_URL", env.redis.url)
    app = shop.create_app()
    env.apps.append(app)
    client = app.test_client()
    link = client.get("/account/webhooks")
    assert link.status_code == 302 and "/async-events/portal/enter?token=" in link.headers["Location"]
    portal = client.get(link.headers["Location"], follow_redirects=True)
    assert portal.status_code == 200 and "<h1>Endpoints</h1>" in portal.get_data(as_text=True)
    form = client.get("/async-events/portal/subscriptions/new").get_data(as_text=True)
    assert "An order left the warehouse" in form  # the customer holds the sales resource
    with app.app_context():
        shop.db.drop_all()


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_a_stopped_demo_leaves_no_process_behind(tmp_path: Path, stop: str) -> None:
    web, receiver = free_port(), free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "demo_app.run"],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PORT": str(web),
            "DEMO_RECEIVER_PORT": str(receiver),
            "DEMO_INSTANCE_PATH": str(tmp_path),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a terminal's Ctrl-C reaches the whole process group
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                order = {"customer_email": "roni_cost@example.com", "total": "45.00"}
                if requests.post(f"http://127.0.0.1:{web}/orders", json=order, timeout=2).status_code == 201:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the demo's shop did not answer"
            time.sleep(0.3)
        received: list[dict[str, str]] = []
        while not received:
            assert time.monotonic() < deadline, "the order did not arrive at the demo receiver"
            time.sleep(0.3)
            received = requests.get(f"http://127.0.0.1:{receiver}/received.json", timeout=2).json()
        processes = _descendants(demo.pid)
        assert len(processes) >= 4  # honcho, web, worker, receiver, the embedded redis-server
        if stop == "ctrl-c":
            os.killpg(demo.pid, signal.SIGINT)
        else:
            demo.send_signal(signal.SIGTERM)  # the demo alone, as a supervisor or `kill` does
        output = demo.communicate(timeout=60)[0].decode()
        left = [pid for pid in processes if _alive(pid)]
        assert left == [], f"still running: {left}\n{output[-2000:]}"
        assert "delivered sales.order.created" in output  # the worker's line for the order
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
