"""Bulk operations started from a web request (a recovery), run by the workers a slice at a time,
with their progress kept in Redis for the page or the client that started them.

A web request only counts what the operation will go through and answers at once with the
operation's id; no web thread ever waits for it, however many events it reads or payloads it
resolves. A worker runs it in slices of about :data:`SLICE_SECONDS`, each a job on the retry queue
that enqueues the next: a long operation takes turns with the deliveries, never holds a worker.

Its state is one Redis hash that expires a day after its last step. The work itself is in the
database and every step of it is idempotent (a replayed dead letter is no longer dead; a missed
event that got its delivery is no longer missed), so an operation Redis forgot can simply be
started again; a slice that failed (the database away) is retried by RQ from where it was.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask_async_events.auth import Principal
from flask_async_events.models import Subscription, utcnow
from flask_async_events.operations.missed import count_unreceived, recover_missed_batch
from flask_async_events.operations.replay import Step, check_recoverable, count_dead, retry_dead_batch
from flask_async_events.state import AppState

log = logging.getLogger("flask_async_events")

KEY = "async_events:operation:{id}"
KEPT_SECONDS = 24 * 3600
SLICE_SECONDS = 1.0
BATCH = 500
RECOVER = "recover"
STAGES = ("dead", "missed")  # a recovery replays the dead letters first, then delivers what was missed


@dataclass(frozen=True)
class Operation:
    """What a bulk operation is and how far it got. ``status``: queued, running, finished or
    failed; ``done`` of ``total`` rows gone through; ``sent``: deliveries replayed or made."""

    id: str
    kind: str
    owner: str
    subscription_id: int
    status: str
    done: int
    total: int
    sent: int
    message: str
    created: str

    @property
    def running(self) -> bool:
        return self.status in ("queued", "running")


def start_recovery(
    state: AppState, subscription: Subscription, since: datetime, *, missed: bool, caller: Principal | None
) -> Operation:
    """Start recovering a subscription (its dead letters since ``since``; with ``missed``, the
    events it never got, never from before it was made); :class:`ReplayError` if it is disabled."""
    check_recoverable(state, subscription.subscription_id)
    total = count_dead(state, subscription_id=subscription.subscription_id, since=since)
    if missed:
        total += count_unreceived(state, subscription, since)
    state.db.session.rollback()
    fields = {
        "kind": RECOVER,
        "owner": caller.owner if caller is not None else "",
        "subscription_id": subscription.subscription_id,
        "since": since.isoformat(),
        "stages": ",".join(STAGES if missed else STAGES[:1]),
        "after": 0,
        "status": "queued",
        "done": 0,
        "total": total,
        "sent": 0,
        "message": "",
        "created": utcnow().isoformat(timespec="seconds"),
    }
    operation_id = uuid.uuid4().hex
    _save(state, operation_id, fields)
    state.queues.enqueue_operation(operation_id)
    return _operation(operation_id, fields)


def find_operation(state: AppState, operation_id: str, caller: Principal) -> Operation | None:
    """The operation with this id if the caller may see it (its own; an admin: any), else None."""
    if not operation_id.isalnum() or len(operation_id) > 64:
        return None
    fields = _load(state, operation_id)
    if fields is None or (not caller.is_admin and fields["owner"] != caller.owner):
        return None
    return _operation(operation_id, fields)


def run_slice(state: AppState, operation_id: str) -> None:
    """Run an operation for about :data:`SLICE_SECONDS`, then enqueue the rest (the RQ job's body)."""
    fields = _load(state, operation_id)
    if fields is None or fields["status"] in ("finished", "failed"):
        return
    fields["status"] = "running"
    deadline = time.monotonic() + SLICE_SECONDS
    try:
        while fields["stages"] and time.monotonic() < deadline:
            _advance(state, fields)
    except Exception as exc:
        state.db.session.rollback()
        fields["message"] = f"stopped by an error, retried from where it was: {exc}"
        _save(state, operation_id, fields)
        raise
    fields["status"] = "running" if fields["stages"] else "finished"
    _save(state, operation_id, fields)
    if fields["stages"]:
        state.queues.enqueue_operation(operation_id)
    else:
        log.info("Operation %s (%s of subscription %s) finished", operation_id, RECOVER, fields["subscription_id"])


def _advance(state: AppState, fields: dict[str, Any]) -> None:
    """One batch of the operation's current stage; the next stage once it has none left."""
    stage, *rest = fields["stages"].split(",")
    subscription_id, since, after = (
        int(fields["subscription_id"]),
        datetime.fromisoformat(fields["since"]),
        int(fields["after"]),
    )
    step: Step
    if stage == "dead":
        step = retry_dead_batch(state, subscription_id=subscription_id, since=since, after=after, batch_size=BATCH)
    else:
        subscription = state.db.session.get(Subscription, subscription_id)
        if subscription is None or not subscription.status:
            step = Step([], 0, None)  # unsubscribed or disabled since it started: nothing to send to
        else:
            step = recover_missed_batch(state, subscription, since, after=after, batch_size=BATCH)
    fields["done"] = int(fields["done"]) + step.examined
    fields["sent"] = int(fields["sent"]) + len(step.uuids)
    fields["after"] = 0 if step.after is None else step.after
    if step.after is None:
        fields["stages"] = ",".join(rest)


def _save(state: AppState, operation_id: str, fields: dict[str, Any]) -> None:
    key = KEY.format(id=operation_id)
    with state.queues.connection.pipeline() as pipe:
        pipe.hset(key, mapping={name: str(value) for name, value in fields.items()})
        pipe.expire(key, KEPT_SECONDS)
        pipe.execute()


def _load(state: AppState, operation_id: str) -> dict[str, Any] | None:
    raw: dict[bytes, bytes] = state.queues.connection.hgetall(KEY.format(id=operation_id))  # type: ignore[assignment]
    if not raw:
        return None
    return {key.decode(): value.decode() for key, value in raw.items()}


def _operation(operation_id: str, fields: dict[str, Any]) -> Operation:
    return Operation(
        id=operation_id,
        kind=str(fields["kind"]),
        owner=str(fields["owner"]),
        subscription_id=int(fields["subscription_id"]),
        status=str(fields["status"]),
        done=int(fields["done"]),
        total=int(fields["total"]),
        sent=int(fields["sent"]),
        message=str(fields["message"]),
        created=str(fields["created"]),
    )
