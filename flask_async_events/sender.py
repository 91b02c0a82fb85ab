"""Concurrent sending inside one deliver job: a bounded thread pool with a per-endpoint cap, so one
slow endpoint cannot take every thread, and a deadline after which nothing new is started.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Task(Generic[T]):
    """One unit of work: ``endpoint`` groups tasks under the per-endpoint cap."""

    endpoint: str
    run: Callable[[], T]


class Sender:
    """Runs tasks on a long-lived pool (threads keep their HTTP connections between jobs)."""

    def __init__(self, threads: int, per_endpoint: int) -> None:
        self.threads = threads
        self.per_endpoint = per_endpoint
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="async-events-send")

    def run(self, tasks: Sequence[Task[T]], deadline: float) -> tuple[dict[int, T], list[int]]:
        """Run ``tasks``; return results by task index and the indexes never started (deadline)."""
        waiting: dict[str, deque[int]] = {}
        for index, task in enumerate(tasks):
            waiting.setdefault(task.endpoint, deque()).append(index)
        active = dict.fromkeys(waiting, 0)
        rotation = deque(waiting)
        in_flight: dict[Future[T], tuple[int, str]] = {}
        results: dict[int, T] = {}
        while True:
            if time.monotonic() < deadline:
                self._fill(tasks, waiting, active, rotation, in_flight)
            if not in_flight:
                break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                index, endpoint = in_flight.pop(future)
                active[endpoint] -= 1
                results[index] = future.result()
                if waiting[endpoint] and endpoint not in rotation:
                    rotation.append(endpoint)
        unsent = [index for queue in waiting.values() for index in queue]
        return results, unsent

    def _fill(
        self,
        tasks: Sequence[Task[T]],
        waiting: dict[str, deque[int]],
        active: dict[str, int],
        rotation: deque[str],
        in_flight: dict[Future[T], tuple[int, str]],
    ) -> None:
        """Start tasks round-robin over endpoints until the pool or every endpoint's cap is full."""
        blocked = 0
        while rotation and len(in_flight) < self.threads and blocked < len(rotation):
            endpoint = rotation[0]
            rotation.rotate(-1)
            if active[endpoint] >= self.per_endpoint:
                blocked += 1
                continue
            blocked = 0
            index = waiting[endpoint].popleft()
            active[endpoint] += 1
            in_flight[self._pool.submit(tasks[index].run)] = (index, endpoint)
            if not waiting[endpoint]:
                rotation.remove(endpoint)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
