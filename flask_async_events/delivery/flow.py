"""Who may be sent to now: what a subscription's rate limit and an endpoint's circuit hold back.

A deliver job asks here after its claim. Deliveries that may not go yet are *parked*: handed back
unsent with their due time moved to when they may, so they wait in the database (not in a loop of
claims) and are not attempts. :func:`pace` applies rate limits (:mod:`.rate_limits`) to claimed
deliveries, before their sends are made; :func:`hold_back` applies circuits (:mod:`.circuits`) to
the sends; :func:`feed` tells the circuits what recorded outcomes say.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence

from flask_async_events.delivery.circuits import Signal, circuits_of, endpoint_key, signal_of
from flask_async_events.delivery.rate_limits import RateLimits
from flask_async_events.delivery.retry import due_at
from flask_async_events.delivery.types import Claimed, Outcome, Parked, SendTask
from flask_async_events.models import utcnow
from flask_async_events.state import AppState


def pace(state: AppState, items: list[Claimed]) -> tuple[list[Claimed], list[Parked]]:
    """The claimed deliveries that their subscriptions' rate limits let go now, and the others
    parked until their slots (one Redis call per rate-limited subscription)."""
    limited: dict[int, list[Claimed]] = defaultdict(list)
    for item in items:
        if item.enabled and item.rate_limit:
            limited[item.subscription_id].append(item)
    if not limited:
        return items, []
    limits, moment = RateLimits(state.queues.connection), utcnow()
    parked: dict[int, Parked] = {}
    for subscription_id, group in limited.items():
        waits = limits.waits(subscription_id, group[0].rate_limit or 0, [item.id for item in group])
        for item, wait in zip(group, waits, strict=True):
            if wait > 0:
                parked[item.id] = Parked(item, due_at(moment, wait))
    return [item for item in items if item.id not in parked], list(parked.values())


def hold_back(state: AppState, sends: list[SendTask]) -> tuple[list[SendTask], list[Parked]]:
    """The sends that may start now, and the deliveries parked behind circuits: until an open one
    cools down, or, in a cooled-down one, until its one probe (the first send) has had its answer."""
    keys = {id(task): endpoint_key(task.payload[0].recipient_url) for task in sends if len(task.payload) == 1}
    circuits = circuits_of(state)
    found = circuits.read(key for key in keys.values() if key)
    if not any(circuit.open_until is not None for circuit in found.values()):
        return sends, []
    now, moment = time.time(), utcnow()
    probe_window = state.settings.probe_window
    starting: list[SendTask] = []
    parked: list[Parked] = []
    probes: dict[str, bool] = {}
    for task in sends:
        key = keys.get(id(task))
        circuit = found.get(key) if key else None
        if key is None or circuit is None or circuit.open_until is None:
            starting.append(task)
            continue
        if circuit.is_open(now):
            until = due_at(moment, circuit.open_until - now)
        else:
            if key not in probes:
                probes[key] = circuits.take_probe(key, probe_window)
                if probes[key]:
                    starting.append(task)
                    continue
            until = due_at(moment, probe_window)
        parked.extend(Parked(item, until) for item in task.payload)
    return starting, parked


def feed(state: AppState, outcomes: Sequence[Outcome]) -> None:
    """Tell the circuits what recorded outcomes say about their endpoints, in order."""
    signals: dict[str, list[Signal]] = defaultdict(list)
    for outcome in outcomes:
        key = endpoint_key(outcome.item.recipient_url)
        if key is not None:
            signals[key].append(signal_of(outcome))
    circuits_of(state).record(signals, time.time())
