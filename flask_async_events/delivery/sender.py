"""Concurrent sending for a whole worker process: a bounded thread pool with a per-endpoint cap, so
one slow endpoint cannot take every thread, and a deadline per task after which it is not started.

Fair sharing: while several endpoints have work, each may hold at most its share of the threads
(:func:`fair_cap`), however deep its backlog, so endpoints that hang until their timeout leave
threads for the others; an endpoint alone may use up to the per-endpoint cap.

Submitting never blocks: a deliver job hands its sends over and returns, and the worker goes on to
its next job while these run. Each task ends in exactly one callback: ``finish`` with its result,
or ``expire`` (given a list) if its deadline passed before a thread was free for it; or it is
taken back unstarted by :meth:`Sender.withdraw`.

The sending threads are the sender's own: a task is started (counted, and handed over) under the
sender's lock, and only as many idle threads are woken as tasks were started; a thread that ends a
task takes the next one itself (an executor's future and work queue per task cost a tenth of a
sending thread's CPU).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from flask_async_events.threads import start_thread

log = logging.getLogger("flask_async_events")

T = TypeVar("T")
P = TypeVar("P")


def fair_cap(threads: int, per_endpoint: int, busy_endpoints: int) -> int:
    """How many threads one endpoint may hold while ``busy_endpoints`` endpoints have work."""
    return max(1, min(per_endpoint, threads // max(1, busy_endpoints)))


@dataclass(eq=False)
class Task(Generic[T, P]):
    """One unit of work: ``endpoint`` groups tasks under the per-endpoint cap; ``payload`` is the
    caller's own (what to record when it ends)."""

    endpoint: str
    run: Callable[[], T]
    deadline: float
    payload: P = field(repr=False)


class Sender(Generic[T, P]):
    """Starts tasks round-robin over endpoints while threads and each endpoint's cap allow."""

    def __init__(
        self,
        threads: int,
        per_endpoint: int,
        finish: Callable[[Task[T, P], T], None],
        expire: Callable[[list[Task[T, P]]], None],
    ) -> None:
        self.threads = threads
        self.per_endpoint = per_endpoint
        self._finish = finish
        self._expire = expire
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a task ended or left: for those who wait on the sender
        self._work = threading.Condition(self._lock)  # a task was started: for idle sending threads
        self._started: deque[Task[T, P]] = deque()  # started, not yet taken by a thread
        self._waiting: dict[str, deque[Task[T, P]]] = {}
        self._active: dict[str, int] = {}
        self._rotation: deque[str] = deque()
        self._in_flight = 0
        self._closed = False
        self._sending_threads = [start_thread(self._serve, f"send_{index}") for index in range(threads)]

    def submit(self, tasks: Iterable[Task[T, P]]) -> None:
        with self._lock:
            if self._closed:  # nothing will start them: they go back as not started in time
                expired = list(tasks)
            else:
                for task in tasks:
                    queue = self._waiting.get(task.endpoint)
                    if queue is None:
                        queue = self._waiting[task.endpoint] = deque()
                        self._rotation.append(task.endpoint)
                    queue.append(task)
                started, expired = self._start_ready()
                self._work.notify(started)
        self._report(expired)

    def sweep(self, *, everything: bool = False) -> None:
        """Expire waiting tasks whose deadline passed (all waiting tasks if ``everything``)."""
        now = time.monotonic()
        expired: list[Task[T, P]] = []
        with self._lock:
            for endpoint, queue in list(self._waiting.items()):
                while queue and (everything or queue[0].deadline <= now):
                    expired.append(queue.popleft())
                if not queue:
                    self._forget(endpoint)
            self._changed.notify_all()
        self._report(expired)

    def withdraw(self, endpoints: Iterable[str]) -> list[Task[T, P]]:
        """Take back the tasks waiting at ``endpoints`` (their circuit opened): not started, not expired."""
        taken: list[Task[T, P]] = []
        with self._lock:
            for endpoint in endpoints:
                if endpoint in self._waiting:
                    taken.extend(self._waiting[endpoint])
                    self._forget(endpoint)
            self._changed.notify_all()
        return taken

    def startable(self) -> int:
        """How many more tasks could start at once: free threads, less what already waits for them
        at endpoints below their cap."""
        with self._lock:
            return self._startable()

    def saturated(self) -> list[Task[T, P]]:
        """The tasks waiting at endpoints whose cap is full: claiming more for those only waits."""
        with self._lock:
            cap = self._cap()
            return [
                task
                for endpoint, queue in self._waiting.items()
                if self._active.get(endpoint, 0) >= cap
                for task in queue
            ]

    def idle(self) -> bool:
        with self._lock:
            return self._idle()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing runs or waits; False if ``timeout`` passed first."""
        with self._lock:
            return self._changed.wait_for(self._idle, timeout)

    def wait_for_room(self, timeout: float) -> None:
        """Block until a thread is free for new work, or ``timeout`` passed."""
        with self._lock:
            self._changed.wait_for(lambda: self._startable() > 0, timeout)

    def shutdown(self) -> None:
        """Expire what waits, let what runs end, and stop the threads."""
        self.sweep(everything=True)
        with self._lock:
            self._closed = True
            self._work.notify_all()
        for thread in self._sending_threads:
            thread.join()

    def _idle(self) -> bool:
        return not (self._in_flight or self._waiting)

    def _cap(self) -> int:
        """Under the lock: the per-endpoint cap now, given how many endpoints have work."""
        return fair_cap(self.threads, self.per_endpoint, len(self._waiting.keys() | self._active.keys()))

    def _startable(self) -> int:
        cap = self._cap()
        ready = sum(
            min(len(queue), max(0, cap - self._active.get(endpoint, 0))) for endpoint, queue in self._waiting.items()
        )
        return self.threads - self._in_flight - ready

    def _start_ready(self) -> tuple[int, list[Task[T, P]]]:
        """Under the lock: start what may start; return how many started, and the tasks found past
        their deadline."""
        expired: list[Task[T, P]] = []
        now = time.monotonic()
        cap = self._cap()  # endpoints that start stay busy, so it holds for the whole loop
        blocked = started = 0
        while self._rotation and self._in_flight < self.threads and blocked < len(self._rotation):
            endpoint = self._rotation[0]
            self._rotation.rotate(-1)
            if self._active.get(endpoint, 0) >= cap:
                blocked += 1
                continue
            blocked = 0
            queue = self._waiting[endpoint]
            task = queue.popleft()
            if not queue:
                self._forget(endpoint)
            if task.deadline <= now:
                expired.append(task)
                continue
            self._active[endpoint] = self._active.get(endpoint, 0) + 1
            self._in_flight += 1
            self._started.append(task)
            started += 1
        return started, expired

    def _serve(self) -> None:
        """A sending thread: run the tasks started for it, until the sender shuts down."""
        while True:
            with self._lock:
                while not self._started and not self._closed:
                    self._work.wait()
                if not self._started:
                    return
                task = self._started.popleft()
            try:
                self._run(task)
            except Exception:  # a callback failed: its task is accounted for, and the thread goes on
                log.exception("A sending thread could not report a task's end")

    def _run(self, task: Task[T, P]) -> None:
        """Run the task, report its result, start what may start next (this thread takes one of
        those itself: only the rest wake others)."""
        try:
            try:
                result = task.run()
            except Exception:  # the caller's code failed: hand the task back rather than lose it
                self._expire([task])
            else:
                self._finish(task, result)
        finally:
            with self._lock:
                self._in_flight -= 1
                active = self._active[task.endpoint] - 1
                if active:
                    self._active[task.endpoint] = active
                else:
                    del self._active[task.endpoint]
                started, expired = self._start_ready()
                self._work.notify(max(0, started - 1))
                self._changed.notify_all()
            self._report(expired)

    def _forget(self, endpoint: str) -> None:
        del self._waiting[endpoint]
        self._rotation.remove(endpoint)

    def _report(self, expired: list[Task[T, P]]) -> None:
        if expired:
            self._expire(expired)
