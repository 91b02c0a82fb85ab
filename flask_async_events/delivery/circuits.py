"""A circuit breaker per endpoint, shared by every worker through Redis.

An endpoint is a recipient URL's scheme, host and port. After ``ASYNC_EVENTS_CIRCUIT_FAILURES``
consecutive retryable failures its circuit opens: deliveries to it are not attempted (and not
counted as attempts) until a cool-down passes, ``ASYNC_EVENTS_CIRCUIT_COOLDOWN`` at first, doubling
on each reopening up to ``ASYNC_EVENTS_CIRCUIT_MAX_COOLDOWN``. Then one probe is sent (half-open): a success closes the
circuit, a failure opens it again for longer. Deliveries that wait are parked in the database, due
again when the circuit may let them through, so a deep backlog behind an open circuit costs no
work per second; their retry schedule is where it was, since waiting is not an attempt.

:func:`after` is the decision, a pure function; :class:`Circuits` applies it in Redis, atomically
across workers (``WATCH``/``MULTI``). The state lives under keys with a lifetime and can be lost:
a lost circuit is a closed one, which costs at worst a few more attempts before it opens again,
never a lost or a doubled delivery (the database still holds every delivery and its claim).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from redis import Redis
from redis.exceptions import RedisError, WatchError
from redis.typing import EncodableT, FieldT

from flask_async_events.delivery.health import Said
from flask_async_events.state import AppState

log = logging.getLogger("flask_async_events")

KEY = "async_events:circuit:{}"
PROBE_KEY = "async_events:circuit-probe:{}"  # holds the name of the process whose probe is out
# KEYS[1]: a key; ARGV[1]: the value it must still hold to be deleted.
_DELETE_IF = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
WAKER_KEY = "async_events:circuit-waker:{}"
DEFAULT_PORTS = {"http": 80, "https": 443}
WATCH_TRIES = 3


@dataclass(frozen=True)
class Rules:
    """When a circuit opens (``threshold`` consecutive failures; 0: never) and for how long: the
    first cool-down, doubled on each reopening up to the longest."""

    threshold: int
    first_cooldown: float = 5.0
    max_cooldown: float = 600.0

    def cooldown_after(self, last: float) -> float:
        """The cool-down that follows one of ``last`` seconds (0: the circuit was closed)."""
        return min(max(last * 2, self.first_cooldown), self.max_cooldown)


@dataclass(frozen=True)
class Observed:
    """What one attempt said about its endpoint (:mod:`~flask_async_events.delivery.health`), and
    when it started (unix time)."""

    said: Said
    started: float


@dataclass(frozen=True)
class Circuit:
    """One endpoint's circuit. ``open_until``: unix time its cool-down ends (None: closed);
    ``answered_at``: when the endpoint last answered (an attempt older than that says nothing new)."""

    failures: int = 0
    open_until: float | None = None
    cooldown: float = 0.0
    answered_at: float = 0.0

    @property
    def clean(self) -> bool:
        """Closed, with no failure counted."""
        return self.failures == 0 and self.open_until is None

    def is_open(self, now: float) -> bool:
        """Cooling down: nothing may be sent."""
        return self.open_until is not None and now < self.open_until

    def is_half_open(self, now: float) -> bool:
        """Cooled down: one probe may be sent."""
        return self.open_until is not None and now >= self.open_until


@lru_cache(maxsize=4096)
def endpoint_key(recipient_url: str) -> str | None:
    """``scheme://host:port`` of a URL recipient; None for one that is not a URL (an EventBridge bus).
    Cached: every delivery asks three times (its send, its circuit, its outcome)."""
    try:
        parts = urlsplit(recipient_url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return f"{parts.scheme}://{parts.hostname}:{port}"


def after(circuit: Circuit, observed: Observed, now: float, rules: Rules) -> tuple[Circuit, str | None]:
    """The circuit after one observation, and what changed (``opened``, ``reopened``, ``closed``)
    or None.

    A failure of an attempt that started before the endpoint last answered changes nothing: a
    timeout that began a second ago, while quicker requests were answered, is old news (failures
    that end together, as timeouts of one burst do, are not consecutive by when they happened).
    While open, a failure changes nothing (an attempt that started before it opened); once cooled
    down, a failure (the probe's) opens it again for twice as long."""
    if observed.said.answered:
        answered = Circuit(answered_at=max(circuit.answered_at, now))
        return answered, ("closed" if circuit.open_until is not None else None)
    if not observed.said.down or observed.started < circuit.answered_at or circuit.is_open(now):
        return circuit, None
    if circuit.is_half_open(now):
        cooldown = rules.cooldown_after(circuit.cooldown)
        return Circuit(circuit.failures + 1, now + cooldown, cooldown, circuit.answered_at), "reopened"
    failures = circuit.failures + 1
    if rules.threshold and failures >= rules.threshold:
        cooldown = rules.cooldown_after(0.0)
        return Circuit(failures, now + cooldown, cooldown, circuit.answered_at), "opened"
    return Circuit(failures, answered_at=circuit.answered_at), None


def _parse(fields: Mapping[Any, Any]) -> Circuit:
    if not fields:
        return Circuit()
    until = fields.get(b"open_until")
    return Circuit(
        failures=int(fields.get(b"failures", 0)),
        open_until=float(until) if until else None,
        cooldown=float(fields.get(b"cooldown", 0)),
        answered_at=float(fields.get(b"answered_at", 0)),
    )


class Circuits:
    """The circuits of every endpoint, in Redis. Nothing here raises: without Redis every circuit
    reads as closed, and signals are dropped with a warning."""

    def __init__(self, connection: Redis, rules: Rules) -> None:
        self.connection = connection
        self.rules = rules

    def read(self, endpoints: Iterable[str]) -> dict[str, Circuit]:
        """The circuits of ``endpoints`` that are not closed."""
        names = sorted(set(endpoints))
        if not names or not self.rules.threshold:
            return {}
        try:
            circuits = self._read_all(names)
        except RedisError as exc:
            log.warning("Could not read circuit states (%s); sending as if every circuit were closed", exc)
            return {}
        return {name: circuit for name, circuit in circuits.items() if not circuit.clean}

    def not_closed(self) -> dict[str, Circuit]:
        """Every circuit that is open or cooled down, by endpoint, for operators (a SCAN: not
        for the delivery path)."""
        prefix = KEY.format("")
        try:
            keys = sorted(key.decode() for key in self.connection.scan_iter(match=prefix + "*", count=1000))
            circuits = self.read(key[len(prefix) :] for key in keys)
        except RedisError:
            return {}
        return {name: circuit for name, circuit in circuits.items() if circuit.open_until is not None}

    def take_probe(self, endpoint: str, seconds: float, holder: str = "") -> bool:
        """Whether this caller sends the one probe of a cooled-down circuit (for ``seconds`` at most);
        ``holder`` names its process, so that a probe whose process was lost can be given up."""
        key, ttl = PROBE_KEY.format(endpoint), max(1, round(seconds * 1000))
        try:
            return bool(self.connection.set(key, holder or "-", nx=True, px=ttl))
        except RedisError:
            return False

    def probe_holder(self, endpoint: str) -> str | None:
        """The process whose probe of ``endpoint`` is out (``-``: unnamed), or None if none is
        (unknown without Redis: an unnamed one)."""
        try:
            holder = self.connection.get(PROBE_KEY.format(endpoint))
        except RedisError:
            return "-"
        return holder.decode() if isinstance(holder, bytes) else holder

    def give_up_probe(self, endpoint: str, holder: str) -> None:
        """Forget the probe of a process that was lost, unless another has taken it since."""
        with contextlib.suppress(RedisError):
            self.connection.eval(_DELETE_IF, 1, PROBE_KEY.format(endpoint), holder)

    def take_waker(self, endpoint: str, seconds: float) -> bool:
        """Whether this caller parks the one delivery that wakes in ``seconds``, when the circuit
        may let one through; the others wait to be released. Without Redis: yes (too many wakers
        cost a claim each; none would leave the endpoint's deliveries waiting for their fallback)."""
        try:
            key = WAKER_KEY.format(endpoint)
            return bool(self.connection.set(key, 1, nx=True, px=max(1, round(seconds * 1000))))
        except RedisError:
            return True

    def record(self, observed: Mapping[str, Sequence[Observed]], now: float) -> dict[str, str]:
        """Apply what each endpoint's attempts said, in order, atomically; log every opening and
        closing. Return the endpoints whose circuit changed, with their last change. An endpoint
        that only answered, with a clean circuit, has the time noted in the same round trip as
        the read, and nothing more written."""
        touched = _touched(observed) if self.rules.threshold else {}
        changed: dict[str, str] = {}
        try:
            for endpoint in self._to_fold(touched, now):
                change = self._apply(endpoint, touched[endpoint], now)
                if change:
                    changed[endpoint] = change
        except RedisError as exc:
            log.warning("Could not update circuit states (%s); they catch up with the next results", exc)
        return changed

    def _to_fold(self, touched: Mapping[str, Sequence[Observed]], now: float) -> list[str]:
        """The endpoints whose attempts must be folded into their circuits: all but those that only
        answered and whose circuit is clean (their answer is noted by the read itself)."""
        if not touched:
            return []
        answered = [e for e, seen in touched.items() if not any(o.said.down for o in seen)]
        known = self._read_all(touched, answered=answered, now=now)
        return [e for e in touched if e not in answered or not known[e].clean]

    def _read_all(
        self, endpoints: Iterable[str], *, answered: Sequence[str] = (), now: float = 0.0
    ) -> dict[str, Circuit]:
        """The circuits of ``endpoints``; those in ``answered`` note ``now`` as their last answer."""
        names = list(endpoints)
        with self.connection.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(KEY.format(name))
            for name in answered:
                pipe.hset(KEY.format(name), "answered_at", repr(now))
                pipe.expire(KEY.format(name), self._lifetime)
            found = pipe.execute()[: len(names)]
        return {name: _parse(fields) for name, fields in zip(names, found, strict=True)}

    @property
    def _lifetime(self) -> int:
        """Seconds a circuit's state outlives its last change."""
        return round(self.rules.max_cooldown * 2 + 3600)

    def _apply(self, endpoint: str, seen: Sequence[Observed], now: float) -> str | None:
        key = KEY.format(endpoint)
        with self.connection.pipeline() as pipe:
            for _ in range(WATCH_TRIES):
                try:
                    pipe.watch(key)
                    circuit = _parse(pipe.hgetall(key))
                    changes = []
                    for observation in seen:
                        circuit, change = after(circuit, observation, now, self.rules)
                        if change:
                            changes.append(change)
                    pipe.multi()
                    pipe.hset(key, mapping=_fields(circuit))
                    pipe.expire(key, self._lifetime)
                    pipe.execute()
                except WatchError:  # another worker changed it meanwhile: fold again from its state
                    continue
                for change in changes:
                    _log_change(endpoint, change, circuit, now)
                return changes[-1] if changes else None
        return None


def _touched(observed: Mapping[str, Sequence[Observed]]) -> dict[str, Sequence[Observed]]:
    """The endpoints whose attempts said something about them (an answer, or being down)."""
    return {endpoint: seen for endpoint, seen in observed.items() if any(o.said.answered or o.said.down for o in seen)}


def _fields(circuit: Circuit) -> dict[FieldT, EncodableT]:
    return {
        "failures": circuit.failures,
        "open_until": "" if circuit.open_until is None else repr(circuit.open_until),
        "cooldown": repr(circuit.cooldown),
        "answered_at": repr(circuit.answered_at),
    }


def _log_change(endpoint: str, change: str, circuit: Circuit, now: float) -> None:
    if change == "closed":
        log.info("Circuit closed for %s: it answers again", endpoint)
        return
    wait = (circuit.open_until or now) - now
    log.warning(
        "Circuit %s for %s after %d consecutive failure(s): nothing is sent there for %.0f s, then one probe",
        change,
        endpoint,
        circuit.failures,
        wait,
    )


def describe(circuit: Circuit, now: float) -> dict[str, object]:
    """A circuit as ``status``, the metrics and the admin pages show it."""
    until = circuit.open_until or now
    return {
        "state": "open" if circuit.is_open(now) else "half-open",
        "failures": circuit.failures,
        "open_until": datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds"),
        "cooldown_seconds": circuit.cooldown,
    }


def circuits_of(state: AppState) -> Circuits:
    """The app's circuits, under its settings."""
    settings = state.settings
    rules = Rules(settings.circuit_failures, settings.circuit_cooldown, settings.circuit_max_cooldown)
    return Circuits(state.queues.connection, rules)
