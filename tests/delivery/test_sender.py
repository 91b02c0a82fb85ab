"""The sender's thread pool: the per-endpoint cap, deadlines, saturation, and tasks that raise."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from flask_async_events.delivery.sender import Sender, Task, fair_cap


class Collected:
    """What a sender's callbacks received, by task payload."""

    def __init__(self) -> None:
        self.finished: dict[int, object] = {}
        self.expired: list[int] = []
        self.lock = threading.Lock()

    def finish(self, task: Task[object, int], result: object) -> None:
        with self.lock:
            self.finished[task.payload] = result

    def expire(self, tasks: list[Task[object, int]]) -> None:
        with self.lock:
            self.expired.extend(task.payload for task in tasks)


def test_the_per_endpoint_cap_leaves_threads_for_others() -> None:
    collected = Collected()
    sender: Sender[object, int] = Sender(4, 2, collected.finish, collected.expire)
    running: dict[str, int] = {"slow": 0, "fast": 0}
    peak: dict[str, int] = {"slow": 0, "fast": 0}
    lock = threading.Lock()

    def work(endpoint: str, seconds: float) -> Callable[[], str]:
        def run() -> str:
            with lock:
                running[endpoint] += 1
                peak[endpoint] = max(peak[endpoint], running[endpoint])
            time.sleep(seconds)
            with lock:
                running[endpoint] -= 1
            return endpoint

        return run

    deadline = time.monotonic() + 10
    started = time.monotonic()
    sender.submit(Task("slow", work("slow", 0.2), deadline, index) for index in range(6))
    sender.submit(Task("fast", work("fast", 0.01), deadline, index) for index in range(6, 12))
    idle = sender.wait_idle(5)
    sender.shutdown()
    assert idle and collected.expired == [] and len(collected.finished) == 12
    assert peak["slow"] == 2  # never more than the cap for one endpoint
    assert peak["fast"] == 2  # the other threads were free for the second endpoint
    assert time.monotonic() - started < 1.5


def test_the_sender_does_not_start_a_task_past_its_deadline() -> None:
    collected = Collected()
    sender: Sender[object, int] = Sender(1, 1, collected.finish, collected.expire)
    deadline = time.monotonic() + 0.1
    sender.submit(Task("e", lambda: time.sleep(0.2), deadline, index) for index in range(5))
    assert sender.wait_idle(5)
    sender.shutdown()
    assert list(collected.finished) == [0] and sorted(collected.expired) == [1, 2, 3, 4]


def test_a_full_endpoint_is_saturated_and_its_waiting_tasks_leave_room_for_others() -> None:
    collected = Collected()
    release = threading.Event()
    sender: Sender[object, int] = Sender(4, 2, collected.finish, collected.expire)
    deadline = time.monotonic() + 10
    sender.submit(Task("hung", release.wait, deadline, index) for index in range(5))
    assert {task.endpoint for task in sender.saturated()} == {"hung"}
    assert sender.startable() == 2  # two threads busy with the hung endpoint, its queue waits
    sender.sweep(everything=True)  # a worker asked to stop hands back what has not started
    assert sorted(collected.expired) == [2, 3, 4]
    release.set()
    assert sender.wait_idle(5)
    sender.shutdown()
    assert sorted(collected.finished) == [0, 1]


def test_withdrawing_an_endpoint_takes_back_its_waiting_tasks_only() -> None:
    collected = Collected()
    release = threading.Event()
    sender: Sender[object, int] = Sender(4, 1, collected.finish, collected.expire)
    deadline = time.monotonic() + 10
    tasks: list[Task[object, int]] = [Task("dead", release.wait, deadline, index) for index in range(4)]
    sender.submit([*tasks, Task("ok", release.wait, deadline, 9)])
    taken = sender.withdraw(["dead", "unknown"])
    assert sorted(task.payload for task in taken) == [1, 2, 3]  # the one running stays; the rest come back
    assert sender.saturated() == []
    release.set()
    assert sender.wait_idle(5)
    sender.shutdown()
    assert sorted(collected.finished) == [0, 9] and collected.expired == []


def test_a_task_that_raises_is_handed_back_not_lost() -> None:
    collected = Collected()
    sender: Sender[object, int] = Sender(2, 1, collected.finish, collected.expire)

    def broken() -> object:
        raise RuntimeError("a notifier bug")

    sender.submit([Task("e", broken, time.monotonic() + 10, 1), Task("e", lambda: "ok", time.monotonic() + 10, 2)])
    assert sender.wait_idle(5)
    sender.shutdown()
    assert collected.expired == [1] and collected.finished == {2: "ok"}


def test_a_callback_that_raises_leaves_the_thread_sending() -> None:
    collected = Collected()

    def finish(task: Task[object, int], result: object) -> None:
        if task.payload == 1:
            raise RuntimeError("a recording bug")
        collected.finish(task, result)

    sender: Sender[object, int] = Sender(1, 1, finish, collected.expire)  # one thread: it must live on
    sender.submit(Task("e", lambda: "ok", time.monotonic() + 10, index) for index in (1, 2, 3))
    assert sender.wait_idle(5)
    sender.shutdown()
    assert collected.finished == {2: "ok", 3: "ok"} and collected.expired == []


def test_tasks_submitted_after_shutdown_come_back_unstarted() -> None:
    collected = Collected()
    sender: Sender[object, int] = Sender(2, 2, collected.finish, collected.expire)
    sender.shutdown()
    sender.submit(Task("e", lambda: "sent", time.monotonic() + 10, index) for index in (1, 2))
    assert collected.expired == [1, 2] and collected.finished == {}


@pytest.mark.parametrize(
    ("threads", "per_endpoint", "busy", "cap"),
    [(32, 8, 1, 8), (32, 8, 4, 8), (32, 8, 6, 5), (32, 8, 40, 1), (4, 2, 0, 2), (1, 8, 3, 1)],
)
def test_the_fair_cap(threads: int, per_endpoint: int, busy: int, cap: int) -> None:
    assert fair_cap(threads, per_endpoint, busy) == cap


def test_busy_endpoints_share_the_threads_fairly() -> None:
    collected = Collected()
    sender: Sender[object, int] = Sender(6, 6, collected.finish, collected.expire)
    running: dict[str, int] = {}
    peak: dict[str, int] = {}
    lock = threading.Lock()

    def hang(endpoint: str) -> Callable[[], str]:
        def run() -> str:
            with lock:
                running[endpoint] = running.get(endpoint, 0) + 1
                peak[endpoint] = max(peak.get(endpoint, 0), running[endpoint])
            time.sleep(0.05)
            with lock:
                running[endpoint] -= 1
            return endpoint

        return run

    deadline = time.monotonic() + 10
    sender.submit(Task(endpoint, hang(endpoint), deadline, n) for n, endpoint in enumerate("abc" * 10))
    assert sender.wait_idle(5)
    sender.shutdown()
    assert len(collected.finished) == 30 and collected.expired == []
    assert peak == {"a": 2, "b": 2, "c": 2}  # 6 threads, 3 busy endpoints: 2 each, though the cap is 6
