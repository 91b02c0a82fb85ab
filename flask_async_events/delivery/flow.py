"""Who may be sent to now: what a subscription's rate limit and an endpoint's circuit hold back.

A deliver job asks here after its claim. Deliveries that may not go yet are *parked*: handed back
unsent with their due time moved to when they may, so they wait in the database (not in a loop of
claims) and are not attempts. :func:`pace` applies rate limits (:mod:`.rate_limits`) to claimed
deliveries, before their sends are made; :func:`hold_back` applies circuits (:mod:`.circuits`) to
the sends; :func:`feed` tells the circuits what recorded outcomes say; :func:`hold` moves what
waits for an endpoint out of the way when its circuit opens, and :func:`release` lets it go when
the endpoint answers again.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, and_, func, or_, select, update

from flask_async_events.config import Settings
from flask_async_events.delivery.circuits import Circuit, Circuits, Observed, circuits_of, endpoint_key
from flask_async_events.delivery.health import said
from flask_async_events.delivery.rate_limits import RateLimits
from flask_async_events.delivery.retry import due_at
from flask_async_events.delivery.types import Claimed, Outcome, Parked, SendTask
from flask_async_events.models import DbSession, Delivery, DeliveryState, Subscription, utcnow
from flask_async_events.state import AppState

RELEASE_CHUNK = 1000


def pace(state: AppState, items: list[Claimed]) -> tuple[list[Claimed], list[Parked]]:
    """The claimed deliveries that their subscriptions' rate limits let go now, and the others
    parked until their slots (one Redis call per rate-limited subscription)."""
    limited = _rate_limited(items)
    if not limited:
        return items, []
    limits, moment = RateLimits(state.queues.connection), utcnow()
    parked: dict[int, Parked] = {}
    for subscription_id, group in limited.items():
        waits = limits.waits(subscription_id, group[0].rate_limit or 0, [item.id for item in group])
        parked.update(
            (item.id, Parked(item, due_at(moment, wait))) for item, wait in zip(group, waits, strict=True) if wait > 0
        )
    return [item for item in items if item.id not in parked], list(parked.values())


def _rate_limited(items: list[Claimed]) -> dict[int, list[Claimed]]:
    """The claimed deliveries of enabled, rate-limited subscriptions, by subscription."""
    limited: dict[int, list[Claimed]] = defaultdict(list)
    for item in items:
        if item.enabled and item.rate_limit:
            limited[item.subscription_id].append(item)
    return limited


def hold_back(state: AppState, sends: list[SendTask], holder: str) -> tuple[list[SendTask], list[Parked]]:
    """The sends that may start now, and the deliveries parked behind circuits.

    Behind an open circuit, one delivery (of all workers' parked there) waits until the cool-down
    ends, to be the probe, and the others until the circuit closes, which releases them
    (:func:`release`), or ``ASYNC_EVENTS_CIRCUIT_MAX_COOLDOWN`` after that at the latest: so a
    backlog behind a dead endpoint is touched once, not at every probe. In a cooled-down circuit the
    first send is the probe if no other worker's is out; otherwise one waits for its answer.
    ``holder`` names this process (its attempt journal's owner) on the probe it takes."""
    keys = {id(task): endpoint_key(task.payload[0].recipient_url) for task in sends if len(task.payload) == 1}
    circuits = circuits_of(state)
    found = circuits.read(key for key in keys.values() if key)
    if not any(circuit.open_until is not None for circuit in found.values()):
        return sends, []
    gate = _CircuitGate(circuits, found, state.settings, holder, time.time())
    moment = utcnow()
    starting: list[SendTask] = []
    parked: list[Parked] = []
    for task in sends:
        wait = gate.wait(keys.get(id(task)))
        if wait is None:
            starting.append(task)
        else:
            parked.extend(Parked(item, due_at(moment, wait)) for item in task.payload)
    return starting, parked


@dataclass
class _CircuitGate:
    """What one batch's circuits say of each send: go, or wait so long. Each endpoint's probe is
    asked for once per batch, and one parked delivery per endpoint wakes for the next probe."""

    circuits: Circuits
    found: Mapping[str, Circuit]
    settings: Settings
    holder: str
    now: float
    probed: set[str] = field(default_factory=set)
    asked: set[str] = field(default_factory=set)

    def wait(self, key: str | None) -> float | None:
        """Seconds a send to the endpoint ``key`` waits (None: it goes now)."""
        circuit = self.found.get(key) if key else None
        if key is None or circuit is None or circuit.open_until is None:
            return None
        if circuit.is_open(self.now):
            wait = circuit.open_until - self.now
        elif self._takes_probe(key):
            return None
        else:
            wait = self.settings.probe_window
        return wait if self._wakes(key, wait) else wait + self.settings.circuit_max_cooldown

    def _takes_probe(self, key: str) -> bool:
        """Whether this send is the cooled-down circuit's probe (the first of the batch, if no
        other worker's probe is out)."""
        if key in self.probed:
            return False
        self.probed.add(key)
        return self.circuits.take_probe(key, self.settings.probe_window, self.holder)

    def _wakes(self, key: str, wait: float) -> bool:
        """Whether a delivery parked for ``key`` is the one that wakes for its probe; the others
        wait for the circuit to close."""
        wakes = key not in self.asked and self.circuits.take_waker(key, wait)
        self.asked.add(key)
        return wakes


def feed(state: AppState, outcomes: Sequence[Outcome]) -> dict[str, str]:
    """Tell the circuits what recorded outcomes say about their endpoints, in order, with when each
    attempt started; return the endpoints whose circuit changed (``opened``, ``reopened``, ``closed``)."""
    now = time.time()
    observed: dict[str, list[Observed]] = defaultdict(list)
    for outcome in outcomes:
        key = endpoint_key(outcome.item.recipient_url)
        if key is not None:
            observed[key].append(Observed(said(outcome), now - (outcome.duration_ms or 0) / 1000))
    return circuits_of(state).record(observed, now)


def release(session: DbSession, endpoints: Collection[str], now: datetime) -> list[int]:
    """Make every waiting delivery to ``endpoints`` due now (they answer again): those parked
    behind their circuits and those waiting out a retry delay. Return their ids; the caller commits."""
    waiting = _waiting_for(session, endpoints)
    if waiting is None:
        return []
    waiting = and_(waiting, Delivery.next_attempt_at > now)
    ids = list(session.scalars(select(Delivery.id).where(waiting)))
    for chunk in range(0, len(ids), RELEASE_CHUNK):
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids[chunk : chunk + RELEASE_CHUNK]), waiting)
            .values(next_attempt_at=now)
            .execution_options(synchronize_session=False)
        )
    return ids


def hold(session: DbSession, endpoints: Collection[str], until: datetime, keep: Collection[int]) -> None:
    """Move every waiting delivery to ``endpoints`` (their circuits just opened) to ``until``,
    except ``keep`` (the failures just recorded, whose retries meet the open circuit and wake
    for its probe): one statement, instead of each coming back to find the circuit open. The
    caller commits; :func:`release` brings them back when the endpoint answers."""
    waiting = _waiting_for(session, endpoints)
    if waiting is None:
        return
    session.execute(
        update(Delivery)
        .where(waiting, Delivery.next_attempt_at < until, Delivery.id.not_in(sorted(keep)))
        .values(next_attempt_at=until)
        .execution_options(synchronize_session=False)
    )


def wake(session: DbSession, endpoint: str, now: datetime) -> int | None:
    """Make the next delivery waiting for ``endpoint`` due now, to be the probe of its cooled-down
    circuit (maintenance does this when no delivery came back for it); return its id."""
    waiting = _waiting_for(session, [endpoint])
    if waiting is None:
        return None
    first = session.scalar(select(Delivery.id).where(waiting).order_by(Delivery.next_attempt_at).limit(1))
    if first is not None:
        session.execute(update(Delivery).where(Delivery.id == first, waiting).values(next_attempt_at=now))
    return first


def _waiting_for(session: DbSession, endpoints: Collection[str]) -> ColumnElement[bool] | None:
    """The condition for deliveries to ``endpoints`` that wait to be claimed (None: there are
    no enabled subscriptions there). Subscriptions are matched by host, then by endpoint."""
    hosts = {urlsplit(endpoint).hostname or "" for endpoint in endpoints}
    candidates = session.execute(
        select(Subscription.subscription_id, Subscription.recipient_url).where(
            Subscription.status.is_(True), or_(*(func.lower(Subscription.recipient_url).contains(h) for h in hosts))
        )
    ).all()
    subscription_ids = [row.subscription_id for row in candidates if endpoint_key(row.recipient_url) in endpoints]
    if not subscription_ids:
        return None
    return and_(Delivery.subscription_id.in_(subscription_ids), Delivery.state.in_(DeliveryState.CLAIMABLE))
