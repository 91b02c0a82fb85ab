"""Redis Sentinel: a master, a replica and three sentinels, real processes on loopback. The master is
killed in the middle of a stream of publishes; the web process and the worker follow the failover."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.sentinel import SentinelConnectionPool

from bench.sentinel import SentinelGroup
from flask_async_events.delivery.journal import TIMEOUT, AttemptJournal
from flask_async_events.state import get_state
from tests.conftest import AppEnv, Receiver, WorkerProcess, wait_for
from tests.helpers import place_order, states, subscribe

EVENTS = 120
PUBLISH_EVERY = 0.05  # 20 events a second: the stream spans the failover


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    group = SentinelGroup(tmp_path)
    try:
        group.start()
        yield group
    finally:
        group.stop()


@pytest.mark.one_database
def test_a_failover_in_a_stream_of_publishes_loses_nothing_and_needs_no_worker_restart(
    sentinel_group: SentinelGroup, env: AppEnv, receiver: Receiver, worker_process: Callable[..., WorkerProcess]
) -> None:
    env.redis_url = sentinel_group.url
    # A trigger job written to the old master and not yet replicated is relayed from the outbox after 20 s.
    app = env.app(ASYNC_EVENTS_MAINTENANCE_INTERVAL=2, ASYNC_EVENTS_RELAY_AFTER=20)
    subscribe(app, receiver.respond())
    worker = worker_process()
    published: list[str] = []
    failures: list[BaseException] = []

    def publish_stream() -> None:
        for _ in range(EVENTS):
            try:
                published.append(place_order(app))
            except BaseException as exc:  # a publish must never fail because Redis is failing over
                failures.append(exc)
            time.sleep(PUBLISH_EVERY)

    place_order(app)
    wait_for(lambda: len(receiver.requests) == 1, timeout=30)  # the worker runs against the first master
    old_master = sentinel_group.master()
    stream = threading.Thread(target=publish_stream)
    stream.start()
    time.sleep(EVENTS * PUBLISH_EVERY / 3)
    promoted = sentinel_group.fail_over()
    arrived_before = len(receiver.requests)
    stream.join(60)

    assert failures == []
    assert len(published) == EVENTS
    assert sentinel_group.master() != old_master
    wait_for(lambda: len(receiver.requests) > arrived_before, timeout=30)
    resumed = time.monotonic() - promoted
    wait_for(lambda: states(app).count("delivered") == EVENTS + 1, timeout=90)
    assert resumed < 30, f"delivery resumed {resumed:.1f}s after the promotion"
    assert worker.process.poll() is None  # the same worker process, never restarted
    ids = {request.headers["Webhook-Id"] for request in receiver.requests}
    assert len(ids) == EVENTS + 1  # every event arrived (duplicates allowed, losses not)
    assert get_state(app).queues.connection.info("replication")["role"] == "master"


def test_every_redis_user_goes_through_the_sentinel_service(sentinel_group: SentinelGroup, env: AppEnv) -> None:
    env.redis_url = sentinel_group.url
    app = env.app()
    connection = get_state(app).queues.connection
    assert isinstance(connection.connection_pool, SentinelConnectionPool)
    assert connection.connection_pool.service_name == "async-events"
    journal = AttemptJournal(connection)
    try:  # the journal keeps a pool of its own, with its own timeout, to the same service
        pool = journal._redis.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.connection_kwargs["socket_timeout"] == TIMEOUT
        assert journal._redis.ping()
    finally:
        journal.close()
    connection.set("async_events:probe", "1")
    with redis.Redis(port=sentinel_group.master()) as master:
        assert master.get("async_events:probe") == b"1"  # written to the master the sentinels name
