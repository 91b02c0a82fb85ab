"""No endpoint holds up another: five subscribers on five hosts that drip their answers, and a
healthy one beside them that must get every event while the drippers still hold their threads."""

from __future__ import annotations

import threading
import time

from tests.conftest import AppEnv, run_burst
from tests.helpers import attempts, place_order, subscribe
from tests.notifiers.hostile import HostileServer, drip_headers, healthy, hostile

TIMEOUT = 3
EVENTS = 20
DRIPPING_HOSTS = [f"127.0.0.{n}" for n in range(2, 7)]


def watch(server: HostileServer, since: float, arrivals: list[float]) -> None:
    """Note when ``server`` has had all its requests (seconds after ``since``)."""
    while server.requests < EVENTS and time.monotonic() - since < 60:
        time.sleep(0.02)
    arrivals.append(time.monotonic() - since)


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
            run_burst(app)  # RQ's worker needs the main thread
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
