"""Where the machine's CPU goes while a throughput is timed: the senders (worker or plain-loop
processes), the receiver, Redis, and the rest of the machine (PostgreSQL above all), in CPU time
per webhook. The senders are this process's children reaped in the window (their own time and
their children's), or this process itself for a loop that runs in it; the rest is the machine's
busy time (``/proc/stat``) less the others.
"""

from __future__ import annotations

import os
import resource
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

TICK = os.sysconf("SC_CLK_TCK")
PARTS = ("senders", "receiver", "Redis", "PostgreSQL and the rest")


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds spent in one window, by whom."""

    senders: float
    receiver: float
    redis: float
    rest: float

    def per_webhook(self, count: int) -> tuple[float, ...]:
        """Microseconds per webhook for each of :data:`PARTS`, then their total."""
        parts = (self.senders, self.receiver, self.redis, self.rest)
        return (*(part / count * 1e6 for part in parts), sum(parts) / count * 1e6)


def machine_busy() -> float:
    """Seconds of CPU the whole machine has been busy since boot (idle and I/O wait left out)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / TICK


def process_cpu(pid: int) -> float:
    """Seconds of CPU a live process has used, its reaped children included."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return sum(int(value) for value in fields[11:15]) / TICK  # utime, stime, cutime, cstime


def rusage_cpu(who: int) -> float:
    """CPU seconds, user and system, of this process or (``RUSAGE_CHILDREN``) its reaped children."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class CpuWindow:
    """``with window:`` around the timed part of a run; ``window.use`` afterwards."""

    def __init__(self, receiver_pid: int, redis_pid: int, *, in_process: bool = False) -> None:
        self._pids = (receiver_pid, redis_pid)
        self._in_process = in_process
        self.use: CpuUse | None = None

    def _snapshot(self) -> tuple[float, float, float, float, float]:
        receiver, redis = (process_cpu(pid) for pid in self._pids)
        return machine_busy(), rusage_cpu(resource.RUSAGE_CHILDREN), rusage_cpu(resource.RUSAGE_SELF), receiver, redis

    def __enter__(self) -> CpuWindow:
        self._start = self._snapshot()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        busy, children, itself, receiver, redis = (
            end - start for end, start in zip(self._snapshot(), self._start, strict=True)
        )
        senders = children + (itself if self._in_process else 0.0)
        self.use = CpuUse(senders, receiver, redis, max(0.0, busy - senders - receiver - redis))


ROLES = {  # a worker thread's native name (flask_async_events.threads), its first letters: what it does
    "ae-send": "sending (libcurl, signing, journal notes)",
    "ae-record": "recording results (SQL)",
    "ae-journal": "journal writes to Redis",
}
MAIN = "RQ jobs: trigger and deliver (main thread)"
THREAD_PARTS = (MAIN, *ROLES.values())


def thread_role(name: str) -> str:
    """What a worker thread named ``name`` does (libcurl's own threads carry their sender's name)."""
    return next((role for prefix, role in ROLES.items() if name.startswith(prefix)), MAIN)


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """Each live thread of ``pid``: its name and the CPU seconds it has used."""
    threads: dict[int, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread (or the process) has just ended
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        threads[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / TICK)
    return threads


class ThreadSampler:
    """The worker processes' CPU by what their threads do, read from ``/proc`` every ``every``
    seconds while they run (what a thread uses in its last moments before its process exits is
    missed: well under 1% of a run)."""

    def __init__(self, every: float = 0.1) -> None:
        self._every = every
        self._latest: dict[tuple[int, int], tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, pids: list[int]) -> None:
        self._thread = threading.Thread(target=self._run, args=(pids,), daemon=True)
        self._thread.start()

    def _run(self, pids: list[int]) -> None:
        while not self._stop.wait(self._every):
            for pid in pids:
                try:
                    threads = thread_cpu(pid)
                except OSError:  # the process has exited
                    continue
                self._latest.update(((pid, tid), value) for tid, value in threads.items())

    def per_webhook(self, count: int) -> tuple[float, ...]:
        """Stop; microseconds per webhook for each of :data:`THREAD_PARTS`, then their total."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        seconds = dict.fromkeys(THREAD_PARTS, 0.0)
        for name, used in self._latest.values():
            seconds[thread_role(name)] += used
        parts = [seconds[part] / count * 1e6 for part in THREAD_PARTS]
        return (*parts, sum(parts))
