"""The package's threads under their own names in the operating system too, so ``top -H``,
``ps -L``, profilers and ``make bench`` tell a worker's sending, recording and journal threads
apart (Python names only its own thread objects)."""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Callable

PREFIX = "async-events-"
NATIVE_PREFIX = "ae-"  # Linux keeps 15 bytes of a thread's name: "ae-send_12" fits, the long prefix does not
_PR_SET_NAME = 15
_NAME_BYTES = 15


def _prctl() -> Callable[..., int] | None:
    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()


def native_name(name: str) -> str:
    """The operating system's name for the Python thread ``name``."""
    return name.replace(PREFIX, NATIVE_PREFIX, 1)[:_NAME_BYTES]


def name_native_thread() -> None:
    """Give the calling thread its Python name in the operating system (where it has one)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_NAME, native_name(threading.current_thread().name).encode(), 0, 0, 0)


def start_thread(target: Callable[[], object], name: str) -> threading.Thread:
    """A started daemon thread ``async-events-<name>`` that runs ``target`` under that name."""

    def run() -> None:
        name_native_thread()
        target()

    thread = threading.Thread(target=run, name=f"{PREFIX}{name}", daemon=True)
    thread.start()
    return thread
