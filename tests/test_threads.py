"""The package's threads carry their names into the operating system, where ``top -H`` and
``make bench`` read them."""

from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path

import pytest

from flask_async_events.delivery.sender import Sender, Task
from flask_async_events.threads import native_name, start_thread

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="thread names are read from /proc")


def comm(native_id: int) -> str:
    return Path(f"/proc/self/task/{native_id}/comm").read_text().strip()


def test_a_started_thread_is_named_in_the_operating_system() -> None:
    seen: list[str] = []
    thread = start_thread(lambda: seen.append(comm(threading.get_native_id())), "record")
    thread.join(5)
    assert thread.name == "async-events-record"
    assert seen == ["ae-record"]


def test_sending_threads_are_named_and_numbered() -> None:
    names: list[str] = []
    sender: Sender[str, None] = Sender(2, 2, lambda task, name: names.append(name), lambda tasks: None)
    try:
        deadline = time.monotonic() + 5
        sender.submit(Task("a", lambda: comm(threading.get_native_id()), deadline, None) for _ in range(2))
        assert sender.wait_idle(5)
    finally:
        sender.shutdown()
    assert len(names) == 2 and all(re.fullmatch(r"ae-send_[01]", name) for name in names), names


def test_a_long_name_is_cut_to_what_linux_keeps() -> None:
    assert native_name("async-events-send_123456789") == "ae-send_1234567"
    assert native_name("another-thread") == "another-thread"
