"""Telling the workers about committed events without making the publisher wait for Redis.

After a commit the outbox hands the new event ids to this process's nudger thread, which enqueues
the trigger jobs; the request goes on at once. Nothing depends on the nudge arriving: if the
process dies first, or Redis is down, the events wait in the outbox and a worker's maintenance
relays them. Short-lived processes (a CLI command, a script) flush pending nudges at exit.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import weakref
from collections.abc import Callable, Sequence

from redis.exceptions import RedisError

from flask_async_events.threads import start_thread

log = logging.getLogger("flask_async_events")

EXIT_FLUSH_SECONDS = 2.0
Enqueue = Callable[[Sequence[int]], None]

_live: weakref.WeakSet[Nudger] = weakref.WeakSet()


class Nudger:
    """A daemon thread per process that enqueues trigger jobs for committed events."""

    def __init__(self, enqueue: Enqueue) -> None:
        self._enqueue = enqueue
        self._lock = threading.Condition()
        self._items: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
        self._pending = 0
        self._pid = 0
        _live.add(self)

    def nudge(self, event_ids: list[int]) -> None:
        """Hand over the ids of one commit's events."""
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked child: the thread is not here
                self._items = queue.SimpleQueue()
                self._pending = 0
                self._pid = os.getpid()
                start_thread(self._run, "nudge")
            self._pending += 1
            self._items.put(event_ids)

    def flush(self, timeout: float) -> bool:
        """Wait until every nudge handed over was sent (or failed); False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._pending or self._pid != os.getpid(), timeout)

    def _run(self) -> None:
        items = self._items
        while True:
            batch = [items.get()]
            while True:
                try:
                    batch.append(items.get_nowait())
                except queue.Empty:
                    break
            event_ids = [event_id for ids in batch for event_id in ids]
            try:
                self._enqueue(event_ids)
            except RedisError as exc:
                log.warning(
                    "Could not enqueue %d event(s) (%s); they stay in the outbox and will be relayed",
                    len(event_ids),
                    exc,
                )
            except Exception:  # never let the thread die: the outbox relays what it missed
                log.exception("Could not enqueue %d event(s); they will be relayed", len(event_ids))
            with self._lock:
                self._pending -= len(batch)
                self._lock.notify_all()


@atexit.register
def _flush_at_exit() -> None:
    for nudger in list(_live):
        nudger.flush(EXIT_FLUSH_SECONDS)
