"""The circuit breaker's decision, without Redis: a table of circuits and observations (a signal and
when its attempt started) and what follows; then the same decision applied in Redis by two workers
at once."""

from __future__ import annotations

import threading

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from flask_async_events.delivery.circuits import Circuit, Circuits, Observed, Rules, after, endpoint_key
from flask_async_events.delivery.health import Said, said
from flask_async_events.delivery.types import Outcome
from flask_async_events.notifiers.base import NotifyResult
from tests.conftest import RedisServer
from tests.delivery.test_verdicts import ITEM

NOW = 1_000_000.0
# Attempts that started a second ago: after the last answer of the circuits below, unless said.
UP, DOWN, NONE = (Observed(told, NOW - 1) for told in (Said.SUCCEEDED, Said.FAILED, Said.NOT_THE_ENDPOINT))
REFUSED, UNREACHABLE = Observed(Said.REFUSED, NOW - 1), Observed(Said.UNREACHABLE, NOW - 1)
OLD_DOWN = Observed(Said.FAILED, NOW - 10)  # a timeout that began before the endpoint last answered
ANSWERED = NOW - 5  # when the endpoint last answered
CLOSED = Circuit()
OPEN = Circuit(failures=3, open_until=NOW + 5, cooldown=5)  # cooling down
COOLED = Circuit(failures=3, open_until=NOW - 1, cooldown=5)  # half-open: one probe may go


@pytest.mark.parametrize(
    ("circuit", "observed", "expected", "change"),
    [
        (CLOSED, DOWN, Circuit(failures=1), None),
        (Circuit(failures=1), DOWN, Circuit(failures=2), None),
        (Circuit(failures=2), DOWN, Circuit(3, NOW + 5, 5), "opened"),  # the third in a row opens it
        (Circuit(failures=2), UP, Circuit(answered_at=NOW), None),  # an answer resets the count
        (Circuit(failures=2), NONE, Circuit(failures=2), None),
        (Circuit(failures=2), REFUSED, Circuit(answered_at=NOW), None),  # a 4xx is an answer
        (Circuit(failures=2), UNREACHABLE, Circuit(failures=2), None),  # nothing was sent
        (Circuit(answered_at=ANSWERED), OLD_DOWN, Circuit(answered_at=ANSWERED), None),  # older than the answer
        (Circuit(2, answered_at=ANSWERED), OLD_DOWN, Circuit(2, answered_at=ANSWERED), None),
        (Circuit(2, answered_at=ANSWERED), DOWN, Circuit(3, NOW + 5, 5, ANSWERED), "opened"),  # newer: counts
        (OPEN, DOWN, OPEN, None),  # a straggler from before it opened changes nothing
        (OPEN, UP, Circuit(answered_at=NOW), "closed"),
        (COOLED, DOWN, Circuit(4, NOW + 10, 10), "reopened"),  # the probe failed: twice as long
        (Circuit(9, NOW - 1, 400), DOWN, Circuit(10, NOW + 600, 600), "reopened"),  # capped
        (COOLED, UP, Circuit(answered_at=NOW), "closed"),  # the probe answered
        (COOLED, NONE, COOLED, None),
    ],
)
def test_the_circuit_after_each_observation(
    circuit: Circuit, observed: Observed, expected: Circuit, change: str | None
) -> None:
    assert after(circuit, observed, NOW, Rules(3)) == (expected, change)


def test_timeouts_that_end_together_after_quicker_answers_do_not_open_it() -> None:
    """A burst's slow failures (timeouts of a second) end in a row, after the quick answers of the
    same burst were recorded: by when they happened they were not consecutive, and the circuit
    stays closed. Ten that started after the last answer open it."""
    circuit, _ = after(CLOSED, Observed(Said.SUCCEEDED, NOW - 1.2), NOW - 0.9, Rules(10))
    for _ in range(12):
        circuit, change = after(circuit, Observed(Said.FAILED, NOW - 1.0), NOW, Rules(10))
        assert change is None
    assert circuit.clean
    for _ in range(10):
        circuit, change = after(circuit, Observed(Said.FAILED, NOW - 0.5), NOW, Rules(10))
    assert change == "opened"


def test_the_first_cool_down_is_configured_and_doubles_up_to_the_longest() -> None:
    rules = Rules(1, first_cooldown=0.5, max_cooldown=3)
    circuit, change = after(CLOSED, DOWN, NOW, rules)
    cooldowns = [circuit.cooldown]
    for step in range(1, 5):  # each probe fails once the circuit has cooled down
        circuit, change = after(circuit, DOWN, circuit.open_until or NOW, rules)
        assert change == "reopened", step
        cooldowns.append(circuit.cooldown)
    assert cooldowns == [0.5, 1, 2, 3, 3]


def test_a_threshold_of_zero_never_opens() -> None:
    circuit = CLOSED
    for _ in range(100):
        circuit, change = after(circuit, DOWN, NOW, Rules(0))
        assert change is None and circuit.open_until is None


@pytest.mark.parametrize(
    ("result", "told"),
    [
        (NotifyResult(True, status_code=200), Said.SUCCEEDED),
        (NotifyResult(False, status_code=404), Said.REFUSED),  # it answered: the endpoint is there
        (NotifyResult(False, status_code=410, gone=True), Said.REFUSED),
        (NotifyResult(False, retryable=True, status_code=503), Said.FAILED),
        (NotifyResult(False, retryable=True, error_class="Timeout"), Said.FAILED),
        (NotifyResult(False, retryable=True, error_class="ConnectionError"), Said.FAILED),
        (NotifyResult(False, error_class="ForbiddenAddress"), Said.UNREACHABLE),  # its address: nothing sent
        (NotifyResult(False, retryable=True, error_class="ResolveError"), Said.NOT_THE_ENDPOINT),  # the host's code
        (NotifyResult(False, retryable=True, error_class="SecretError"), Said.NOT_THE_ENDPOINT),  # this server's keys
        (NotifyResult(False, error_class="UnknownNotifier"), Said.NOT_THE_ENDPOINT),
    ],
)
def test_what_an_outcome_says_about_its_endpoint(result: NotifyResult, told: Said) -> None:
    assert said(Outcome(ITEM, result)) is told


def test_cancelled_and_interrupted_say_nothing() -> None:
    failed = NotifyResult(False, retryable=True, status_code=503)
    assert said(Outcome(ITEM, failed, cancelled=True)) is Said.NOT_THE_ENDPOINT
    assert said(Outcome(ITEM, failed, interrupted=True)) is Said.NOT_THE_ENDPOINT


@pytest.mark.parametrize(
    ("told", "against_subscription", "answered", "down"),
    [
        (Said.SUCCEEDED, False, True, False),
        (Said.REFUSED, True, True, False),
        (Said.FAILED, True, False, True),
        (Said.UNREACHABLE, True, False, False),
        (Said.NOT_THE_ENDPOINT, False, False, False),
    ],
)
def test_health_and_circuits_read_the_one_classification(
    told: Said, against_subscription: bool, answered: bool, down: bool
) -> None:
    assert (told.against_subscription, told.answered, told.down) == (against_subscription, answered, down)


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://Example.com/hooks?a=1", "https://example.com:443"),
        ("http://example.com:8080/x", "http://example.com:8080"),
        ("http://[::1]/x", "http://::1:80"),
        ("orders", None),  # an EventBridge bus
        ("arn:aws:events:eu-west-1:123456789012:event-bus/orders", None),
        ("http://example.com:99999/x", None),
    ],
)
def test_an_endpoint_is_scheme_host_and_port(url: str, key: str | None) -> None:
    assert endpoint_key(url) == key


def test_two_workers_share_one_circuit_in_redis(clean_redis: RedisServer) -> None:
    circuits = Circuits(clean_redis.client(), Rules(10))
    endpoint = "https://example.com:443"
    workers = [threading.Thread(target=circuits.record, args=({endpoint: [DOWN] * 5}, NOW)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    [(name, circuit)] = circuits.read([endpoint]).items()  # 5 + 5 failures, none lost to the race
    assert name == endpoint and circuit == Circuit(10, NOW + 5, 5)
    assert circuits.take_probe(endpoint, 20) and not circuits.take_probe(endpoint, 20)  # one probe only
    circuits.record({endpoint: [Observed(Said.SUCCEEDED, NOW + 5.5)]}, NOW + 6)
    assert circuits.read([endpoint]) == {}  # closed: only when it last answered is kept


def test_without_redis_every_circuit_reads_closed(clean_redis: RedisServer) -> None:
    Circuits(clean_redis.client(), Rules(1)).record({"https://a:443": [DOWN]}, NOW)
    gone = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )  # nothing listens there
    circuits = Circuits(gone, Rules(1))
    assert circuits.read(["https://a:443"]) == {}
    circuits.record({"https://a:443": [DOWN]}, NOW)  # dropped with a warning, never raised
    assert not circuits.take_probe("https://a:443", 1)
