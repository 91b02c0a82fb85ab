"""Circuit breaking end to end: an endpoint that fails opens its circuit, nothing is sent while it
cools down (and nothing is counted as an attempt), one probe goes, and its success closes it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from flask_async_events.delivery.circuits import KEY, Circuits, Observed, circuits_of, endpoint_key
from flask_async_events.delivery.health import Said
from flask_async_events.models import DeliveryAttempt
from flask_async_events.state import get_state
from flask_async_events.worker.maintenance import run_maintenance
from tests.conftest import AppEnv, Receiver, WorkerProcess, drain, run_burst, wait_for
from tests.helpers import attempts, deliveries, place_order, states, subscribe, token

COOLDOWN = 2  # an open circuit's first cool-down, seconds (5 by default)
SETTINGS = {
    "ASYNC_EVENTS_CIRCUIT_FAILURES": 3,
    "ASYNC_EVENTS_CIRCUIT_COOLDOWN": COOLDOWN,
    "ASYNC_EVENTS_TIMEOUT": 2,
    "ASYNC_EVENTS_CONNECT_TIMEOUT": 1,
    "ASYNC_EVENTS_RETRY_SCHEDULE": [0] * 8,  # retries due at once: only the circuit holds them back
}


def circuit_fields(app: Flask, url: str) -> dict[Any, Any]:
    """The endpoint's circuit as Redis keeps it, without when it last answered (empty: closed)."""
    fields = dict(get_state(app).queues.connection.hgetall(KEY.format(endpoint_key(url))))
    fields.pop(b"answered_at", None)
    closed = {b"failures": b"0", b"open_until": b"", b"cooldown": b"0.0"}
    return {} if fields in ({}, closed) else fields


def open_a_circuit(env: AppEnv, receiver: Receiver, path: str, cooldown: float = COOLDOWN) -> tuple[Flask, str]:
    """An app whose one delivery fails three times in a row at ``path``: its circuit is then open
    for ``cooldown`` seconds."""
    app = env.app(**{**SETTINGS, "ASYNC_EVENTS_CIRCUIT_COOLDOWN": cooldown})
    url = receiver.respond(path, [503] * 3 + [200])
    subscribe(app, url)
    place_order(app)
    drain(app, lambda: circuit_fields(app, url) != {} and len(receiver.at(path)) == 3, timeout=30)
    assert circuit_fields(app, url)[b"failures"] == b"3"  # three in a row: open
    return app, url


def circuit_opened(env: AppEnv, receiver: Receiver, path: str, ago: float) -> tuple[Flask, str, str, Circuits]:
    """An app subscribed to a healthy ``path`` whose circuit was opened ``ago`` seconds ago."""
    app = env.app(**SETTINGS)
    url = receiver.respond(path, [200])
    subscribe(app, url)
    key = endpoint_key(url)
    assert key is not None
    circuits = circuits_of(get_state(app))
    moment = time.time() - ago
    circuits.record({key: [Observed(Said.FAILED, moment)] * 3}, moment)
    return app, url, key, circuits


def test_an_open_circuit_holds_deliveries_until_one_probe_succeeds(env: AppEnv, receiver: Receiver) -> None:
    app, url = open_a_circuit(env, receiver, "/flaky")
    for _ in range(4):  # published while it is open: they wait, unsent
        place_order(app)
    drain(app, lambda: states(app) == ["delivered"] * 5, timeout=60)
    times = [request.at for request in receiver.at("/flaky")]
    assert len(times) == 8  # three failures, one probe, the four that waited: no attempt wasted
    failures, probe, waited = times[:3], times[3], times[4:]
    assert probe - failures[-1] >= COOLDOWN - 0.5  # nothing was sent while the circuit cooled down
    assert min(waited) >= probe  # the others waited for the probe's answer
    first, *others = _by_delivery(app).values()
    assert [(a.attempt, a.status_code) for a in first] == [(1, 503), (2, 503), (3, 503), (4, 200)]
    assert all([(a.attempt, a.status_code) for a in rest] == [(1, 200)] for rest in others)  # waiting is not an attempt
    assert circuit_fields(app, url) == {}  # closed: nothing kept in Redis


def test_losing_the_circuit_state_loses_no_delivery(env: AppEnv, receiver: Receiver) -> None:
    app, _ = open_a_circuit(env, receiver, "/down")
    place_order(app)
    place_order(app)
    run_burst(app)  # the two new deliveries meet the open circuit: parked, a scheduled job each
    assert len(receiver.at("/down")) == 3 and states(app).count("delivered") == 0
    env.redis.stop()  # Redis restarts empty: the circuit and the parked deliveries' jobs are gone
    env.redis.start()
    drain(app, lambda: states(app) == ["delivered"] * 3, timeout=60)  # rebuilt from the database
    assert len(receiver.at("/down")) == 6  # nothing lost, nothing sent twice
    assert sorted(a.status_code or 0 for a in attempts(app)) == [200, 200, 200, 503, 503, 503]


def _by_delivery(app: Flask) -> dict[int | None, list[DeliveryAttempt]]:
    grouped: dict[int | None, list[DeliveryAttempt]] = {}
    for attempt in attempts(app):
        grouped.setdefault(attempt.delivery_id, []).append(attempt)
    return grouped


def test_open_circuits_show_in_status_and_metrics(env: AppEnv) -> None:
    app = env.app(ASYNC_EVENTS_CIRCUIT_FAILURES=2)
    moment = time.time()
    circuits_of(get_state(app)).record({"https://hooks.example:443": [Observed(Said.FAILED, moment)] * 2}, moment)
    report = json.loads(app.test_cli_runner().invoke(args=["async-events", "status", "--json"]).output)
    circuit = report["circuits"]["https://hooks.example:443"]
    assert circuit["state"] == "open" and circuit["failures"] == 2 and circuit["cooldown_seconds"] == 5
    human = app.test_cli_runner().invoke(args=["async-events", "status"]).output
    assert "https://hooks.example:443" in human and "state open" in human
    metrics = app.test_client().get("/async-events/metrics", headers=token(app, "ops", admin=True)).get_data(True)
    assert 'async_events_circuit_open{endpoint="https://hooks.example:443"} 1' in metrics


def test_a_probe_another_worker_holds_keeps_the_others_parked(env: AppEnv, receiver: Receiver) -> None:
    app, _, key, circuits = circuit_opened(env, receiver, "/cooled", ago=10)  # cooled down now
    assert circuits.take_probe(key, 30)  # another worker's probe is out
    place_order(app)
    run_burst(app)
    assert receiver.at("/cooled") == []  # not sent: it waits for that probe's answer
    [delivery] = deliveries(app)
    assert delivery.state == "pending" and delivery.attempt_count == 0  # parked, not an attempt
    assert delivery.next_attempt_at.timestamp() > time.time() + 1  # due again after the probe's window


def test_a_probe_whose_worker_was_lost_is_given_up_at_the_next_sweep(env: AppEnv, receiver: Receiver) -> None:
    """A probe's key names its process; once that process's liveness key is gone (it was killed
    with its probe out), the sweep gives the probe up and the parked delivery probes at once,
    instead of waiting out the probe's window (21 s with the defaults)."""
    app, _, key, circuits = circuit_opened(env, receiver, "/orphaned", ago=10)
    assert circuits.take_probe(key, 60, "lost-worker")  # a worker killed with its probe out
    place_order(app)
    run_burst(app)
    assert receiver.at("/orphaned") == [] and circuits.probe_holder(key) == "lost-worker"
    with app.app_context():
        run_maintenance(get_state(app), "sweeper", force=True)  # no liveness key of lost-worker: gone
    assert circuits.probe_holder(key) is None
    drain(app, lambda: states(app) == ["delivered"], timeout=20)
    assert len(receiver.at("/orphaned")) == 1


def test_a_backlog_behind_an_open_circuit_waits_once_and_goes_when_it_closes(env: AppEnv, receiver: Receiver) -> None:
    # A cool-down long enough for twenty orders to be placed and claimed while it lasts, on a busy machine.
    app, url = open_a_circuit(env, receiver, "/backlog", cooldown=8)
    # The failed one's retry meets the open circuit first: parked until the cool-down ends.
    drain(app, lambda: deliveries(app)[0].next_attempt_at.timestamp() > time.time() + 1, timeout=30)
    for _ in range(20):
        place_order(app)
    run_burst(app)
    waiting = deliveries(app)
    assert len(waiting) == 21 and {d.state for d in waiting} == {"pending", "retrying"}
    settings = get_state(app).settings
    [soon] = [d for d in waiting if d.next_attempt_at.timestamp() < time.time() + 10]
    assert soon.attempt_count == 3  # the failed one's retry wakes when the cool-down ends, to be the probe
    later = time.time() + settings.circuit_max_cooldown  # the twenty new ones wait for the circuit to close
    assert all(d.next_attempt_at.timestamp() > later for d in waiting if d.id != soon.id)
    drain(app, lambda: states(app) == ["delivered"] * 21, timeout=60)  # the probe succeeded: all released
    assert len(receiver.at("/backlog")) == 3 + 1 + 20 and circuit_fields(app, url) == {}


def test_sends_queued_for_an_endpoint_whose_circuit_opens_are_not_attempted(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(**SETTINGS, ASYNC_EVENTS_ENDPOINT_CONCURRENCY=1)
    url = receiver.respond("/sinking", [503], delay=0.3)
    subscribe(app, url)
    for _ in range(16):
        place_order(app)
    run_burst(app)  # one job claims all sixteen; they queue for the endpoint's one thread
    circuit = circuit_fields(app, url)
    assert circuit[b"failures"] == b"3"
    opened_at = float(circuit[b"open_until"]) - float(circuit[b"cooldown"])
    # Opened once the third failure was recorded: what still waited then was taken back (one send
    # may start between the opening and the taking back).
    sent = receiver.at("/sinking")
    assert len([request for request in sent if request.at > opened_at]) <= 1
    assert len(sent) < 16
    assert sum(d.attempt_count == 0 for d in deliveries(app)) == 16 - len(sent)  # never attempted, nothing counted


@pytest.mark.one_database
def test_two_worker_processes_share_one_circuit_and_send_one_probe(
    env: AppEnv, receiver: Receiver, worker_process: Callable[..., WorkerProcess]
) -> None:
    app = env.app(**SETTINGS, ASYNC_EVENTS_ENDPOINT_CONCURRENCY=1)
    url = receiver.respond("/shared", [503])
    subscribe(app, url)
    for _ in range(10):
        place_order(app)
    worker_process()
    worker_process()
    wait_for(lambda: circuit_fields(app, url).get(b"open_until", b"") != b"", timeout=30)
    opened_at = time.time()
    time.sleep(COOLDOWN * 2.5)  # a cool-down, one probe (it fails), then one twice as long
    # After the sends that were already under way when it opened (they answer at once): one probe.
    during = [r.at for r in receiver.at("/shared") if r.at > opened_at + 1]
    assert len(during) == 1, during  # one probe between both workers, none while it cooled down
    assert during[0] - opened_at >= COOLDOWN - 0.5
    assert all(d.attempt_count <= 4 for d in deliveries(app))  # waiting behind it was never an attempt


def test_maintenance_wakes_a_probe_when_no_parked_delivery_comes_back_for_it(env: AppEnv, receiver: Receiver) -> None:
    from flask_async_events.worker.maintenance import wake_probes

    app, url, key, circuits = circuit_opened(env, receiver, "/forgotten", ago=0)  # open for a cool-down
    assert circuits.take_waker(key, 60)  # as if the delivery meant to wake for the probe were lost
    for _ in range(3):
        place_order(app)
    run_burst(app)
    assert receiver.at("/forgotten") == [] and all(
        d.next_attempt_at.timestamp() > time.time() + 60 for d in deliveries(app)
    )
    time.sleep(COOLDOWN + 0.5)  # cooled down: nothing comes back by itself
    with app.app_context():
        assert wake_probes(get_state()) == 1
    drain(app, lambda: states(app) == ["delivered"] * 3, timeout=30)  # the probe succeeded: the rest released
    assert len(receiver.at("/forgotten")) == 3 and circuit_fields(app, url) == {}
