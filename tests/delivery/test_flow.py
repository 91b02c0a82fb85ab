"""No endpoint holds up another: five subscribers on five hosts that drip their answers, and a
healthy one beside them that must get every event while the drippers still hold their threads."""

from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import AppEnv, Receiver, drain, run_burst
from tests.helpers import attempts, deliveries, place_order, states, subscribe
from tests.notifiers.hostile import HostileServer, drip_headers, healthy, hostile

TIMEOUT = 3
EVENTS = 20
DRIPPING_HOSTS = [f"127.0.0.{n}" for n in range(2, 7)]


def watch(server: HostileServer, since: float, arrivals: list[float]) -> None:
    """Note when ``server`` has had all its requests (seconds after ``since``)."""
    while server.requests < EVENTS and time.monotonic() - since < 60:
        time.sleep(0.02)
    arrivals.append(time.monotonic() - since)


@pytest.mark.one_database
def test_five_dripping_subscribers_do_not_hold_up_a_healthy_one(env: AppEnv) -> None:
    # Circuits off: every dripping delivery is attempted, so what is tested is the sharing of threads.
    app = env.app(ASYNC_EVENTS_TIMEOUT=TIMEOUT, ASYNC_EVENTS_RETRY_SCHEDULE=[], ASYNC_EVENTS_CIRCUIT_FAILURES=0)
    with hostile(healthy) as (fine,):
        drippers = [hostile(drip_headers, host=host) for host in DRIPPING_HOSTS]
        servers = [context.__enter__()[0] for context in drippers]
        try:
            for server in servers:
                subscribe(app, server.url)
            subscribe(app, fine.url)
            for _ in range(EVENTS):
                place_order(app)
            published = time.monotonic()
            arrivals: list[float] = []
            watcher = threading.Thread(target=watch, args=(fine, published, arrivals), daemon=True)
            watcher.start()
            # RQ's worker needs the main thread. Sends that found their host's share of threads full
            # for a whole send budget wait in the database for a later turn: drain until all ended.
            drain(app, lambda: len(attempts(app)) == EVENTS * 6, timeout=90)
            watcher.join(1)
        finally:
            for context in drippers:
                context.__exit__(None, None, None)
    assert fine.requests == EVENTS and arrivals
    # Every healthy delivery arrived before the drippers' first attempts had even timed out.
    assert arrivals[0] < TIMEOUT, arrivals
    logged = attempts(app)
    assert len(logged) == EVENTS * 6
    assert sum(attempt.success for attempt in logged) == EVENTS
    assert {attempt.error_class for attempt in logged if not attempt.success} == {"Timeout"}


def test_sends_that_find_their_endpoint_full_wait_in_the_database_spaced_out(env: AppEnv, receiver: Receiver) -> None:
    """One thread for a slow endpoint and a send budget of two seconds: what could not start in
    time is parked, each a little later than the one before, not handed back due at once."""
    app = env.app(ASYNC_EVENTS_TIMEOUT=1, ASYNC_EVENTS_ENDPOINT_CONCURRENCY=1, ASYNC_EVENTS_CIRCUIT_FAILURES=0)
    subscribe(app, receiver.respond("/slow", delay=0.6))
    for _ in range(10):
        place_order(app)
    started = time.time()
    run_burst(app)
    waiting = [d for d in deliveries(app) if d.attempt_count == 0]
    assert waiting and {d.state for d in waiting} == {"pending"}
    dues = sorted(d.next_attempt_at.timestamp() - started for d in waiting)
    assert dues[0] > 2 and len(set(dues)) == len(dues)  # one per second after the budget: the pace of one thread
    drain(app, lambda: states(app) == ["delivered"] * 10, timeout=60)
    assert all(d.attempt_count == 1 for d in deliveries(app))  # waiting was never an attempt
