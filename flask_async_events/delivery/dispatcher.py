"""A worker process's delivery engine: deliver jobs hand their sends over and return at once; the
sends run on the :class:`~flask_async_events.delivery.sender.Sender`'s threads while the worker goes on to
its next job; a recording thread writes results as they arrive, a batch at a time.

So one job never waits for its slowest send, and RQ's per-job cost is paid per batch, not per
delivery. Each send is noted in the attempt journal (:mod:`flask_async_events.delivery.journal`) as
it starts and ends, so a worker killed mid-send loses no answer it had: maintenance, settling its
claims, records them instead of sending again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial

from flask import Flask, current_app

from flask_async_events.delivery.flow import hold_back
from flask_async_events.delivery.journal import AttemptJournal
from flask_async_events.delivery.recording import record
from flask_async_events.delivery.retry import due_at
from flask_async_events.delivery.sender import Sender, Task
from flask_async_events.delivery.spool import spool_directory
from flask_async_events.delivery.types import Claimed, Outcome, Parked, Released, SendResult, SendTask
from flask_async_events.models import utcnow
from flask_async_events.state import AppState, get_state
from flask_async_events.threads import start_thread

log = logging.getLogger("flask_async_events")

RECORD_BATCH = 500
# After recording a batch, the thread waits this long for more results: each batch is a transaction
# of about seven statements whatever its size, and results arrive a few at a time.
RECORD_LINGER = 0.01
SWEEP_INTERVAL = 0.1


def dispatcher_of(state: AppState) -> Dispatcher:
    """The current app's dispatcher in this process, made by its first deliver job (only workers
    need one) and kept on the app's state."""
    if state.dispatcher is None:
        state.dispatcher = Dispatcher(current_app._get_current_object(), state)  # type: ignore[attr-defined]
    return state.dispatcher


def running_dispatcher(app: Flask) -> Dispatcher | None:
    """The app's dispatcher, if this process has made one."""
    return get_state(app).dispatcher


def drain(app: Flask, timeout: float, *, release_waiting: bool = False) -> None:
    """Let the sends in flight end and their results be recorded (a worker that stops)."""
    dispatcher = running_dispatcher(app)
    if dispatcher is not None and not dispatcher.drain(timeout, release_waiting=release_waiting):
        log.warning("Deliveries still in flight after %.0fs; their leases will hand them to another worker", timeout)


def shut_down(app: Flask) -> None:
    """Stop the app's delivery threads (tests, and apps that make many app objects)."""
    state = get_state(app)
    dispatcher, state.dispatcher = state.dispatcher, None
    if dispatcher is not None:
        settings = dispatcher.settings
        dispatcher.close(settings.connect_timeout + settings.timeout)


class Dispatcher:
    """Owns the sender threads and the recording thread of one worker process."""

    def __init__(self, app: Flask, state: AppState) -> None:
        self._app = app
        self._state = state
        self.settings = settings = state.settings
        self.sender: Sender[SendResult, list[Claimed]] = Sender(
            settings.delivery_threads, settings.endpoint_concurrency, self._finished, self._expired
        )
        self.journal = AttemptJournal(state.queues.connection, spool_directory(settings))
        self._results: queue.SimpleQueue[Outcome | Released | Parked] = queue.SimpleQueue()
        self._unrecorded = 0
        self._lock = threading.Condition()
        self._closed = False
        self._stopping = False
        self._next_turn: dict[str, float] = {}  # per endpoint: the time the next expired send is parked until
        self._thread = start_thread(self._record_loop, "record")

    def submit(self, outcomes: list[Outcome], sends: list[SendTask], parked: list[Parked]) -> None:
        """Record ``outcomes`` (decided without sending) and ``parked`` deliveries, and start
        ``sends``, each journaled."""
        self._put(outcomes)
        self._put(parked)
        self.sender.submit(
            Task(task.endpoint, partial(self._journaled, task.run, task.payload), task.deadline, task.payload)
            for task in sends
        )

    def saturated_subscriptions(self) -> set[int]:
        """Subscriptions whose endpoint has a full cap and a queue: claiming more for them only waits."""
        return {item.subscription_id for task in self.sender.saturated() for item in task.payload}

    def busy(self) -> bool:
        with self._lock:
            return self._unrecorded > 0 or not self.sender.idle()

    def drain(self, timeout: float, *, release_waiting: bool = False) -> bool:
        """Wait until every send ended and every result is recorded. ``release_waiting`` hands
        back what has not started yet instead of sending it (a worker asked to stop)."""
        deadline = time.monotonic() + timeout
        if release_waiting:
            self._stopping = True  # what has not started goes back due now, for another worker
            self.sender.sweep(everything=True)
        if not self.sender.wait_idle(timeout):
            return False
        with self._lock:
            return self._lock.wait_for(lambda: not self._unrecorded, max(0.0, deadline - time.monotonic()))

    def close(self, timeout: float) -> None:
        drained = self.drain(timeout, release_waiting=True)
        self._closed = True
        self.sender.shutdown()
        self._thread.join(timeout=1)
        self.journal.close(drained=drained)

    def _journaled(self, run: Callable[[], SendResult], items: list[Claimed]) -> SendResult:
        """On a sending thread: note the attempt's start, make it, note its outcome."""
        self.journal.started(items)
        try:
            results = run()
        except BaseException:  # not sent after all: the task is handed back
            self.journal.forget([item.attempt_key for item in items])
            raise
        self.journal.finished(items, results)
        return results

    def _finished(self, task: SendTask, results: SendResult) -> None:
        self._put([Outcome(item, result, ms) for item, (result, ms) in zip(task.payload, results, strict=True)])

    def _expired(self, tasks: list[SendTask]) -> None:
        """Sends that did not start in time: their endpoints were full. Those behind a circuit that
        has opened meanwhile wait for it (:func:`~flask_async_events.delivery.flow.hold_back`);
        each other one is parked until about when a thread there would be free for it (one
        attempt's time, plus one attempt's time per ``ASYNC_EVENTS_ENDPOINT_CONCURRENCY`` parked
        before it), so a deep backlog comes back at the pace it can be sent, not all at once."""
        if self._stopping:
            self._put([Released(item) for task in tasks for item in task.payload])
            return
        tasks, held = hold_back(self._state, tasks, self.journal.owner)
        now, moment = time.time(), utcnow()
        attempt = self.settings.timeout
        step = attempt / self.settings.endpoint_concurrency
        parked: list[Parked] = list(held)
        with self._lock:
            for task in tasks:
                turn = max(now + attempt, self._next_turn.get(task.endpoint, 0.0))
                self._next_turn[task.endpoint] = turn + step
                parked.extend(Parked(item, due_at(moment, turn - now)) for item in task.payload)
            for endpoint in [e for e, turn in self._next_turn.items() if turn < now]:
                del self._next_turn[endpoint]  # long past: forget it
        self._put(parked)

    def _put(self, entries: Sequence[Outcome | Released | Parked]) -> None:
        if not entries:
            return
        with self._lock:
            self._unrecorded += len(entries)
        for entry in entries:
            self._results.put(entry)

    def _record_loop(self) -> None:
        while not self._closed:
            try:
                batch = [self._results.get(timeout=SWEEP_INTERVAL)]
            except queue.Empty:
                self.sender.sweep()
                continue
            while len(batch) < RECORD_BATCH:
                try:
                    batch.append(self._results.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write(batch)
            except Exception:  # never let the thread die: the leases hand on what was not recorded
                log.exception(
                    "Recording %d delivery result(s) failed unexpectedly; any not recorded are sent again"
                    " once their claims' lease ends",
                    len(batch),
                )
            finally:
                with self._lock:
                    self._unrecorded -= len(batch)
                    self._lock.notify_all()
            self.sender.sweep()
            time.sleep(RECORD_LINGER)  # what ends meanwhile is recorded with the next batch, together

    def _write(self, batch: list[Outcome | Released | Parked]) -> None:
        """Record a batch, retrying while the database is away. Giving up (after a lease's length)
        loses nothing: the deliveries are claimed again when their lease runs out."""
        give_up = time.monotonic() + self._state.settings.claim_lease
        pause = 0.2
        while not self._recorded(batch, pause):
            if time.monotonic() + pause > give_up:
                log.error("Gave up recording %d delivery result(s); they will be sent again", len(batch))
                return
            time.sleep(pause)
            pause = min(pause * 2, 5.0)

    def _recorded(self, batch: list[Outcome | Released | Parked], pause: float) -> bool:
        """One try at recording a batch; then its attempts leave the journal, and sends waiting for
        an endpoint whose circuit just opened go back to the database. A failure says when the
        next try comes (in ``pause`` seconds)."""
        with self._app.app_context():
            try:
                opened = record(self._state, batch)
            except Exception:  # the database is down, or a signal receiver failed
                log.exception("Could not record %d delivery result(s); retrying in %.1fs", len(batch), pause)
                # Closed without a rollback: a connection left in an unknown state (a driver in
                # the middle of a command refuses one) is dropped, not handed to the next try.
                self._state.db.session().invalidate()
                return False
            attempts = [end.item.attempt_key for end in batch if isinstance(end, Outcome) and not end.cancelled]
            self.journal.forget(attempts)
            withdrawn = self.sender.withdraw(opened)
            if withdrawn:
                self._expired(withdrawn)
            return True
