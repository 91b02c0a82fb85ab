"""Receivers that drip, hang, flood or answer garbage: every attempt ends within the timeout and a
second, is logged, costs no memory for what it was sent, and the worker carries on."""

from __future__ import annotations

import resource

from tests.conftest import AppEnv, run_burst
from tests.helpers import attempts, place_order, subscribe
from tests.notifiers.hostile import (
    drip_body,
    drip_headers,
    endless_chunks,
    garbage,
    hang_up_on_the_second,
    healthy,
    hostile,
    huge_body,
    never_answer,
)

TIMEOUT = 1


def test_every_attempt_ends_within_the_timeout_whatever_the_receiver_does(env: AppEnv) -> None:
    app = env.app(ASYNC_EVENTS_TIMEOUT=TIMEOUT, ASYNC_EVENTS_CONNECT_TIMEOUT=TIMEOUT, ASYNC_EVENTS_RETRY_SCHEDULE=[])
    behaviours = [drip_headers, drip_body, never_answer, garbage, huge_body, endless_chunks, healthy]
    with hostile(*behaviours) as servers:
        ids = {
            subscribe(app, server.url): behaviour.__name__
            for server, behaviour in zip(servers, behaviours, strict=True)
        }
        memory_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        place_order(app)
        run_burst(app)
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - memory_before) / 1024
        assert all(server.requests == 1 for server in servers)
    logged = {ids[attempt.subscription_id]: attempt for attempt in attempts(app)}
    assert sorted(logged) == sorted(ids.values())  # one log row each: nothing hung, nothing lost
    for name in ("drip_headers", "drip_body", "never_answer"):
        assert logged[name].error_class == "Timeout", (name, logged[name].response_data)
        assert "the limit for a whole attempt" in logged[name].response_data
    for attempt in logged.values():
        assert attempt.duration_ms is not None and attempt.duration_ms <= (TIMEOUT + 1) * 1000, attempt.response_data
    assert logged["garbage"].error_class == "ConnectionError" and not logged["garbage"].success
    for name in ("huge_body", "endless_chunks"):  # a 200 is a 200; only the excerpt is read
        assert logged[name].success and logged[name].status_code == 200
        assert 0 < len(logged[name].response_data) <= 8192
    assert logged["healthy"].success and logged["healthy"].response_data == "ok"
    assert grown_mb < 100  # the 300 MB body and the endless one were never held in memory


def test_the_worker_carries_on_after_hostile_receivers(env: AppEnv) -> None:
    app = env.app(ASYNC_EVENTS_TIMEOUT=TIMEOUT, ASYNC_EVENTS_RETRY_SCHEDULE=[])
    with hostile(drip_headers, healthy) as (dripping, fine):
        subscribe(app, dripping.url)
        place_order(app)
        run_burst(app)
        subscribe(app, fine.url)
        place_order(app)
        run_burst(app)
        assert fine.requests == 1 and dripping.requests == 2
    outcomes = sorted((attempt.subscription_id, attempt.success) for attempt in attempts(app))
    assert outcomes == [(1, False), (1, False), (2, True)]


def test_a_request_a_dying_connection_took_is_one_attempt_never_two(env: AppEnv) -> None:
    app = env.app(ASYNC_EVENTS_DELIVERY_THREADS=1, ASYNC_EVENTS_RETRY_SCHEDULE=[])  # one thread: one connection
    with hostile(hang_up_on_the_second) as (server,):
        subscribe(app, server.url)
        place_order(app)
        run_burst(app)
        place_order(app)  # sent on the kept-alive connection, which the receiver closes after reading
        run_burst(app)
        assert server.requests == 2  # not re-sent behind the attempt's back
    first, second = attempts(app)
    assert first.success and not second.success and second.error_class == "ConnectionError"
    assert "closed the connection without answering" in second.response_data
