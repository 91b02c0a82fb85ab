"""The recording MemoryNotifier, used the way the README tells a host app to use it in its own tests."""

from __future__ import annotations

import threading
from pathlib import Path

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_async_events import AsyncEvents, MemoryNotifier, NotifyResult
from flask_async_events.delivery.dispatcher import shut_down
from flask_async_events.migrate import upgrade
from flask_async_events.notifiers.base import Message, Recipient
from flask_async_events.worker import run_worker
from tests.conftest import RedisServer


def host_app(tmp_path: Path, redis_url: str) -> tuple[Flask, SQLAlchemy, AsyncEvents]:
    """A host app of its own, as in the README's "Testing your app" section."""
    app = Flask("shop")
    app.config.update(
        SECRET_KEY="test",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'shop.sqlite'}",
        ASYNC_EVENTS_REDIS_URL=redis_url,
        ASYNC_EVENTS_RETRY_SCHEDULE=[0, 0],
    )
    db = SQLAlchemy()
    events = AsyncEvents()

    @events.event("sales.order.created")
    def order_created(id: int) -> dict[str, object]:
        return {"id": id, "total": 99.5}

    db.init_app(app)
    events.init_app(app, db=db)
    with app.app_context():
        upgrade(db.engine)
    return app, db, events


def deliver_one_order(app: Flask, db: SQLAlchemy, events: AsyncEvents, memory: MemoryNotifier, order_id: int) -> None:
    """What a host's test does: register the notifier, subscribe, publish, commit, run a burst worker."""
    events.register_notifier("http", memory)
    with app.app_context():
        events.subscribe("sales.order.created", "https://shop.example/hooks", verification_token="s3cret")
        events.publish("sales.order.created", id=order_id)
        db.session.commit()
    run_worker(app, burst=True)


def test_a_host_app_tests_its_events_without_any_endpoint(tmp_path: Path, clean_redis: RedisServer) -> None:
    app, db, events = host_app(tmp_path, clean_redis.url)
    memory = MemoryNotifier()
    try:
        deliver_one_order(app, db, events, memory, order_id=1)
        assert memory.payloads("sales.order.created") == [{"id": 1, "total": 99.5}]
        [sent] = memory.sent
        assert sent.recipient.recipient_url == "https://shop.example/hooks"
        assert sent.recipient.verification_token == "s3cret" and sent.message.attempt == 1
        assert memory.messages("customer.created") == []
    finally:
        shut_down(app)


def test_the_handler_decides_the_answer_and_retries_are_seen(tmp_path: Path, clean_redis: RedisServer) -> None:
    app, db, events = host_app(tmp_path, clean_redis.url)
    answers = iter([NotifyResult(False, retryable=True, status_code=503), NotifyResult(True, status_code=204)])
    memory = MemoryNotifier(lambda recipient, message: next(answers))
    try:
        deliver_one_order(app, db, events, memory, order_id=2)
        assert [entry.result.status_code for entry in memory.sent] == [503, 204]
        assert [message.attempt for message in memory.messages()] == [1, 2]
        first, retry = memory.messages()
        assert first.delivery_uuid == retry.delivery_uuid  # the same webhook-id on every attempt
    finally:
        shut_down(app)


def test_wait_for_and_clear_from_several_threads() -> None:
    memory = MemoryNotifier()
    recipient = Recipient(1, "a", "https://x", "t", "http", 0)
    message = Message("u", "e", "a", '{"data":{"n":1}}', "application/json", None, 1)  # type: ignore[arg-type]
    threads = [threading.Thread(target=memory.notify, args=(recipient, message)) for _ in range(8)]
    for thread in threads:
        thread.start()
    assert memory.wait_for(8, timeout=5)
    assert memory.payloads() == [{"n": 1}] * 8
    assert not MemoryNotifier().wait_for(1, timeout=0.05)
    memory.clear()
    assert memory.sent == []
