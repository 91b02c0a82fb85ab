"""RQ's scheduler, which promotes delayed retries, survives the death of the worker that runs it:
its locks outlive their holder by seconds, not a minute, and another worker takes it over."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from flask_async_events.queues import QUEUE_NAMES
from flask_async_events.state import get_state
from tests.conftest import AppEnv, Receiver, WorkerProcess, wait_for
from tests.helpers import place_order, subscribe

RETRY_AFTER = 6.0  # the retry is due this long after the first attempt
LOCK_KEY = "rq:scheduler-lock:{}"


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started (its forked scheduler)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdecimal():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _holder(app: Flask, workers: list[WorkerProcess]) -> WorkerProcess | None:
    """The worker running the scheduler: only the one holding its locks forks it."""
    connection = get_state(app).queues.connection
    if not all(connection.exists(LOCK_KEY.format(name)) for name in QUEUE_NAMES):
        return None
    running = [worker for worker in workers if worker.process.poll() is None and _children(worker.process.pid)]
    return running[0] if len(running) == 1 else None


@pytest.mark.one_database
def test_retries_go_out_on_time_after_the_scheduler_s_worker_is_killed(
    env: AppEnv, receiver: Receiver, worker_process: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """The worker holding the scheduler's locks is SIGKILLed with its scheduler (so the locks are
    not released) while a retry is waiting: the retry is still attempted within 10 s of its due time."""
    # The defaults: maintenance finds a due delivery Redis forgot only after 30 s; the scheduler must do it.
    app = env.app(
        ASYNC_EVENTS_RETRY_SCHEDULE=[RETRY_AFTER], ASYNC_EVENTS_RELAY_AFTER=30, ASYNC_EVENTS_MAINTENANCE_INTERVAL=10
    )
    subscribe(app, receiver.respond("/flaky", [500, 200]))
    logs = [tmp_path / "worker-0.log", tmp_path / "worker-1.log"]
    workers = [worker_process(log=logs[0]), worker_process(log=logs[1])]
    wait_for(lambda: _holder(app, workers) is not None, timeout=30)
    holder = _holder(app, workers)
    assert holder is not None
    place_order(app)
    wait_for(lambda: len(receiver.at("/flaky")) == 1, timeout=30)
    due = receiver.at("/flaky")[0].at + RETRY_AFTER
    for pid in [*_children(holder.process.pid), holder.process.pid]:  # all at once: nobody releases a lock
        os.kill(pid, signal.SIGKILL)
    holder.process.wait(10)
    wait_for(lambda: len(receiver.at("/flaky")) == 2, timeout=90)
    assert receiver.at("/flaky")[1].at - due < 10  # RQ's locks lived 61 s: about a minute late before
    assert _holder(app, workers) is not holder  # the other worker runs the scheduler now
    said = logs[1 - workers.index(holder)].read_text()
    assert re.search(r"WARNING Scheduler of lost worker \w+ released; [01] scheduled deliveries due, [01] later", said)
